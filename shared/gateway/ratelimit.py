"""Client-side rate limiting: an adaptive token bucket per source and worker process.

The bucket starts at the catalog's requests/s and burst. A 429 cuts the rate (multiplicative
decrease); each success creeps it back toward the configured rate (additive increase), so a
sustained run settles just under the gateway's real limit. The limit applies per worker
process: with N concurrent activities on separate workers, configure requests_per_second as
the gateway's limit divided by N (see README, "Rate limits").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_DECREASE = 0.7
_FLOOR = 0.05
_INCREASE = 0.02


class TokenBucket:
    """Thread-safe token bucket; callers reserve a token and sleep outside the lock until it is theirs."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.configured_rate = rate
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting as long as needed; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)
        return wait

    def throttled(self) -> None:
        """The server said 429: slow down and drop any saved-up burst."""
        with self._lock:
            self.rate = max(self.configured_rate * _FLOOR, self.rate * _DECREASE)
            self._tokens = min(self._tokens, 0.0)

    def succeeded(self) -> None:
        """A request went through: creep back toward the configured rate."""
        if self.rate < self.configured_rate:
            with self._lock:
                self.rate = min(self.configured_rate, self.rate + self.configured_rate * _INCREASE)
