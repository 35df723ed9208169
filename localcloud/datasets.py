"""Deterministic synthetic datasets served by the local API Gateway.

Record ``i`` of a dataset is a pure function of ``(dataset name, i)`` and has timestamp
``epoch_start + i * interval`` with ``interval = 3600 / records_per_hour`` seconds.  A time
window therefore maps to a contiguous index range by arithmetic alone, so a page of a
million-record window costs the same as a page of a ten-record one.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from functools import cached_property
from typing import Any, Literal

__all__ = ["Dataset", "Instant", "PaginationStyle", "TimeFormat", "instant"]

PaginationStyle = Literal[
    "next_token", "next_url", "link_header", "offset", "page_number", "cursor_last_record", "none"
]
TimeFormat = Literal["iso", "epoch"]
# A point in time: aware datetime, ISO 8601 string with offset, or epoch seconds.
Instant = datetime | str | float | Fraction

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATUSES = ("pending", "paid", "shipped", "delivered", "refunded")
_CUSTOMERS = 97  # prime, so customer ids do not line up with hours or pages


@dataclass(frozen=True)
class Dataset:
    """A synthetic, infinitely long, time-ordered record stream and how it is paged.

    ``from_param``/``to_param`` name the window query parameters, given as ISO 8601 with an
    offset (``time_format="iso"``) or as epoch seconds (``"epoch"``).  ``default_limit`` and
    ``max_limit`` bound the page size (larger requests are clamped, as most APIs do).
    ``trailing_empty_page`` makes the last non-empty page still advertise a continuation
    that yields an empty page; ``foreign_next_url`` replaces every next link
    (``next_url``/``link_header`` styles) with that URL.
    """

    name: str
    records_per_hour: int = 3600
    pagination: PaginationStyle = "next_token"
    epoch_start: datetime = _EPOCH
    from_param: str = "from"
    to_param: str = "to"
    time_format: TimeFormat = "iso"
    default_limit: int = 100
    max_limit: int = 1000
    trailing_empty_page: bool = False
    foreign_next_url: str | None = None

    def __post_init__(self) -> None:
        if self.records_per_hour <= 0:
            raise ValueError("records_per_hour must be positive")
        if not 1 <= self.default_limit <= self.max_limit:
            raise ValueError("need 1 <= default_limit <= max_limit")
        if self.epoch_start.tzinfo is None:
            raise ValueError("epoch_start must be timezone-aware")

    # -- index <-> time -------------------------------------------------------------------

    @property
    def interval(self) -> Fraction:
        """Exact seconds between consecutive records."""
        return Fraction(3600, self.records_per_hour)

    def window(self, start: Instant, end: Instant) -> range:
        """Indices of the records with ``start <= ts < end`` (never negative indices)."""
        origin = _seconds(self.epoch_start)
        first = max(0, math.ceil((instant(start) - origin) / self.interval))
        stop = max(first, math.ceil((instant(end) - origin) / self.interval))
        return range(first, stop)

    def parse_window(self, params: Mapping[str, str]) -> range:
        """The index range a request's window parameters select; ``ValueError`` if invalid."""
        bounds = []
        for name in (self.from_param, self.to_param):
            raw = params.get(name)
            if not raw:
                raise ValueError(f"Missing required query parameter '{name}'")
            try:
                bounds.append(_parse_epoch(raw) if self.time_format == "epoch" else _parse_iso(raw))
            except ValueError as error:
                raise ValueError(f"Invalid value for '{name}': {error}") from None
        start, end = bounds
        if start > end:
            raise ValueError(f"'{self.from_param}' must not be after '{self.to_param}'")
        return self.window(start, end)

    # -- records ---------------------------------------------------------------------------

    def record_id(self, index: int) -> str:
        """The ``id`` field of record ``index``."""
        return f"{self.name}-{index}"

    def index_of(self, record_id: str) -> int | None:
        """Inverse of :meth:`record_id`; ``None`` for an id of another dataset or garbage."""
        prefix = f"{self.name}-"
        if not record_id.startswith(prefix):
            return None
        try:
            return int(record_id[len(prefix) :])
        except ValueError:
            return None

    def timestamp(self, index: int) -> str:
        """ISO 8601 UTC timestamp of record ``index`` (microseconds only when needed)."""
        # Integer microseconds rather than Fraction/datetime: this runs once per record
        # served and dominates page latency otherwise.  Flooring keeps ``ts >= from``.
        seconds, micros = divmod(
            self._origin_micros + index * 3_600_000_000 // self.records_per_hour, 1_000_000
        )
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return f"{stamp}.{micros:06d}Z" if micros else f"{stamp}Z"

    @cached_property
    def _origin_micros(self) -> int:
        return int(_seconds(self.epoch_start) * 1_000_000)

    def record(self, index: int) -> dict[str, Any]:
        """Record ``index``: the same dict every time, on every machine."""
        digest = hashlib.blake2b(f"{self.name}:{index}".encode(), digest_size=8).digest()
        noise = int.from_bytes(digest, "big")
        return {
            "id": self.record_id(index),
            "ts": self.timestamp(index),
            "customer": f"c-{index % _CUSTOMERS}",
            "amount": (noise % 1_000_000) / 100,
            "currency": "EUR",
            "status": _STATUSES[(noise >> 32) % len(_STATUSES)],
        }

    def records(self, indices: range) -> list[dict[str, Any]]:
        """The records for an index range (one page: never call with a whole window)."""
        return [self.record(index) for index in indices]

    def ids(self, start: Instant, end: Instant) -> set[str]:
        """Every record id in ``[start, end)``: what a complete walk must deliver."""
        return {self.record_id(index) for index in self.window(start, end)}


def instant(value: Instant) -> Fraction:
    """Epoch seconds, exactly, from an aware datetime, an ISO 8601 string or a number."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetime must be timezone-aware")
        return _seconds(value)
    if isinstance(value, str):
        return _parse_iso(value)
    return Fraction(value)


def _seconds(moment: datetime) -> Fraction:
    delta = moment - _EPOCH
    return Fraction(delta.days * 86400 + delta.seconds) + Fraction(delta.microseconds, 1_000_000)


def _parse_iso(raw: str) -> Fraction:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"'{raw}' is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise ValueError(f"'{raw}' has no UTC offset")
    return _seconds(moment)


def _parse_epoch(raw: str) -> Fraction:
    try:
        # Fraction() also parses "1/3"; a decimal number is all an API would accept.
        if "/" in raw:
            raise ValueError(raw)
        return Fraction(raw)
    except ValueError:
        raise ValueError(f"'{raw}' is not a number of epoch seconds") from None
