"""Fault injection and rate limiting for the local API Gateway.

Faults are queued in a :class:`FaultPlan` and consumed by the next matching requests, so a
test states exactly which request misbehaves instead of relying on probabilities.
"""

from __future__ import annotations

import functools
import gzip
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Literal

from localcloud.errors import ApiGatewayError
from localcloud.server import Response

__all__ = ["Fault", "FaultKind", "FaultPlan", "TokenBucket", "mangle_response", "replacement_response"]

FaultKind = Literal[
    "status",
    "reset",
    "truncate",
    "short_body",
    "delay",
    "expired_credentials",
    "html",
    "huge",
    "deep_nesting",
    "loop_cursor",
    "bomb",
    "drip",
    "overflow_number",
    "empty",
]

# Status code -> (x-amzn-ErrorType, message) where API Gateway's wording is not simply
# derived from the reason phrase (see _gateway_error).
_GATEWAY_STATUS_ERRORS = {
    500: ("InternalServerErrorException", "Internal server error"),
    502: ("BadGatewayException", "Internal server error"),
    504: ("IntegrationTimeoutException", "Endpoint request timed out"),
}

_HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Service temporarily unavailable</h1><p>Please try again later.</p></body></html>"
)


@dataclass(frozen=True)
class Fault:
    """One misbehaviour, applied to requests matching ``path`` and ``page`` (None = any).

    ``page`` is the 1-based page number of the request within its walk.  Kinds:

    * ``status`` -- answer ``status`` (any code ``http.HTTPStatus`` knows) with an API
      Gateway error body and ``x-amzn-ErrorType``; ``retry_after`` (seconds or an
      HTTP-date string) adds a ``Retry-After`` header.
    * ``reset`` -- send headers and half the body, then abort the connection (RST).
    * ``truncate`` -- 200 whose JSON is cut in half, with a matching Content-Length.
    * ``short_body`` -- 200 announcing the full Content-Length but sending half, then closing.
    * ``delay`` -- wait ``delay_ms`` before answering normally.
    * ``expired_credentials`` -- 403 ``ExpiredTokenException`` whatever the credentials.
    * ``html`` -- 200 with a ``text/html`` error page.
    * ``huge`` -- the normal page padded (a ``padding`` field per record) to at least
      ``size_bytes``; an empty page stays as it is.
    * ``deep_nesting`` -- 200 with a JSON array nested ``depth`` levels deep.
    * ``loop_cursor`` -- the continuation repeats instead of advancing.
    * ``bomb`` -- 200 whose body decodes to 2 GiB of zeros, sent with ``Content-Encoding:
      encoding`` (``gzip, gzip`` by default: 5 KB on the wire; a single ``gzip``: 2 MB).
    * ``drip`` -- the normal page, one byte every ``delay_ms`` milliseconds.
    * ``overflow_number`` -- the normal page whose first record also holds ``"overflow":1e400``,
      valid JSON that no double holds (Python reads it as inf, orjson writes inf as null).
    * ``empty`` -- the page with no records but the continuation it would have had: an API whose
      filter matched nothing in that stretch. Its records are never served (``served_ids``).
    """

    kind: FaultKind
    status: int = 503
    retry_after: int | str | None = None
    delay_ms: int = 0
    size_bytes: int = 1_000_000
    depth: int = 100_000
    encoding: str = "gzip, gzip"
    path: str | None = None
    page: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "status":
            HTTPStatus(self.status)  # ValueError now, rather than a broken response later

    def matches(self, path: str, page: int) -> bool:
        """Whether this fault applies to a request for ``path``'s page ``page``."""
        return (self.path is None or self.path == path) and (self.page is None or self.page == page)


@dataclass(frozen=True)
class _Entry:
    fault: Fault
    remaining: int


class FaultPlan:
    """Thread-safe queue of faults; each entry is consumed by its next matching requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []

    def add(self, fault: Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` matching requests (after earlier entries)."""
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._entries.append(_Entry(fault, times))

    def take(self, path: str, page: int) -> Fault | None:
        """Consume and return the first fault matching this request, if any."""
        with self._lock:
            for position, entry in enumerate(self._entries):
                if entry.fault.matches(path, page):
                    if entry.remaining == 1:
                        del self._entries[position]
                    else:
                        self._entries[position] = replace(entry, remaining=entry.remaining - 1)
                    return entry.fault
        return None

    def pending(self) -> list[tuple[Fault, int]]:
        """Faults not yet (fully) consumed, with their remaining counts."""
        with self._lock:
            return [(entry.fault, entry.remaining) for entry in self._entries]

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._entries.clear()


def replacement_response(fault: Fault) -> Response | None:
    """The response that replaces the real page for faults that never serve records."""
    if fault.kind == "status":
        error_type, message = _gateway_error(fault.status)
        headers = [] if fault.retry_after is None else [("Retry-After", str(fault.retry_after))]
        return ApiGatewayError(fault.status, error_type, message, headers).to_response()
    if fault.kind == "expired_credentials":
        return ApiGatewayError(
            403, "ExpiredTokenException", "The security token included in the request is expired"
        ).to_response()
    if fault.kind == "html":
        return Response(200, _HTML_PAGE, [("Content-Type", "text/html; charset=utf-8")])
    if fault.kind == "bomb":
        headers = [("Content-Type", "application/json"), ("Content-Encoding", fault.encoding)]
        layers = len([c for c in fault.encoding.split(",") if c.strip()])
        return Response(200, gzip_bomb() if layers == 1 else gzip.compress(gzip_bomb(), 9), headers)
    if fault.kind == "deep_nesting":
        body = b"[" * fault.depth + b"]" * fault.depth
        return Response(200, body, [("Content-Type", "application/json")])
    return None


def _gateway_error(status: int) -> tuple[str, str]:
    if status in _GATEWAY_STATUS_ERRORS:
        return _GATEWAY_STATUS_ERRORS[status]
    # 404 -> NotFoundException "Not Found", 503 -> ServiceUnavailableException, ...
    phrase = HTTPStatus(status).phrase
    return f"{phrase.title().replace(' ', '').replace('-', '')}Exception", phrase


def mangle_response(fault: Fault, response: Response) -> Response | None:
    """Wire-level damage to a fully built page, or ``None`` if ``fault`` does no such thing."""
    half = len(response.body) // 2
    if fault.kind == "reset":
        return replace(response, reset_after=half)
    if fault.kind == "truncate":
        return replace(response, body=response.body[:half])
    if fault.kind == "drip":
        return replace(response, drip_ms=fault.delay_ms)
    if fault.kind == "short_body":
        return replace(response, body=response.body[:half], declared_length=len(response.body))
    if fault.kind == "overflow_number":
        return replace(response, body=response.body.replace(b"[{", b'[{"overflow":1e400,', 1))
    return None


@functools.cache
def gzip_bomb(size: int = 2 << 30) -> bytes:
    """gzip of `size` zero bytes (about 2 MB for 2 GiB), built in a second or two.

    The inner layer repeats one full-flushed deflate block of 1 MiB of zeros (a full flush
    resets the compressor, so every block is the same bytes), rather than compressing 2 GiB.
    """
    mib = b"\0" * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(mib, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = compressor.flush(zlib.Z_FINISH) + struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + block * (size >> 20) + trailer


class TokenBucket:
    """Token bucket rate limiter: ``rate`` tokens/second, at most ``burst`` saved up.

    ``rate=None`` disables limiting.  Reconfiguring refills the bucket.
    """

    def __init__(
        self, rate: float | None = None, burst: int = 1, clock: Callable[[], float] = time.monotonic
    ):
        self._clock = clock
        self._lock = threading.Lock()
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: int = 1) -> None:
        """Change the limit at runtime."""
        if rate is not None and (rate <= 0 or burst < 1):
            raise ValueError("need rate > 0 and burst >= 1")
        with self._lock:
            self._rate = rate
            self._burst = burst
            self._tokens = float(burst)
            self._updated = self._clock()

    def try_acquire(self) -> bool:
        """Take one token if available."""
        with self._lock:
            if self._rate is None:
                return True
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True
