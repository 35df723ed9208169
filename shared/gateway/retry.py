"""When to try a page again, and how long to wait: Retry-After when the server says, else jitter."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import tenacity

from shared.errors import BridgeError


def retryable(exc: BaseException) -> bool:
    """Our own errors say whether another attempt can succeed; anything else is a bug, not retried."""
    return isinstance(exc, BridgeError) and exc.retryable


class RetryAfterOrJitter(tenacity.wait.wait_base):
    """Wait what the server asked for (Retry-After), else exponential backoff with full jitter."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._jitter = tenacity.wait_random_exponential(multiplier=initial, max=maximum)
        self._maximum = maximum

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        asked = getattr(exc, "retry_after", None)
        if asked is not None:
            return float(min(asked, self._maximum * 3))
        return float(self._jitter(retry_state))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP-date relative to now; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit alone takes "²" and other digits float refuses
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None  # 400 nines are inf
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
