"""Endpoint ids and the fal URLs built from them (fal-protocol §1.2–§1.4).

``110602490-lora`` is the legacy ``owner-alias`` form of ``110602490/lora``; ``workflows/`` and
``comfy/`` are namespaces; anything after ``owner/alias`` is the endpoint's sub-path, kept
for submit/run/stream and dropped for a request's status, result and cancel (the "app base").
"""

import re
from dataclasses import dataclass
from urllib.parse import urlencode
from urllib.parse import urlsplit

from falweb.client.errors import InvalidEndpointError
from falweb.hosts import FAL_API_DOMAINS
from falweb.hosts import is_fal_host

ENDPOINT_NAMESPACES = ("workflows", "comfy")

_LEGACY_ID = re.compile(r"^([0-9]+)-([a-zA-Z0-9-]+)$")
# Characters that would change the meaning of the URL an id is pasted into.
_UNSAFE = re.compile(r"[\s?#%\\\x00-\x1f\x7f]")


def ensure_endpoint_id_format(endpoint_id):
    """Return ``endpoint_id`` as ``owner/alias[/path]``, exactly as fal's JS client does.

    Ids containing ``/`` are returned unchanged; ``<digits>-<alias>`` becomes
    ``<digits>/<alias>``. Raises :class:`InvalidEndpointError` for any other single-segment id.
    """
    if not isinstance(endpoint_id, str):
        raise InvalidEndpointError(f"Invalid app id: {endpoint_id!r}. Must be a string")
    if "/" in endpoint_id:
        return endpoint_id
    match = _LEGACY_ID.match(endpoint_id)
    if match:
        return f"{match.group(1)}/{match.group(2)}"
    raise InvalidEndpointError(
        f"Invalid app id: {endpoint_id}. Must be in the format <appOwner>/<appId>"
    )


@dataclass(frozen=True)
class EndpointId:
    """A parsed endpoint id: ``owner``, ``alias``, optional ``path`` and ``namespace``."""

    owner: str
    alias: str
    path: str | None = None
    namespace: str | None = None

    @property
    def app_base(self):
        """``[namespace/]owner/alias``: the part that names the app's queue (no sub-path)."""
        prefix = f"{self.namespace}/" if self.namespace else ""
        return f"{prefix}{self.owner}/{self.alias}"

    @property
    def full(self):
        """The whole id, sub-path included (what submit/run/stream address)."""
        return self.app_base + (f"/{self.path}" if self.path else "")

    def __str__(self):
        return self.full


def parse_endpoint_id(endpoint_id):
    """Split an endpoint id into :class:`EndpointId` (fal-protocol §1.3)."""
    parts = ensure_endpoint_id_format(endpoint_id).split("/")
    if parts[0] in ENDPOINT_NAMESPACES:
        return EndpointId(owner=parts[1] if len(parts) > 1 else "",
                          alias=parts[2] if len(parts) > 2 else "",
                          path="/".join(parts[3:]) or None, namespace=parts[0])
    return EndpointId(owner=parts[0], alias=parts[1] if len(parts) > 1 else "",
                      path="/".join(parts[2:]) or None)


def is_fal_url(value):
    """True when ``value`` is an absolute http(s) URL on fal's own hosts (anchored, unlike
    the JS client's ``/(fal\\.(ai|run))$/``, so ``evilfal.run`` is not one)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return False
    return is_fal_host(host, FAL_API_DOMAINS)


def normalize_endpoint_id(endpoint_id):
    """The checked, normalised id the client builds URLs from.

    Like :func:`ensure_endpoint_id_format`, but also refuses ids that are not a clean
    ``owner/alias[/path]`` (empty segments, ``..``, whitespace, ``?``, ``#``, ``%``), because
    the client pastes the id into a URL path. Raises :class:`InvalidEndpointError`.
    """
    normalized = ensure_endpoint_id_format(endpoint_id)
    segments = normalized.split("/")
    if (_UNSAFE.search(normalized) or any(s in ("", ".", "..") for s in segments)
            or len(segments) < (3 if segments[0] in ENDPOINT_NAMESPACES else 2)):
        raise InvalidEndpointError(
            f"Invalid endpoint id: {endpoint_id[:200]!r}. Expected <owner>/<alias>[/<path>] "
            "such as 'fal-ai/fast-sdxl' or the legacy '<digits>-<alias>' form"
        )
    return normalized


def build_url(endpoint_id, *, subdomain=None, path="", query=None):
    """The canonical fal URL for ``endpoint_id`` (``buildUrl`` of fal-protocol §1.4).

    ``subdomain="queue"`` gives ``https://queue.fal.run/...``; ``path`` is appended after one
    leading ``/`` is dropped; ``query`` is form-urlencoded. A full fal URL may be given as the
    id, in which case ``subdomain`` is ignored.
    """
    path = re.sub(r"/{2,}", "/", (path or "").removeprefix("/"), count=1)
    query_string = f"?{urlencode(query)}" if query else ""
    if is_fal_url(endpoint_id):
        base = endpoint_id if endpoint_id.endswith("/") else endpoint_id + "/"
        return f"{base}{path}{query_string}"
    prefix = f"{subdomain}." if subdomain else ""
    url = f"https://{prefix}fal.run/{normalize_endpoint_id(endpoint_id)}/{path}"
    return url.removesuffix("/") + query_string


def queue_request_url(endpoint_id, request_id, suffix="", query=None):
    """``https://queue.fal.run/{app base}/requests/{request_id}{suffix}`` (sub-path dropped)."""
    if not isinstance(request_id, str) or not request_id or _UNSAFE.search(request_id) \
            or "/" in request_id:
        raise ValueError(f"Invalid request id: {str(request_id)[:100]!r}")
    base = parse_endpoint_id(normalize_endpoint_id(endpoint_id)).app_base
    return build_url(base, subdomain="queue", path=f"/requests/{request_id}{suffix}", query=query)
