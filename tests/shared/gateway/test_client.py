"""The API Gateway client against the emulator: retries that respect the server, safe failures."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from localcloud import Fault
from localcloud.stack import orders_source
from shared import __version__
from shared.landing.verify import read_records
from shared.runtime import USER_AGENT

from fixtures import HOUR, App


def configure(app: App, **overrides: object) -> None:
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, **overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured(app: App, form: str) -> None:
    retry_after: int | str = 1
    if form == "http-date":
        retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("status", status=503, retry_after=retry_after, page=1), times=1)
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    first_two = [r for r in gateway.requests if r.path == "/dev/orders"][:2]
    assert [r.status for r in first_two] == [503, 200]
    # Measured at the server: the retry came no sooner than asked (an HTTP-date has 1 s resolution).
    assert first_two[1].monotonic - first_two[0].monotonic >= 0.95


def test_429_with_retry_after_from_the_rate_limiter_is_honoured(app: App) -> None:
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("status", status=429, retry_after=1, page=2), times=1)
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    statuses = [r.status for r in gateway.requests]
    throttled = statuses.index(429)
    assert gateway.requests[throttled + 1].monotonic - gateway.requests[throttled].monotonic >= 0.95


@pytest.mark.parametrize("status", [403, 404, 400])
def test_non_retryable_4xx_fails_on_the_first_attempt_with_type_and_request_id(app: App, status: int) -> None:
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("status", status=status, page=3), times=1)
    instance = app.ingest()
    assert instance.runtime_status == "Failed"
    failing = [r for r in gateway.requests if r.status == status]
    assert len(failing) == 1, "a permanent error must not be retried, by the client or by Durable"
    assert f"HTTP {status}" in instance.output
    assert failing[0].request_id in instance.output
    assert "page=3" in instance.output


@pytest.mark.parametrize("status", [502, 503, 504])
def test_5xx_bursts_are_retried_with_backoff(app: App, status: int) -> None:
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("status", status=status, page=2), times=3)
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    assert gateway.count(status=status) == 3
    assert instance.output["records"] == 3600


def test_500_is_only_retried_when_the_source_opts_in(app: App) -> None:
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("status", status=500, page=2), times=1)
    assert app.ingest().runtime_status == "Failed"
    configure(app, retry={"retry_on_500": True, "backoff_initial_seconds": 0.05})
    gateway.reset_observations()
    gateway.inject(Fault("status", status=500, page=2), times=1)
    assert app.ingest(mode="replace").runtime_status == "Completed"


def test_persistent_truncated_json_fails_with_the_bad_pages_request_id_and_keeps_landed_parts(
    app: App,
) -> None:
    configure(app, retry={"max_attempts": 3, "activity_attempts": 1}, output={"pages_per_part": 2})
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("truncate", page=5), times=100)
    instance = app.ingest()
    assert instance.runtime_status == "Failed"
    bad = [r for r in gateway.requests if r.fault == "truncate"]
    assert len(bad) == 3
    assert "PageFormatError" in instance.output and "page=5" in instance.output
    assert bad[-1].request_id in instance.output
    prefix = "dev/orders/20240101T000000Z_20240101T010000Z"
    landed = sorted(n for n in app.landing.list_names(prefix) if "/part-" in n)
    assert landed == [f"{prefix}/part-00000.jsonl.gz", f"{prefix}/part-00001.jsonl.gz"]
    assert not app.landing.exists(f"{prefix}/_SUCCESS")

    # The API recovers; a rerun completes the window, every record exactly once.
    gateway.clear_faults()
    again = app.ingest()
    assert again.runtime_status == "Completed", again.output
    ids = Counter(r["id"] for r in read_records(app.landing, prefix))
    assert set(ids) == gateway.expected_ids("/dev/orders", *HOUR) and max(ids.values()) == 1


def test_slow_responses_past_the_read_timeout_are_retried(app: App) -> None:
    configure(app, retry={"read_timeout_seconds": 0.3, "backoff_initial_seconds": 0.05})
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("delay", delay_ms=1500, page=2), times=1)
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["records"] == 3600


def test_oversized_page_is_an_error_not_an_oom(app: App) -> None:
    configure(app, pagination={"max_page_bytes": 100_000}, retry={"activity_attempts": 1})
    app.stack.cloud.gateway.inject(Fault("huge", size_bytes=500_000, page=1), times=10)
    instance = app.ingest()
    assert instance.runtime_status == "Failed"
    assert "100000-byte cap" in instance.output


def test_every_request_carries_correlation_and_trace_context(app: App) -> None:
    instance = app.ingest(pipelineRunId="adf-7f3c")
    assert instance.runtime_status == "Completed"
    requests = app.stack.cloud.gateway.requests
    assert {r.correlation_id for r in requests} == {"adf-7f3c"}
    trace_ids = {r.traceparent.split("-")[1] for r in requests if r.traceparent}
    assert len(trace_ids) == 1 and len(requests) == 36
    assert len({r.traceparent for r in requests}) == 36  # a fresh span per request
    # The app names itself, so AWS-side access logs tell its requests from anyone else's.
    assert {r.user_agent for r in requests} == {USER_AGENT}
    assert USER_AGENT.startswith(f"apigw-adf-bridge/{__version__} python-httpx/")


def test_manifest_records_first_and_last_request_ids_per_part(app: App) -> None:
    instance = app.ingest()
    manifest = app.landing.read_json(f"{instance.output['prefix']}/_manifest.json")
    assert manifest is not None
    ok_ids = [r.request_id for r in app.stack.cloud.gateway.requests if r.status == 200]
    assert manifest["parts"][0]["first_request_id"] == ok_ids[0]
    assert manifest["parts"][-1]["last_request_id"] == ok_ids[-1]
