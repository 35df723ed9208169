"""Every pagination style against the emulator, through the real ingest path, edge cases included."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from localcloud import Dataset, Fault
from localcloud.stack import orders_source
from shared.landing.verify import read_records, verify_window

from fixtures import App

TWO_HOURS = ("2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")

# emulator style -> (catalog pagination settings that read it)
STYLES: dict[str, dict[str, Any]] = {
    "next_token": {"type": "next_token", "records_path": "items", "token_path": "next_token"},
    "next_url": {"type": "next_url", "records_path": "data", "next_url_path": "links.next"},
    "link_header": {"type": "link_header", "records_path": ""},
    "offset": {"type": "offset", "records_path": "items", "offset_param": "offset", "total_path": "total"},
    "page_number": {
        "type": "page_number",
        "records_path": "results",
        "page_param": "page",
        "page_size_param": "per_page",
        "total_pages_path": "total_pages",
    },
    "cursor_last_record": {
        "type": "cursor",
        "records_path": "items",
        "cursor_param": "after",
        "cursor_field": "id",
        "has_more_path": "has_more",
    },
    "none": {"type": "none", "records_path": "", "page_size_param": ""},
}


def publish(app: App, style: str, **dataset: Any) -> str:
    """Serve a 600-records/hour dataset in `style` and point the `orders` source at it."""
    path = f"/dev/{style.replace('_', '-')}"
    name = f"ds{abs(hash((style, tuple(sorted(dataset.items()))))) % 10**8}"
    app.stack.cloud.gateway.add_dataset(
        path, Dataset(name=name, records_per_hour=600, pagination=style, **dataset)
    )  # type: ignore[arg-type]
    pagination = {"page_size": 50, **STYLES[style]}
    app.write_sources(
        orders=orders_source(
            app.stack.cloud.gateway_url,
            path=path[len("/dev") :],
            pagination=pagination,
            output={"pages_per_part": 3},
        )
    )
    return path


def landed_ids(app: App, prefix: str) -> Counter[str]:
    return Counter(record["id"] for record in read_records(app.landing, prefix))


@pytest.mark.parametrize("style", list(STYLES))
def test_each_style_walks_the_window_exactly_once(app: App, style: str) -> None:
    path = publish(app, style)
    instance = app.ingest(window=TWO_HOURS)
    assert instance.runtime_status == "Completed", instance.output
    summary = instance.output
    expected = app.stack.cloud.gateway.expected_ids(path, *TWO_HOURS)
    ids = landed_ids(app, summary["prefix"])
    assert set(ids) == expected and len(expected) == 1200
    assert max(ids.values()) == 1
    assert verify_window(app.landing, summary["prefix"]).ok
    if style != "none":
        # 24 pages of 50 in parts of 3 pages: the cursor was checkpointed between parts.
        assert len(summary["parts"]) == 8


@pytest.mark.parametrize("style", [s for s in STYLES if s != "none"])
def test_an_api_that_caps_the_page_size_below_the_catalogs_is_walked_to_the_end(app: App, style: str) -> None:
    """Asked for 50, it answers 20 (most APIs clamp): a short page is not the end when the API
    says there is more (its total, its page count, a continuation)."""
    path = publish(app, style, max_limit=20, default_limit=20)
    instance = app.ingest(window=TWO_HOURS)
    assert instance.runtime_status == "Completed", instance.output
    ids = landed_ids(app, instance.output["prefix"])
    assert set(ids) == app.stack.cloud.gateway.expected_ids(path, *TWO_HOURS) and max(ids.values()) == 1


def test_empty_window_lands_an_empty_manifest_and_success(app: App) -> None:
    publish(app, "next_token")
    # 600/hour means one record every 6 s: this 5-second window holds none.
    instance = app.ingest(window=("2024-01-01T00:00:01Z", "2024-01-01T00:00:06Z"))
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["records"] == 0
    assert instance.output["parts"] == []
    assert verify_window(app.landing, instance.output["prefix"]).ok


def test_trailing_empty_page_ends_the_walk_without_an_empty_part(app: App) -> None:
    path = publish(app, "next_token", trailing_empty_page=True)
    instance = app.ingest(window=TWO_HOURS)
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["records"] == 1200
    assert set(landed_ids(app, instance.output["prefix"])) == app.stack.cloud.gateway.expected_ids(
        path, *TWO_HOURS
    )
    # The empty 25th page was fetched, landed nothing, and no empty part was written.
    assert app.stack.cloud.gateway.count(status=200) == 25
    assert len(instance.output["parts"]) == 8


@pytest.mark.parametrize("style", ["next_token", "next_url", "cursor_last_record"])
def test_a_repeated_cursor_fails_clearly_instead_of_spinning(app: App, style: str) -> None:
    publish(app, style)
    app.stack.cloud.gateway.inject(Fault("loop_cursor", page=4), times=1)
    instance = app.ingest(window=TWO_HOURS)
    assert instance.runtime_status == "Failed"
    assert "PaginationError" in instance.output
    assert "already returned" in instance.output
    assert app.stack.cloud.gateway.count() < 20


def test_page_cap_stops_a_walk_that_would_not_end(app: App) -> None:
    publish(app, "next_token")
    source = orders_source(
        app.stack.cloud.gateway_url,
        path="/next-token",
        pagination={**STYLES["next_token"], "page_size": 50, "max_pages": 5},
    )
    app.write_sources(orders=source)
    instance = app.ingest(window=TWO_HOURS)
    assert instance.runtime_status == "Failed"
    assert "more than 5 pages" in instance.output


@pytest.mark.parametrize("style", ["next_url", "link_header"])
def test_a_next_link_to_another_host_is_refused_not_followed(app: App, style: str) -> None:
    publish(app, style, foreign_next_url="http://169.254.169.254/latest/meta-data/")
    instance = app.ingest(window=TWO_HOURS)
    assert instance.runtime_status == "Failed"
    assert "UnsafeUrlError" in instance.output and "169.254.169.254" in instance.output
    # Only first pages were ever requested from the gateway (once per activity attempt).
    assert all(not r.query.get("next_token") for r in app.stack.cloud.gateway.requests)
