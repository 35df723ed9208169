"""Time windows: parsing what callers send, and rendering them for APIs and blob paths."""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import isodate

from shared.config.catalog import WindowMapping
from shared.errors import RequestError
from shared.timestamps import folder_stamp, isoformat

MIN_EVERY = timedelta(minutes=1)


def parse_instant(value: object, field: str) -> datetime:
    """An ISO8601 / RFC 3339 instant in UTC, whole seconds; a naive one is refused rather than guessed.

    Sub-second instants are refused, not rounded: a window is named, queried and landed at second
    precision, and widening or narrowing a caller's bound silently would land other records.
    """
    if not isinstance(value, str) or not value:
        raise RequestError(field, "must be an ISO8601 timestamp string like 2024-01-01T00:00:00Z")
    try:
        # RFC 3339 (5.6) allows lowercase t and z; fromisoformat takes only capitals.
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        raise RequestError(field, f"{value[:64]!r} is not an ISO8601 timestamp") from None
    if parsed.tzinfo is None:
        raise RequestError(field, f"{value[:64]!r} has no timezone; add Z or an offset")
    try:
        instant = parsed.astimezone(UTC)
    except OverflowError:
        raise RequestError(field, f"{value[:64]!r} lies outside years 0001-9999 once moved to UTC") from None
    if instant.microsecond:
        raise RequestError(
            field, f"{value[:64]!r} has a fraction of a second; windows are whole seconds (drop the fraction)"
        )
    return instant


@dataclass(frozen=True)
class Every:
    """A step between windows: whole calendar months (P1M, P1Y = 12 months) and/or a fixed time.

    Calendar months are added to the backfill's start (not chained window to window), so P1M from
    Jan 31 gives Jan 31, Feb 29, Mar 31, ... and every window starts where the previous one ends.
    """

    months: int = 0
    fixed: timedelta = timedelta(0)

    @property
    def text(self) -> str:
        """ISO 8601 (P1M, P1Y, PT1H, P1DT2H): instance ids and the CLI show it this way."""
        years, months = divmod(self.months, 12)
        duration: timedelta | isodate.Duration = self.fixed
        if self.months:
            duration = isodate.Duration(years=years, months=months) + self.fixed
        return str(isodate.duration_isoformat(duration))

    @property
    def shortest(self) -> timedelta:
        """A lower bound of one step: months are at least 28 days."""
        return timedelta(days=28 * self.months) + self.fixed

    def boundary(self, start: datetime, index: int) -> datetime:
        """start + index steps; OverflowError past year 9999."""
        shifted = _add_months(start, self.months * index) if self.months else start
        return shifted + self.fixed * index


def parse_every(value: object, field: str = "every") -> Every:
    """An ISO 8601 duration of at least PT1M (P1M and P1Y are calendar months and years)."""
    if isinstance(value, Every):
        return value
    if isinstance(value, timedelta):
        every = Every(fixed=value)
    elif isinstance(value, str) and value:
        try:
            parsed = isodate.parse_duration(value.upper())
        except (isodate.ISO8601Error, ValueError, OverflowError):
            reason = f"{value[:64]!r} is not an ISO8601 duration like PT1H, P1D or P1M"
            raise RequestError(field, reason) from None
        if isinstance(parsed, isodate.Duration):
            months = Decimal(parsed.years) * 12 + Decimal(parsed.months)
            if months != int(months):
                raise RequestError(field, f"{value[:64]!r}: months and years must be whole numbers")
            every = Every(months=int(months), fixed=parsed.tdelta)
        else:
            every = Every(fixed=parsed)
    else:
        raise RequestError(field, "must be an ISO8601 duration string like PT1H, P1D or P1M")
    if every.months < 0 or every.fixed < timedelta(0) or (not every.months and every.fixed < MIN_EVERY):
        raise RequestError(field, "must be at least PT1M")
    return every


def count_windows(start: datetime, every: Every | timedelta, end: datetime) -> int:
    """How many windows of `every` cover [start, end): computed, not iterated (a range can be huge)."""
    step = parse_every(every)
    if end <= start:
        return 0
    if not step.months:
        return -(-(end - start) // step.fixed)
    # The first boundary at or past end, by bisection: boundaries grow with the index.
    low, high = 0, -(-(end - start) // step.shortest)
    while low + 1 < high:
        mid = (low + high) // 2
        if _reaches(start, step, mid, end):
            high = mid
        else:
            low = mid
    return high


def window_at(start: datetime, every: Every | timedelta, index: int, end: datetime) -> Window | None:
    """The index-th window of [start, end) cut every `every`; None past the last one.

    Windows are contiguous: each starts at the previous one's end, the last one ends at `end`.
    """
    step = parse_every(every)
    if index < 0 or _reaches(start, step, index, end):
        return None
    return Window(step.boundary(start, index), _edge(start, step, index + 1, end))


# Month lengths (leap years included) repeat every 400 years: 4,800 months.
_CALENDAR_MONTHS = 4800


def longest_window(start: datetime, every: Every | timedelta, end: datetime) -> Window | None:
    """The longest window of [start, end) cut every `every` (the first, if several are as long).

    A fixed step makes every window but the last as long as the first; a calendar step makes them
    as long as their months, and those repeat within 4,800 months, so at most that many are
    looked at, however long the range.
    """
    step = parse_every(every)
    if not step.months:
        return window_at(start, step, 0, end)
    longest: Window | None = None
    begin = start
    for index in range(1, _CALENDAR_MONTHS // math.gcd(step.months, _CALENDAR_MONTHS) + 1):
        finish = _edge(start, step, index, end)
        if longest is None or finish - begin > longest.span:
            longest = Window(begin, finish)
        if finish == end:
            break
        begin = finish
    return longest


def _edge(start: datetime, step: Every, index: int, end: datetime) -> datetime:
    """Where window `index` - 1 ends and window `index` begins: boundary `index`, or `end`."""
    return end if _reaches(start, step, index, end) else step.boundary(start, index)


def _reaches(start: datetime, step: Every, index: int, end: datetime) -> bool:
    try:
        return step.boundary(start, index) >= end
    except OverflowError:
        return True  # past year 9999, so past any end


def _add_months(instant: datetime, months: int) -> datetime:
    """Calendar months later, the day clamped to the month's last (Jan 31 + 1 month = Feb 29)."""
    year, month0 = divmod(instant.month - 1 + months, 12)
    year += instant.year
    if not 1 <= year <= 9999:
        raise OverflowError("date value out of range")
    month = month0 + 1
    day = min(instant.day, calendar.monthrange(year, month)[1])
    return instant.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class Window:
    """A half-open time range [start, end) in UTC, second precision (sub-second bounds are refused)."""

    start: datetime
    end: datetime

    @classmethod
    def parse(cls, start: object, end: object, *, field: str | None = "window") -> Window:
        """Parse and check a caller's window: both ISO8601 with a timezone, start before end.

        Errors name `field`.from and `field`.to, or top-level from and to when `field` is None."""
        prefix = f"{field}." if field else ""
        begin = parse_instant(start, f"{prefix}from")
        finish = parse_instant(end, f"{prefix}to")
        if begin >= finish:
            raise RequestError(
                field or "to", f"from ({isoformat(begin)}) must be before to ({isoformat(finish)})"
            )
        return cls(begin, finish)

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    def check_span(self, mapping: WindowMapping, source: str) -> None:
        """Refuse windows longer than the source allows in one run."""
        if self.span > mapping.max_span:
            raise RequestError(
                "window",
                f"spans {self.span} but source {source!r} allows at most {mapping.max_span}; use a backfill",
                source=source,
            )

    @property
    def folder(self) -> str:
        """The blob folder name: 20240101T000000Z_20240102T000000Z (no ':' for ADF paths)."""
        return f"{folder_stamp(self.start)}_{folder_stamp(self.end)}"

    def to_json(self) -> dict[str, str]:
        return {"from": isoformat(self.start), "to": isoformat(self.end)}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Window:
        return cls.parse(data.get("from"), data.get("to"))

    def query_params(self, mapping: WindowMapping) -> dict[str, str]:
        """The window as the API expects it in its query string."""
        return {
            mapping.from_param: _render(self.start, mapping.format),
            mapping.to_param: _render(self.end, mapping.format),
        }

    def split(self, every: Every | timedelta) -> list[Window]:
        """Consecutive sub-windows of at most `every`, covering this window exactly (see window_at)."""
        windows = []
        for index in range(count_windows(self.start, every, self.end)):
            piece = window_at(self.start, every, index, self.end)
            assert piece is not None  # index < count
            windows.append(piece)
        return windows


def _render(instant: datetime, fmt: str) -> str:
    if fmt == "epoch_s":
        return str(int(instant.timestamp()))
    if fmt == "epoch_ms":
        return str(int(instant.timestamp() * 1000))
    if fmt == "date":
        return instant.date().isoformat()
    return isoformat(instant)
