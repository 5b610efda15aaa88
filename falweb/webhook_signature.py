"""fal's webhook signature, both sides: signing a delivery and verifying one (no Flask here).

fal signs each delivery with Ed25519 over ``request_id\\nuser_id\\ntimestamp\\nsha256(body)``
and sends the hex signature in ``X-Fal-Webhook-Signature``; its public keys are a JWKS. The
local runtime signs with :func:`signature_headers`; falweb's receiver, or any other app,
verifies with :func:`verify_webhook`::

    from falweb.webhook_signature import JWKSCache, verify_webhook
    keys = JWKSCache("https://rest.alpha.fal.ai/.well-known/jwks.json")
    verify_webhook(request.headers, request.get_data(), keys)   # raises WebhookError
"""

import base64
import hashlib
import threading
import time

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
TOLERANCE_SECONDS = 300
# fal: "cache the keys up to 24 hours".
JWKS_TTL_SECONDS = 24 * 3600
# A signature no cached key verifies may mean fal rotated its keys, or a forgery: refetch,
# but at most this often, so forged deliveries cannot turn into a stream of key fetches.
JWKS_MIN_REFETCH_SECONDS = 60

REQUEST_ID_HEADER = "X-Fal-Webhook-Request-Id"
USER_ID_HEADER = "X-Fal-Webhook-User-Id"
TIMESTAMP_HEADER = "X-Fal-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Fal-Webhook-Signature"

# A timestamp is seconds since the epoch: ten digits today, never hundreds.
_MAX_TIMESTAMP_DIGITS = 12


class WebhookError(Exception):
    """A delivery that cannot be trusted; the message says why (never key material)."""


def signed_message(request_id, user_id, timestamp, body):
    """The bytes fal signs for a delivery: ``request_id\\nuser_id\\ntimestamp\\nsha256(body)``."""
    return "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()


def signature_headers(request_id, user_id, body, sign, timestamp=None):
    """The ``X-Fal-Webhook-*`` headers of a delivery; ``sign(message) -> hex signature``."""
    timestamp = str(int(time.time() if timestamp is None else timestamp))
    return {
        REQUEST_ID_HEADER: request_id,
        USER_ID_HEADER: user_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(signed_message(request_id, user_id, timestamp, body)),
    }


def _b64url(value):
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def check_headers(headers, *, tolerance=TOLERANCE_SECONDS, now=None, user_id=None):
    """The delivery's (request_id, user_id, timestamp, signature bytes), checked before any
    body is read or key fetched. Raises :class:`WebhookError`."""
    get = {k.lower(): v for k, v in headers.items()}.get
    request_id = get(REQUEST_ID_HEADER.lower())
    sender = get(USER_ID_HEADER.lower())
    timestamp = get(TIMESTAMP_HEADER.lower())
    signature = get(SIGNATURE_HEADER.lower())
    if not (request_id and sender and timestamp and signature):
        raise WebhookError("missing X-Fal-Webhook-* headers")
    # isascii(): str.isdigit() also accepts "²" and other digits int() refuses.
    if not (timestamp.isascii() and timestamp.isdigit()
            and len(timestamp) <= _MAX_TIMESTAMP_DIGITS
            and abs((time.time() if now is None else now) - int(timestamp)) <= tolerance):
        raise WebhookError("timestamp outside the allowed window")
    if user_id and sender != user_id:
        raise WebhookError("unexpected user id")
    try:
        signature_bytes = bytes.fromhex(signature)
    except ValueError:
        raise WebhookError("signature is not hex") from None
    return request_id, sender, timestamp, signature_bytes


def _verifies(jwks, signature, message):
    for key in (jwks or {}).get("keys", ()):
        if not isinstance(key, dict) or key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
            continue
        try:
            Ed25519PublicKey.from_public_bytes(_b64url(key["x"])).verify(signature, message)
            return True
        except (InvalidSignature, ValueError, KeyError, TypeError):
            continue
    return False


def verify_webhook(headers, body, keys, *, tolerance=TOLERANCE_SECONDS, now=None, user_id=None):
    """Check a delivery's signature; returns its request id.

    ``keys``: a JWKS dict, or a :class:`JWKSCache` (refetched once, within its limits, when
    no cached key verifies). Raises :class:`WebhookError` when a header is missing, the
    timestamp is outside ±``tolerance`` seconds, the user id is not ``user_id`` (when
    given), or no key verifies.
    """
    request_id, sender, timestamp, signature = check_headers(
        headers, tolerance=tolerance, now=now, user_id=user_id)
    message = signed_message(request_id, sender, timestamp, body)
    if isinstance(keys, JWKSCache):
        if _verifies(keys.get(), signature, message):
            return request_id
        fresh = keys.refresh()
        if fresh is not None and _verifies(fresh, signature, message):
            return request_id
    elif _verifies(keys, signature, message):
        return request_id
    raise WebhookError("no key verifies the signature")


class JWKSCache:
    """A JWKS fetched from ``url``, kept ``ttl`` seconds, refetched at most every
    ``min_refetch`` seconds. Fetch errors (``requests`` errors, ``ValueError``) propagate
    when there are no keys yet; with cached keys a failed refetch keeps them."""

    def __init__(self, url, ttl=JWKS_TTL_SECONDS, timeout=10, session=None,
                 min_refetch=JWKS_MIN_REFETCH_SECONDS):
        self.url = url
        self.ttl = ttl
        self.timeout = timeout
        self.min_refetch = min_refetch
        self.session = session or requests.Session()
        self.fetches = 0
        self._keys = None
        self._fetched = float("-inf")
        self._tried = float("-inf")
        self._lock = threading.Lock()

    def get(self):
        """The keys, fetched when there are none or they are older than ``ttl``."""
        keys = self._keys
        if keys is not None and time.monotonic() - self._fetched <= self.ttl:
            return keys
        with self._lock:
            if self._keys is None or time.monotonic() - self._fetched > self.ttl:
                self._fetch(keep_old=self._keys is not None)
            return self._keys

    def refresh(self):
        """Refetch now unless one was tried within ``min_refetch`` seconds; returns the new
        keys, or None when nothing new was fetched."""
        if time.monotonic() - self._tried < self.min_refetch:
            return None
        with self._lock:
            if time.monotonic() - self._tried < self.min_refetch:
                return None
            return self._fetch(keep_old=True)

    def _fetch(self, keep_old):
        self._tried = time.monotonic()
        self.fetches += 1
        try:
            answer = self.session.get(self.url, timeout=self.timeout)
            answer.raise_for_status()
            keys = answer.json()
            if not isinstance(keys, dict):
                raise ValueError("the JWKS is not a JSON object")
        except (requests.RequestException, ValueError):
            if keep_old and self._keys is not None:
                return None
            raise
        self._keys = keys
        self._fetched = time.monotonic()
        return keys
