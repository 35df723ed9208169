"""What the local API Gateway saw, recorded for assertions in tests and benchmarks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["RequestLog", "RequestRecord"]


@dataclass(frozen=True)
class RequestRecord:
    """One request and its outcome.

    ``served`` is the index range of records delivered intact with a 200 (``None`` when no
    records reached the client, including pages damaged by a wire-level fault).  The API
    key's value is never stored, only whether one was sent.
    """

    monotonic: float
    wall_time: float
    method: str
    path: str
    query: dict[str, str]
    status: int
    request_id: str
    access_key_id: str | None
    correlation_id: str | None
    traceparent: str | None
    user_agent: str | None
    api_key_present: bool
    dataset: str | None
    served: range | None
    error_type: str | None
    fault: str | None

    @property
    def served_ids(self) -> list[str]:
        """Ids of the records this response delivered."""
        if self.dataset is None or self.served is None:
            return []
        return [f"{self.dataset}-{index}" for index in self.served]


class RequestLog:
    """Thread-safe request log plus an in-flight gauge that remembers its peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._records: list[RequestRecord] = []
        self._in_flight = 0
        self._max_in_flight = 0

    def append(self, record: RequestRecord) -> None:
        """Add one finished request."""
        with self._lock:
            self._records.append(record)
            self._idle.notify_all()

    def wait_for_count(self, count: int, timeout: float) -> bool:
        """Block until at least `count` requests have been logged (or the timeout passes)."""
        with self._idle:
            return self._idle.wait_for(lambda: len(self._records) >= count, timeout)

    def snapshot(self) -> list[RequestRecord]:
        """Every record so far, in completion order."""
        with self._lock:
            return list(self._records)

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a request as in flight for the duration of the block."""
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no request is being handled (e.g. a delayed answer a client gave up on)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    @property
    def max_in_flight(self) -> int:
        """Highest number of concurrently handled requests since the last reset."""
        with self._lock:
            return self._max_in_flight

    def reset(self) -> None:
        """Forget every record and the concurrency peak (requests in flight still count)."""
        with self._lock:
            self._records.clear()
            self._max_in_flight = self._in_flight
