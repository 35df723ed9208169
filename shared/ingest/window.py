"""Time windows: parsing what callers send, and rendering them for APIs and blob paths."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.config.catalog import WindowMapping
from shared.errors import RequestError

_FOLDER_FORMAT = "%Y%m%dT%H%M%SZ"


def parse_instant(value: object, field: str) -> datetime:
    """An ISO8601 instant; a naive one is refused rather than guessed."""
    if not isinstance(value, str) or not value:
        raise RequestError(field, "must be an ISO8601 timestamp string like 2024-01-01T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RequestError(field, f"{value[:64]!r} is not an ISO8601 timestamp") from None
    if parsed.tzinfo is None:
        raise RequestError(field, f"{value[:64]!r} has no timezone; add Z or an offset")
    return parsed.astimezone(UTC)


def isoformat(instant: datetime) -> str:
    """Canonical UTC rendering: 2024-01-01T00:00:00Z."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Window:
    """A half-open time range [start, end) in UTC, second precision."""

    start: datetime
    end: datetime

    @classmethod
    def parse(cls, start: object, end: object, *, field: str = "window") -> Window:
        """Parse and check a caller's window: both ISO8601 with a timezone, start before end."""
        begin = parse_instant(start, f"{field}.from").replace(microsecond=0)
        finish = parse_instant(end, f"{field}.to").replace(microsecond=0)
        if begin >= finish:
            raise RequestError(field, f"from ({isoformat(begin)}) must be before to ({isoformat(finish)})")
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
        return f"{self.start.strftime(_FOLDER_FORMAT)}_{self.end.strftime(_FOLDER_FORMAT)}"

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

    def split(self, every: timedelta) -> list[Window]:
        """Consecutive sub-windows of at most `every`, covering this window exactly."""
        windows = []
        cursor = self.start
        while cursor < self.end:
            # Compared before adding: cursor + every may lie past datetime's range.
            nxt = self.end if every >= self.end - cursor else cursor + every
            windows.append(Window(cursor, nxt))
            cursor = nxt
        return windows


def _render(instant: datetime, fmt: str) -> str:
    if fmt == "epoch_s":
        return str(int(instant.timestamp()))
    if fmt == "epoch_ms":
        return str(int(instant.timestamp() * 1000))
    if fmt == "date":
        return instant.date().isoformat()
    return isoformat(instant)
