from __future__ import annotations

from datetime import timedelta

import pytest

from shared.config.catalog import WindowMapping
from shared.errors import RequestError
from shared.ingest.window import Window


def test_parse_normalises_to_utc_and_renders_folder() -> None:
    window = Window.parse("2024-01-01T02:00:00+02:00", "2024-01-02T00:00:00Z")
    assert window.to_json() == {"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z"}
    assert window.folder == "20240101T000000Z_20240102T000000Z"


@pytest.mark.parametrize(
    ("start", "end", "field", "reason"),
    [
        ("2024-01-01", "2024-01-02T00:00:00Z", "window.from", "no timezone"),
        ("yesterday", "2024-01-02T00:00:00Z", "window.from", "not an ISO8601"),
        ("2024-01-01T00:00:00Z", None, "window.to", "ISO8601 timestamp string"),
        ("2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z", "window", "must be before"),
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "window", "must be before"),
    ],
)
def test_bad_windows_name_the_field(start: object, end: object, field: str, reason: str) -> None:
    with pytest.raises(RequestError) as caught:
        Window.parse(start, end)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_span_limit_points_at_backfill() -> None:
    window = Window.parse("2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z")
    with pytest.raises(RequestError, match="use a backfill"):
        window.check_span(WindowMapping(max_span=timedelta(days=31)), "orders")


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("iso8601", {"from": "2024-01-01T00:00:00Z", "to": "2024-01-01T01:00:00Z"}),
        ("epoch_s", {"from": "1704067200", "to": "1704070800"}),
        ("epoch_ms", {"from": "1704067200000", "to": "1704070800000"}),
        ("date", {"from": "2024-01-01", "to": "2024-01-01"}),
    ],
)
def test_query_param_formats(fmt: str, expected: dict[str, str]) -> None:
    window = Window.parse("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z")
    assert window.query_params(WindowMapping(format=fmt)) == expected  # type: ignore[arg-type]


def test_split_covers_the_window_exactly() -> None:
    window = Window.parse("2024-01-01T00:00:00Z", "2024-01-01T05:30:00Z")
    pieces = window.split(timedelta(hours=2))
    assert [p.folder for p in pieces] == [
        "20240101T000000Z_20240101T020000Z",
        "20240101T020000Z_20240101T040000Z",
        "20240101T040000Z_20240101T053000Z",
    ]
