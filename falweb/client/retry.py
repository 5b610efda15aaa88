"""When a request may be sent again, and how long to wait first.

Only requests that create no work are retried: status and result GETs (and the status
stream's opening GET). A submit or run POST is never retried, because a response lost after
fal accepted it would otherwise start (and bill) the job twice.
"""

import email.utils
import random
import time
from dataclasses import dataclass
from dataclasses import field

RETRYABLE_STATUS_CODES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter (fal-protocol §2.1 defaults), honouring ``Retry-After``.

    ``max_retries`` counts extra attempts (0 disables retries); the wait before retry ``n``
    (0-based) is ``min(base_delay * multiplier**n, max_delay)`` ±25 % when ``jitter``, or the
    server's ``Retry-After`` (capped at ``max_delay``) when it sends one.
    """

    max_retries: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    status_codes: frozenset = field(default=RETRYABLE_STATUS_CODES)
    jitter: bool = True

    def should_retry_status(self, status, headers):
        """True for a retryable status, except fal's 504 for the caller's own start timeout."""
        if status not in self.status_codes:
            return False
        return not (status == 504 and headers.get("x-fal-request-timeout-type") == "user")

    def delay(self, attempt, retry_after=None):
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        wait = parse_retry_after(retry_after)
        if wait is None:
            wait = min(self.base_delay * self.multiplier ** attempt, self.max_delay)
            if self.jitter:
                wait *= random.uniform(0.75, 1.25)
        return max(0.0, min(wait, self.max_delay))


NO_RETRY = RetryPolicy(max_retries=0)


def parse_retry_after(value, now=None):
    """Seconds from a ``Retry-After`` value (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
