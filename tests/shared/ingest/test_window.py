from __future__ import annotations

import itertools
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from shared import timestamps
from shared.config.catalog import WindowMapping
from shared.errors import RequestError
from shared.ingest.requests import BackfillRequest, parse_request
from shared.ingest.start import iso_duration
from shared.ingest.window import Every, Window, count_windows, longest_window, parse_every, window_at


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


# Finding 9 of issue 17: time right at the edges.


def test_years_before_1000_are_zero_padded_in_folders_and_iso() -> None:
    window = Window.parse("0001-01-01T00:00:00Z", "0999-12-31T23:59:59Z")
    assert window.folder == "00010101T000000Z_09991231T235959Z"
    assert window.to_json() == {"from": "0001-01-01T00:00:00Z", "to": "0999-12-31T23:59:59Z"}
    assert window.query_params(WindowMapping(format="date"))["from"] == "0001-01-01"


def test_precise_timestamps_are_zero_padded() -> None:
    assert timestamps.isoformat(datetime(9, 2, 3, 4, 5, 6, tzinfo=UTC)) == "0009-02-03T04:05:06Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", timestamps.utc_now_precise())


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("0001-01-01T00:00:00+01:00", "2024-01-01T00:00:00Z", "window.from"),
        ("2024-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00", "window.to"),
    ],
)
def test_offsets_past_the_calendar_are_a_request_error(start: str, end: str, field: str) -> None:
    with pytest.raises(RequestError) as caught:
        Window.parse(start, end)
    assert caught.value.field == field
    assert "outside years 0001-9999" in caught.value.reason


def test_sub_second_bounds_are_refused_not_rounded() -> None:
    with pytest.raises(RequestError) as caught:
        Window.parse("2024-01-01T00:00:00.500Z", "2024-01-02T00:00:00Z")
    assert caught.value.field == "window.from"
    assert "fraction of a second" in caught.value.reason
    # A zero fraction is the same instant: nothing is widened or narrowed.
    same = Window.parse("2024-01-01T00:00:00.000Z", "2024-01-02T00:00:00Z")
    assert same.to_json()["from"] == "2024-01-01T00:00:00Z"


def test_rfc3339_lowercase_t_and_z_are_accepted() -> None:
    window = Window.parse("2024-01-01t00:00:00z", "2024-01-02t01:00:00+01:00")
    assert window.to_json() == {"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z"}


def test_monthly_split_follows_the_calendar() -> None:
    window = Window.parse("2024-01-01T00:00:00Z", "2024-04-15T00:00:00Z")
    assert [p.to_json() for p in window.split(parse_every("P1M"))] == [
        {"from": "2024-01-01T00:00:00Z", "to": "2024-02-01T00:00:00Z"},
        {"from": "2024-02-01T00:00:00Z", "to": "2024-03-01T00:00:00Z"},
        {"from": "2024-03-01T00:00:00Z", "to": "2024-04-01T00:00:00Z"},
        {"from": "2024-04-01T00:00:00Z", "to": "2024-04-15T00:00:00Z"},
    ]


def test_month_ends_are_clamped_from_the_start_not_chained() -> None:
    start = datetime(2024, 1, 31, tzinfo=UTC)
    end = datetime(2024, 6, 1, tzinfo=UTC)
    starts = [w.start.date().isoformat() for w in Window(start, end).split(parse_every("P1M"))]
    assert starts == ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"]


def test_yearly_split_includes_leap_days() -> None:
    window = Window.parse("2023-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
    assert [p.span.days for p in window.split(parse_every("P1Y"))] == [365, 366, 365]


@pytest.mark.parametrize("every", ["PT1M", "PT7M", "P1D", "P1M", "P1Y", "P1M1D", "P2W"])
def test_windows_are_contiguous_and_cover_the_range(every: str) -> None:
    start, end = datetime(2023, 11, 30, 7, 13, tzinfo=UTC), datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    step = parse_every(every)
    count = count_windows(start, step, end)
    windows = [window_at(start, step, i, end) for i in range(count)]
    assert all(w is not None for w in windows)
    assert windows[0].start == start and windows[-1].end == end  # type: ignore[union-attr]
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))  # type: ignore[union-attr]
    assert window_at(start, step, count, end) is None
    assert window_at(start, step, -1, end) is None


@pytest.mark.parametrize("every", ["PT7M", "P1D", "P1M", "P1Y", "P1M1D", "P3M", "P5M"])
@pytest.mark.parametrize("start", ["2023-11-30T07:13:00Z", "2024-01-31T00:00:00Z", "2024-02-29T00:00:00Z"])
def test_the_longest_window_is_the_longest_of_every_window(every: str, start: str) -> None:
    begin, end = datetime.fromisoformat(start), datetime(2041, 3, 1, tzinfo=UTC)
    step = parse_every(every)
    count = min(count_windows(begin, step, end), 2000)
    windows = [window_at(begin, step, i, end) for i in range(count)]
    longest = longest_window(begin, step, end)
    assert longest is not None and longest.span == max(w.span for w in windows if w is not None)


def test_the_longest_window_of_a_calendar_step_can_be_longer_than_its_first() -> None:
    start, end = datetime(2024, 1, 31, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)
    assert window_at(start, parse_every("P1M1D"), 0, end).span == timedelta(days=30)  # type: ignore[union-attr]
    assert longest_window(start, parse_every("P1M1D"), end) == Window(
        datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 2, tzinfo=UTC)
    )
    assert longest_window(start, parse_every("P1M"), datetime(2024, 2, 10, tzinfo=UTC)) == Window(
        start, datetime(2024, 2, 10, tzinfo=UTC)
    )


def test_counting_a_huge_range_does_not_iterate() -> None:
    start, end = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    started = time.perf_counter()
    assert count_windows(start, parse_every("P1M"), end) == 9999 * 12
    assert count_windows(start, parse_every("PT1M"), end) == (end - start) // timedelta(minutes=1)
    last = window_at(start, parse_every("P1Y"), 9998, end)
    assert last is not None
    assert last.to_json() == {"from": "9999-01-01T00:00:00Z", "to": "9999-12-31T23:59:00Z"}
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("PT30S", "at least PT1M"),
        ("-P1D", "at least PT1M"),
        ("P0D", "at least PT1M"),
        ("P1.5M", "whole numbers"),
        ("monthly", "not an ISO8601 duration"),
        (3600, "ISO8601 duration string"),
    ],
)
def test_bad_every_is_named(value: object, reason: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_every(value)
    assert caught.value.field == "every"
    assert reason in caught.value.reason


def test_backfill_request_keeps_months_and_renders_them() -> None:
    body = {"source": "orders", "from": "2024-01-01T00:00:00Z", "to": "2024-03-01T00:00:00Z", "every": "p1m"}
    request = parse_request(BackfillRequest, body)
    assert request.every == Every(months=1)
    assert iso_duration(request.every) == "P1M"
    assert request.model_dump(mode="json", by_alias=True)["every"] == "P1M"
    with pytest.raises(RequestError, match="every: must be at least PT1M"):
        parse_request(BackfillRequest, {**body, "every": "PT59S"})
