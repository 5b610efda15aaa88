"""Where fal's hosts really are.

Every falweb component speaks canonical fal URLs (``https://queue.fal.run/...``) and asks
this module where they go. With the fal backend the map is the identity. With the local
runtime at base ``L`` (``http://host:port/local`` when embedded):

==================================================  ====================================
canonical                                           local
==================================================  ====================================
``https://queue.fal.run/...``                       ``L/queue/...``
``https://fal.run/...``                             ``L/run/...``
``wss://fal.run/...``                               ``ws(s)://.../local/run/...``
``https://rest.fal.ai/...``, ``rest.alpha.fal.ai``  ``L/rest/...``
``https://v3.fal.media/...``                        ``L/cdn/...``
==================================================  ====================================
"""

from urllib.parse import urlsplit

QUEUE_URL = "https://queue.fal.run"
RUN_URL = "https://fal.run"
REALTIME_URL = "wss://fal.run"
REST_URL = "https://rest.fal.ai"
REST_ALPHA_URL = "https://rest.alpha.fal.ai"
CDN_URL = "https://v3.fal.media"

# canonical origin -> path prefix under the local runtime's base URL
LOCAL_PREFIXES = {
    QUEUE_URL: "/queue",
    RUN_URL: "/run",
    REALTIME_URL: "/run",
    REST_URL: "/rest",
    REST_ALPHA_URL: "/rest",
    CDN_URL: "/cdn",
}

FAL_HOSTS = frozenset(urlsplit(origin).hostname for origin in LOCAL_PREFIXES)

#: Domains of fal's API (a full URL on one of them may stand for an endpoint id).
FAL_API_DOMAINS = ("fal.run", "fal.ai")
#: Every domain of fal's, its CDN included.
FAL_DOMAINS = (*FAL_API_DOMAINS, "fal.media")

#: The header in which a client behind fal's credential proxy names the real fal URL.
TARGET_URL_HEADER = "x-fal-target-url"


def is_fal_host(host, domains=FAL_DOMAINS):
    """True when ``host`` is one of ``domains`` or a subdomain of one (anchored, so
    ``evilfal.run`` is not fal's)."""
    host = (host or "").lower()
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def hostname(origin):
    """The host name of a canonical origin (``QUEUE_URL`` → ``queue.fal.run``)."""
    return urlsplit(origin).hostname


def _origin(url):
    parts = urlsplit(url)
    if parts.port is not None or parts.username is not None or parts.password is not None:
        return None
    return f"{parts.scheme}://{parts.hostname}" if parts.hostname else None


class Hosts:
    """Maps canonical fal URLs to the backend's. ``local_base=None`` means fal itself."""

    def __init__(self, local_base=None):
        self.local_base = local_base.rstrip("/") if local_base else None

    @property
    def is_local(self):
        return self.local_base is not None

    def resolve(self, url):
        """The URL that really serves canonical ``url``; ``ValueError`` if it is not fal's."""
        origin = _origin(url)
        rest = url[len(origin):] if origin else ""
        # "//" after the host would read as another host once joined to a base URL.
        if origin not in LOCAL_PREFIXES or rest.startswith("//"):
            raise ValueError(f"not a fal URL: {url[:200]!r}")
        if self.local_base is None:
            return url
        base = self.local_base
        if origin == REALTIME_URL:
            base = "ws" + base[len("http"):] if base.startswith("http") else base
        return base + LOCAL_PREFIXES[origin] + rest

    def canonical(self, url):
        """The canonical fal URL for a backend ``url`` (the inverse of :meth:`resolve`)."""
        if self.local_base is None:
            return url
        for origin, prefix in LOCAL_PREFIXES.items():
            if origin in (REALTIME_URL, REST_ALPHA_URL):
                continue
            base = self.local_base + prefix
            if url == base or url.startswith(base + "/") or url.startswith(base + "?"):
                return origin + url[len(base):]
        return url

    def queue(self, path=""):
        return self.resolve(QUEUE_URL + path)

    def run(self, path=""):
        return self.resolve(RUN_URL + path)

    def realtime(self, path=""):
        return self.resolve(REALTIME_URL + path)

    def rest(self, path=""):
        return self.resolve(REST_URL + path)

    def cdn(self, path=""):
        return self.resolve(CDN_URL + path)

    def __repr__(self):
        return f"Hosts(local_base={self.local_base!r})"
