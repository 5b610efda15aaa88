"""Reading fal's answers (fal-protocol §10), for responses of ``requests`` and ``httpx``
alike: both have ``status_code``, case-insensitive ``headers``, ``content`` and ``json()``.
"""

from falweb.client.errors import ApiError
from falweb.client.errors import ValidationError


def _reason(response):
    # requests says .reason, httpx .reason_phrase
    return getattr(response, "reason", None) or getattr(response, "reason_phrase", "") or ""


def is_success(response):
    return 200 <= response.status_code < 300


def error_from_response(response):
    """The :class:`ApiError` (or :class:`ValidationError` for a JSON 422) for an error answer."""
    status = response.status_code
    reason = _reason(response)
    headers = response.headers
    request_id = headers.get("x-fal-request-id") or None
    timeout_type = headers.get("x-fal-request-timeout-type") or None
    body = None
    if "application/json" in headers.get("Content-Type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
    if body is None and status != 422:
        return ApiError(f"HTTP {status}: {reason}".rstrip(": "), status, None, request_id,
                        error_type=headers.get("x-fal-error-type"), timeout_type=timeout_type,
                        headers=headers)
    detail = body.get("detail") if isinstance(body, dict) else None
    message = detail if isinstance(detail, str) else (reason or f"HTTP {status}")
    error_type = (body.get("error_type") if isinstance(body, dict) else None) \
        or headers.get("x-fal-error-type")
    cls = ValidationError if status == 422 else ApiError
    return cls(message, status, body, request_id, error_type=error_type,
               timeout_type=timeout_type, headers=headers)


def read_response(response):
    """The decoded body of a 2xx answer (JSON, bytes for octet-stream, else text).

    Raises :class:`ApiError` / :class:`ValidationError` for any other status.
    """
    if not is_success(response):
        raise error_from_response(response)
    content_type = response.headers.get("Content-Type", "")
    if "application/json" in content_type:
        return response.json() if response.content else None
    if "application/octet-stream" in content_type:
        return response.content
    return response.text
