"""The errors the client raises, shaped like fal's JavaScript client (``ApiError``,
``ValidationError``) plus what a Python caller needs to tell apart (timeouts, an unreachable
backend, missing credentials).

No error ever carries the fal key: messages are built from status lines, response bodies and
host names only.
"""


class FalError(Exception):
    """Base class of every error raised by :mod:`falweb.client`."""


class MissingCredentialsError(FalError):
    """No fal key is configured and the backend is fal itself (not a proxy or local runtime)."""


class InvalidEndpointError(FalError, ValueError):
    """An endpoint id that cannot name a fal app (fal-protocol §1.2)."""


class ApiError(FalError):
    """The backend answered with a non-2xx status.

    ``status`` is the HTTP status, ``body`` the decoded JSON body (``None`` when the body was
    not JSON), ``request_id`` the ``x-fal-request-id`` response header (``None`` if absent),
    ``error_type`` fal's ``error_type`` (body or ``X-Fal-Error-Type`` header) and
    ``timeout_type`` the ``x-fal-request-timeout-type`` header.
    """

    def __init__(self, message, status, body=None, request_id=None, *, error_type=None,
                 timeout_type=None, headers=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.request_id = request_id
        self.error_type = error_type
        self.timeout_type = timeout_type
        self.headers = dict(headers or {})

    @property
    def is_user_timeout(self):
        """True for fal's 504 caused by the caller's own ``start_timeout`` (never retried)."""
        return self.status == 504 and self.timeout_type == "user"

    def __repr__(self):
        return (f"{type(self).__name__}(status={self.status!r}, message={self.message!r}, "
                f"request_id={self.request_id!r})")


class ValidationError(ApiError):
    """A 422 answer: the input did not validate.

    ``field_errors`` is fal's ``detail`` list (``[{"loc": [...], "msg": ..., "type": ...}]``);
    a string ``detail`` becomes ``[{"loc": ["body"], "msg": detail, "type": "value_error"}]``
    (fal-protocol §10).
    """

    @property
    def field_errors(self):
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        if isinstance(detail, list):
            return [item for item in detail if isinstance(item, dict)]
        if isinstance(detail, str):
            return [{"loc": ["body"], "msg": detail, "type": "value_error"}]
        return []

    def get_field_errors(self, field):
        """The errors whose ``loc`` ends with ``field``."""
        return [e for e in self.field_errors if (e.get("loc") or [None])[-1] == field]

    @property
    def fields(self):
        """Names of the offending fields (the last ``loc`` element of each error)."""
        return [str((e.get("loc") or ["body"])[-1]) for e in self.field_errors]

    @property
    def details(self):
        """The field errors as one line: ``image_size.height: Must be ...; prompt: ...``."""
        parts = []
        for error in self.field_errors:
            loc = [str(p) for p in error.get("loc") or [] if p != "body"]
            parts.append(f"{'.'.join(loc) or 'input'}: {error.get('msg', 'invalid')}")
        return "; ".join(parts)

    def __str__(self):
        details = self.details
        return f"{self.message}: {details}" if details and details != self.message else \
            self.message


class FalTimeoutError(FalError, TimeoutError):
    """The caller's deadline passed (``subscribe(timeout=...)``) or the backend did not answer
    in time. ``request_id`` names the upstream request when one was created (it has been
    cancelled, best effort)."""

    def __init__(self, message, timeout=None, request_id=None):
        super().__init__(message)
        self.message = message
        self.timeout = timeout
        self.request_id = request_id


class FalConnectionError(FalError, ConnectionError):
    """The backend could not be reached; ``host`` is the host that was tried."""

    def __init__(self, message, host=None):
        super().__init__(message)
        self.message = message
        self.host = host
