"""UTC timestamps as this app writes them everywhere: ISO 8601 with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime

# Built field by field rather than with strftime: glibc's %Y does not zero-pad years before 1000
# (year 1 renders as "1", so a folder reads 10101T000000Z), and those years are valid windows.


def isoformat(instant: datetime) -> str:
    """Canonical UTC rendering at second precision: 2024-01-01T00:00:00Z (windows, manifests)."""
    t = instant.astimezone(UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"


def folder_stamp(instant: datetime) -> str:
    """The compact form for blob folder names (no ':' for ADF paths): 20240101T000000Z."""
    t = instant.astimezone(UTC)
    return f"{t.year:04d}{t.month:02d}{t.day:02d}T{t.hour:02d}{t.minute:02d}{t.second:02d}Z"


def utc_now_precise() -> str:
    """Now, to the microsecond: 2024-01-01T00:00:00.123456Z (part and journal times)."""
    t = datetime.now(UTC)
    return f"{isoformat(t)[:-1]}.{t.microsecond:06d}Z"
