"""Short-lived tokens (``POST /tokens/``) and the Ed25519 key that signs webhooks.

Tokens are HS256 JWTs scoped to ``allowed_apps`` (app aliases, as fal's clients send them)
with an expiry; they stand in for ``Authorization`` on streams and realtime sockets
(``?fal_jwt_token=``). The secrets live in the instance folder so every process agrees.
"""

import base64
import os
import secrets
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from falweb.instance_files import read_or_create

ISSUER = "falweb-local"


class TokenError(Exception):
    """A token that is missing, malformed, expired or not for this app."""


def folder_secrets(folder):
    """Secrets kept as files in ``folder``: ``keep(name, make)`` → bytes."""
    return lambda name, make: read_or_create(os.path.join(folder, name), make)


class Tokens:
    """``keep(name, make)`` stores the secret where every process finds it (default: a
    file in ``folder``; on PostgreSQL, the database, so that every host agrees)."""

    def __init__(self, folder, max_seconds=3600, keep=None):
        self.max_seconds = int(max_seconds)
        keep = keep or folder_secrets(folder)
        self._secret = keep("token_secret", lambda: secrets.token_bytes(32))

    def issue(self, allowed_apps, expiration=120):
        """A token for ``allowed_apps`` valid ``expiration`` seconds (capped)."""
        now = int(time.time())
        seconds = max(1, min(int(expiration), self.max_seconds))
        claims = {"iss": ISSUER, "iat": now, "exp": now + seconds,
                  "allowed_apps": list(allowed_apps)}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token, alias):
        """The claims of a valid token for app ``alias``; :class:`TokenError` otherwise."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], issuer=ISSUER,
                                options={"require": ["exp", "iat"]})
        except jwt.ExpiredSignatureError:
            raise TokenError("Token expired") from None
        except jwt.InvalidTokenError:
            raise TokenError("Invalid token") from None
        if alias not in claims.get("allowed_apps", ()):
            raise TokenError(f"Token not valid for app {alias!r}")
        return claims


class WebhookKey:
    """The runtime's Ed25519 key; its public half is served as a JWKS."""

    def __init__(self, folder, keep=None):
        keep = keep or folder_secrets(folder)
        pem = keep(
            "webhook_ed25519.pem",
            lambda: Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()),
        )
        self._key = serialization.load_pem_private_key(pem, password=None)
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)
        self.x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        self.kid = self.x[:16]

    def sign(self, message):
        return self._key.sign(message).hex()

    def jwks(self):
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid,
                          "use": "sig", "alg": "EdDSA"}]}
