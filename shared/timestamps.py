"""UTC timestamps as this app writes them everywhere: ISO 8601 with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def isoformat(instant: datetime) -> str:
    """Canonical UTC rendering at second precision: 2024-01-01T00:00:00Z (windows, manifests)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now_precise() -> str:
    """Now, to the microsecond: 2024-01-01T00:00:00.123456Z (part and journal times)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
