"""Client-side rate limiting: an adaptive token bucket per source and worker process.

Each worker process has its own bucket, and a user cannot know how many workers Flex
Consumption will run, so every worker may be configured at the gateway's full limit R. The
buckets then find their share of R from the gateway's 429s, as TCP finds its share of a link
from lost packets:

- A 429 cuts the rate to 50-60% of itself, plus 20% x the bucket's share of its configured
  rate: near the configured rate the bucket shares the limit with few others and trims less
  (to 70-80%), far below it with many and halves. The factor is drawn at random, so workers
  refused in the same instant do not stay in step. The first 429 after a calm spell (none for
  30 s) only trims to 90%: a lone refusal, such as a request that arrived a few milliseconds
  early, is no reason to halve. A 429 for a request whose token was granted before the last
  cut says nothing about the new rate and is not cut for again.
- Each success raises the rate by 0.02 req/s plus 0.25% of R per second of sending: about 2%
  of the bucket's own rate per second, so the aggregate grows at about the same pace however
  many workers share the limit (a per-worker additive step would grow it N times as fast, and
  the 429s with it); the 0.25% of R lets a worker that was cut hard catch up with the others.
- The rate never exceeds the configured one, and the bucket keeps one token of its burst back
  (a burst of B saves up B - 1): a worker alone at the limit then leaves the gateway's
  bucket a token of slack, so arrival jitter does not turn into 429s. Saved-up burst shrinks
  with the rate, so N workers together burst about what one would.
- Retry-After on a 429, or a RateLimit-*/X-RateLimit-* header saying the budget is spent,
  pauses every caller of the bucket in this process until then (plus up to 20%, so paused
  workers do not all resume at once).

Measured in bench/RESULTS.md ("Rate limit, N workers").
"""

from __future__ import annotations

import math
import random as _random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_CUT = (0.5, 0.6)
_SHARE_CUT = 0.2  # added to the cut factor per unit of the bucket's share of its configured rate
_CALM_CUT = 0.9
_CALM_SECONDS = 30.0
_PROBE_PER_SUCCESS = 0.02  # req/s per success: +2% of the current rate per second of sending
_CATCH_UP = 0.0025  # fraction of the configured rate per second, shared out over the successes
_FLOOR = 0.01
_PAUSE_JITTER = 0.2
MAX_PAUSE_SECONDS = 60.0
_EPOCH_THRESHOLD = 1_000_000_000  # X-RateLimit-Reset above this is a Unix time, not seconds


@dataclass(frozen=True)
class Permit:
    """One request's token: when it was granted (bucket clock) and how long the caller waited."""

    granted_at: float
    waited: float


class TokenBucket:
    """Thread-safe adaptive token bucket; callers reserve a token and sleep outside the lock."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("need rate > 0 and burst >= 1")
        self.configured_rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._wall_clock = wall_clock
        self._rate = rate
        self._tokens = self._capacity(rate)
        self._updated = clock()
        self._cut_at: float | None = None
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        """The rate the bucket currently allows, requests/s."""
        return self._rate

    def acquire(self) -> Permit:
        """Take one token, waiting as long as needed (including any pause the server asked for)."""
        permit = self._reserve()
        if permit.waited > 0:
            self._sleep(permit.waited)
        return permit

    def throttled(self, permit: Permit | None = None, retry_after: float | None = None) -> None:
        """The server said 429: cut the rate (once per cut, see module docstring), honour Retry-After."""
        with self._lock:
            now = self._clock()
            if permit is None or self._cut_at is None or permit.granted_at >= self._cut_at:
                calm = self._cut_at is None or now - self._cut_at >= _CALM_SECONDS
                share = self._rate / self.configured_rate
                jitter = (_CUT[1] - _CUT[0]) * self._random()
                factor = _CALM_CUT if calm else _CUT[0] + _SHARE_CUT * share + jitter
                self._rate = max(self.configured_rate * _FLOOR, self._rate * factor)
                self._cut_at = now
                self._tokens = min(self._tokens, 0.0)
            if retry_after is not None and retry_after > 0:
                self._pause_locked(now, retry_after)

    def succeeded(self) -> None:
        """A request went through: probe upward, toward the configured rate."""
        with self._lock:
            if self._rate < self.configured_rate:
                step = _PROBE_PER_SUCCESS + _CATCH_UP * self.configured_rate / self._rate
                self._rate = min(self.configured_rate, self._rate + step)

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (plus jitter), e.g. until a rate-limit window resets."""
        if seconds > 0:
            with self._lock:
                self._pause_locked(self._clock(), seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Pause if the response's rate-limit headers say the budget is spent until a reset."""
        wait = exhausted_for(headers, self._wall_clock())
        if wait is not None:
            self.pause(wait)

    def _pause_locked(self, now: float, seconds: float) -> None:
        seconds = min(seconds, MAX_PAUSE_SECONDS) * (1 + _PAUSE_JITTER * self._random())
        until = now + seconds
        if until > self._updated:
            # Nothing accrues during the pause: one request may go when it ends, then 1/rate apart.
            self._tokens = min(self._tokens, 0.0) + 1.0
            self._updated = until

    def _capacity(self, rate: float) -> float:
        return max(1.0, (self.burst - 1) * rate / self.configured_rate)

    def _reserve(self) -> Permit:
        with self._lock:
            now = self._clock()
            if now > self._updated:
                self._tokens = min(
                    self._capacity(self._rate), self._tokens + (now - self._updated) * self._rate
                )
                self._updated = now
            self._tokens -= 1
            ready = self._updated + max(0.0, -self._tokens) / self._rate
            return Permit(granted_at=max(now, ready), waited=max(0.0, ready - now))


_SHORT = {"r": "r", "remaining": "r", "t": "t", "reset": "t"}
_RATELIMIT_FIELD = re.compile(r"(?:^|[;,\s])(r|t|remaining|reset)\s*=\s*([0-9.]+)", re.IGNORECASE)


def exhausted_for(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until the server's rate-limit window resets, if its headers say none is left.

    Reads `RateLimit-Remaining`/`RateLimit-Reset` (IETF draft, reset in seconds), the later
    draft's structured `RateLimit: "policy";r=0;t=5`, and `X-RateLimit-Remaining`/
    `X-RateLimit-Reset` (reset in seconds, or a Unix time as GitHub sends). `now` is the wall
    clock, for a Unix-time reset. None: no such headers, budget left, or unreadable.
    """
    lower = {key.lower(): value for key, value in headers.items()}
    for prefix in ("ratelimit-", "x-ratelimit-"):
        remaining, reset = lower.get(prefix + "remaining"), lower.get(prefix + "reset")
        if remaining is not None and reset is not None:
            return _wait(_number(remaining), _number(reset), now)
    structured = lower.get("ratelimit")
    if structured is not None:
        fields = {_SHORT[key.lower()]: _number(value) for key, value in _RATELIMIT_FIELD.findall(structured)}
        return _wait(fields.get("r"), fields.get("t"), now)
    return None


def _wait(remaining: float | None, reset: float | None, now: float) -> float | None:
    if remaining is None or reset is None or remaining > 0:
        return None
    seconds = reset - now if reset > _EPOCH_THRESHOLD else reset
    return seconds if seconds > 0 else None


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
