"""Telemetry: a run's spans and counters, JSON log lines, progress, and nothing at all when unconfigured.

Spans and metrics are read back through OpenTelemetry's in-memory exporter and reader, handed
to `configure_telemetry` (the module's test hook); Application Insights' own exporter is
exercised against a local ingestion endpoint. Every test puts the module back to "not
configured", and none touches OpenTelemetry's global providers.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import pty
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from localcloud import Fault
from localcloud.stack import orders_source
from shared import runtime
from shared.gateway.client import RunContext
from shared.ingest.payloads import FetchPartInput, FinalizeInput, IngestState, PlanInput
from shared.observability import logs as telemetry
from shared.observability import otel as otel_setup
from shared.observability import tracing
from shared.observability.logs import ConsoleHandler, JsonFormatter
from shared.observability.progress import describe, reporting
from shared.observability.tracing import (
    ATTEMPTS,
    HTTP_STATUS,
    INSTANCE_ID,
    PAGE,
    PAGE_SPAN,
    REQUEST_ID,
    RUN_ID,
    SOURCE,
    STS_SPAN,
)

from fixtures import HOUR, REPO, App, fetch_parts_scheduled

WINDOW = f"{HOUR[0]}/{HOUR[1]}"
LOGGERS = ("", "shared", "azure", "msal", "botocore", "boto3", "urllib3", "httpx", "httpcore")
SIGNATURE = re.compile(r"Signature=([0-9a-f]{64})")


@pytest.fixture(autouse=True)
def unconfigured() -> Iterator[None]:
    """Each test starts and ends with telemetry not configured, and OpenTelemetry's globals untouched."""
    otel_setup.reset_telemetry()
    yield
    otel_setup.reset_telemetry()
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert not isinstance(metrics.get_meter_provider(), MeterProvider)


@pytest.fixture
def otel() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    assert otel_setup.configure_telemetry(span_exporter=spans, metric_reader=reader)
    return spans, reader


def counters(reader: InMemoryMetricReader) -> Counter[str]:
    """Each counter's total over its data points (sources, outcomes)."""
    totals: Counter[str] = Counter()
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                totals[metric.name] += sum(int(point.value) for point in metric.data.data_points)  # type: ignore[union-attr]
    return totals


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def run_trace_id(run_id: str) -> int:
    return int(RunContext(run_id, "any").trace_id, 16)


@dataclass(frozen=True)
class FakeSource:
    name: str = "orders"
    method: str = "GET"
    endpoint: str = "https://api.example/dev/orders"


@dataclass
class FakeAttempts:
    count: int


@dataclass
class FakePage:
    records: list[Any]
    size: int


# --- spans and counters ------------------------------------------------------------------------


def test_a_run_records_activity_page_and_sts_spans_and_counters(
    app: App, otel: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    exporter, reader = otel
    cloud = app.stack.cloud
    # 36 pages, 10 a part: 4 parts, 2 an activity.
    app.write_sources(orders=orders_source(cloud.gateway_url, output={"parts_per_activity": 2}))
    sts_before = cloud.sts.call_count
    instance = app.ingest(pipelineRunId="telemetry-run")
    assert instance.runtime_status == "Completed", instance.output
    summary = instance.output
    spans = exporter.get_finished_spans()
    served = [r for r in cloud.gateway.requests if r.status == 200]

    # One span per activity, children of none: each is the root of the run's trace on its worker.
    assert len(named(spans, "plan_window")) == len(named(spans, "finalize")) == 1
    fetches = named(spans, "fetch_part")
    assert len(fetches) == 2 and len(summary["parts"]) == 4
    for span in fetches + named(spans, "finalize"):
        assert span.parent is None
        assert span.context.trace_id == run_trace_id("telemetry-run")
        assert span.attributes is not None
        assert span.attributes[RUN_ID] == "telemetry-run"
        assert span.attributes[INSTANCE_ID] == instance.instance_id
        assert span.attributes["bridge.window"] == WINDOW
        assert span.status.status_code is StatusCode.UNSET
    assert sorted(s.attributes["bridge.part"] for s in fetches if s.attributes) == [0, 2]  # first parts

    # One span per page, under the fetch_part that fetched it, naming the API's request id.
    pages = named(spans, PAGE_SPAN)
    assert len(pages) == len(served) == summary["pages"]
    assert {s.attributes[REQUEST_ID] for s in pages if s.attributes} == {r.request_id for r in served}
    assert sorted(s.attributes[PAGE] for s in pages if s.attributes) == list(range(1, len(pages) + 1))
    fetch_ids = {span.context.span_id for span in fetches}
    for span in pages:
        assert span.parent is not None and span.parent.span_id in fetch_ids
        assert span.context.trace_id == run_trace_id("telemetry-run")
        assert span.attributes is not None
        assert span.attributes[HTTP_STATUS] == 200
        assert span.attributes[ATTEMPTS] == 1
        assert span.attributes[SOURCE] == "orders"
        assert span.attributes[RUN_ID] == "telemetry-run"

    # The role was assumed once, inside the first fetch_part.
    sts_calls = cloud.sts.call_count - sts_before
    [sts] = named(spans, STS_SPAN)
    assert sts_calls == 1
    assert sts.parent is not None and sts.parent.span_id in fetch_ids
    assert sts.attributes is not None and sts.attributes[REQUEST_ID]
    assert sts.attributes["bridge.role_arn"] == cloud.role_arn

    totals = counters(reader)
    assert totals["bridge.pages"] == len(served)
    assert totals["bridge.records"] == summary["records"] == 3600
    assert totals["bridge.parts"] == len(summary["parts"])
    assert totals["bridge.landed_bytes"] == summary["bytes"]
    assert totals["bridge.sts_calls"] == sts_calls
    assert totals["bridge.retries"] == totals["bridge.throttled"] == 0


def test_retries_and_429s_are_counted_and_the_page_span_tells_the_attempts(
    app: App, otel: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    exporter, reader = otel
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("status", status=429, page=2), times=2)
    gateway.inject(Fault("status", status=503, page=5), times=1)
    instance = app.ingest(pipelineRunId="telemetry-retries")
    assert instance.runtime_status == "Completed", instance.output
    pages = {s.attributes[PAGE]: s for s in named(exporter.get_finished_spans(), PAGE_SPAN) if s.attributes}
    assert pages[2].attributes is not None and pages[2].attributes[ATTEMPTS] == 3
    assert pages[5].attributes is not None and pages[5].attributes[ATTEMPTS] == 2
    assert pages[2].attributes[HTTP_STATUS] == pages[5].attributes[HTTP_STATUS] == 200
    served = {r.request_id for r in gateway.requests if r.status == 200}
    assert {s.attributes[REQUEST_ID] for s in pages.values() if s.attributes} == served
    totals = counters(reader)
    assert totals["bridge.throttled"] == gateway.count(status=429) == 2
    assert totals["bridge.retries"] == gateway.count(status=429) + gateway.count(status=503) == 3
    assert totals["bridge.pages"] == gateway.count(status=200)


def test_a_failed_page_and_its_activity_carry_the_error_and_the_request_id(
    app: App, otel: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    exporter, _ = otel
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("status", status=400, page=3), times=1)
    instance = app.ingest(pipelineRunId="telemetry-failed")
    assert instance.runtime_status == "Failed"
    [refused] = [r for r in gateway.requests if r.status == 400]
    spans = exporter.get_finished_spans()
    [page] = [s for s in named(spans, PAGE_SPAN) if s.attributes and s.attributes[PAGE] == 3]
    assert page.status.status_code is StatusCode.ERROR
    assert page.attributes is not None
    assert page.attributes[HTTP_STATUS] == 400
    assert page.attributes[REQUEST_ID] == refused.request_id
    assert page.attributes["error.type"] == "GatewayError"
    assert any(event.name == "exception" for event in page.events)
    [failed] = [s for s in named(spans, "fetch_part") if s.status.status_code is StatusCode.ERROR]
    assert page.parent is not None and page.parent.span_id == failed.context.span_id


# --- nothing configured, nothing exported --------------------------------------------------------


def test_without_a_connection_string_no_provider_or_exporter_exists(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter, AzureMonitorTraceExporter

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an Application Insights exporter was built")

    monkeypatch.setattr(AzureMonitorTraceExporter, "__init__", refuse)
    monkeypatch.setattr(AzureMonitorMetricExporter, "__init__", refuse)
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    assert otel_setup.configure_telemetry() is False
    otel_setup.reset_telemetry()

    runtime.reset()  # the next runtime configures telemetry from the settings, as in Azure
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    state = otel_setup._state
    assert state.configured and not otel_setup.enabled()
    assert state.tracer is state.tracer_provider is state.meter_provider is state.instruments is None
    assert trace.get_current_span() is trace.INVALID_SPAN
    # The in-process totals (for progress) still count.
    assert otel_setup.totals().pages > 0


def test_a_connection_string_the_exporter_refuses_turns_telemetry_off_not_ingestion(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert (
        otel_setup.configure_telemetry("InstrumentationKey=not-a-uuid;IngestionEndpoint=http://127.0.0.1:9/")
        is False
    )
    assert not otel_setup.enabled()
    assert any("APPLICATIONINSIGHTS_CONNECTION_STRING refused" in r.getMessage() for r in caplog.records)


def test_telemetry_off_costs_next_to_nothing_per_page() -> None:
    source, run = FakeSource(), RunContext("run", "instance")
    attempts, page = FakeAttempts(1), FakePage([{}] * 100, 1000)
    rounds = 20_000
    started = time.perf_counter()
    for number in range(rounds):
        with tracing.page_span(source, number, run, attempts) as traced:
            tracing.response("orders", 200, "request-id")
            traced.fetched(page)
    per_page = (time.perf_counter() - started) / rounds
    # A page is a network round trip (milliseconds); its telemetry is a few microseconds.
    assert per_page < 50e-6, f"{per_page * 1e6:.1f} µs per page"
    assert telemetry.correlation() == {}


class _Ingestion(BaseHTTPRequestHandler):
    """Application Insights' ingestion endpoint, as far as the exporter sees it."""

    envelopes: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        text = body.decode("utf-8")
        items = (
            json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines()]
        )
        type(self).envelopes.extend(items)
        answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_with_a_connection_string_spans_and_metrics_reach_application_insights(
    app: App, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing but the local endpoint: no statsbeat, no remote configuration, storage in tmp_path.
    for name in (
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED",
        "APPLICATIONINSIGHTS_SDKSTATS_DISABLED",
    ):
        monkeypatch.setenv(name, "true")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _Ingestion.envelopes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingestion)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app.set_env(
            APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint=http://127.0.0.1:{server.server_port}/"
        )
        instance = app.ingest(pipelineRunId="telemetry-exported")
        assert instance.runtime_status == "Completed", instance.output
        assert otel_setup.enabled()
        otel_setup.reset_telemetry()  # flushes the batch of spans and the last metrics
    finally:
        server.shutdown()
        server.server_close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    kinds = Counter(envelope["name"].rsplit(".", 1)[-1] for envelope in _Ingestion.envelopes)
    assert kinds["Request"] == 1 + fetch_parts_scheduled(instance) + 1  # the activities
    assert kinds["RemoteDependency"] >= instance.output["pages"]  # pages and the STS call
    pages = [
        e["data"]["baseData"]
        for e in _Ingestion.envelopes
        if e["tags"].get("ai.operation.name") == "GET /dev/orders"
    ]
    assert len(pages) == instance.output["pages"]
    assert all(page["type"] == "HTTP" and page["resultCode"] == "200" for page in pages)
    assert {page["properties"]["aws.request_id"] for page in pages} == {
        r.request_id for r in app.stack.cloud.gateway.requests
    }
    operation = f"{run_trace_id('telemetry-exported'):032x}"
    fetch = [e for e in _Ingestion.envelopes if e["data"]["baseData"].get("name") == "fetch_part"]
    assert fetch and all(e["tags"]["ai.operation.id"] == operation for e in fetch)
    metric_names = {
        metric["name"]
        for envelope in _Ingestion.envelopes
        if envelope["name"].endswith("Metric")
        for metric in envelope["data"]["baseData"]["metrics"]
    }
    assert {"bridge.pages", "bridge.records", "bridge.landed_bytes", "bridge.sts_calls"} <= metric_names


# --- log lines ---------------------------------------------------------------------------------


def test_json_log_lines_carry_the_run_page_and_request_id_and_no_secret(
    app: App, caplog: pytest.LogCaptureFixture, otel: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    cloud = app.stack.cloud
    started = time.time()
    signatures: set[str] = set()

    def note(request: httpx.Request) -> None:
        signatures.update(SIGNATURE.findall(request.headers.get("Authorization", "")))

    runtime.current().http.event_hooks["request"].append(note)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        instance = app.ingest(pipelineRunId="telemetry-json")
    finally:
        logging.getLogger().removeHandler(handler)
    assert instance.runtime_status == "Completed", instance.output

    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["logger"].startswith("botocore") for line in lines), "DEBUG lines of dependencies too"
    pages = [
        line
        for line in lines
        if line["logger"] == "shared.gateway.client" and line["message"].startswith("page ")
    ]
    served = [r for r in cloud.gateway.requests if r.status == 200]
    assert len(pages) == len(served)
    assert {line["request_id"] for line in pages} == {r.request_id for r in served}
    for line in pages:
        assert line["pipeline_run_id"] == "telemetry-json"
        assert line["instance_id"] == instance.instance_id
        assert line["source"] == "orders"
        assert line["window"] == WINDOW
        assert line["activity"] == "fetch_part"
        assert line["message"].startswith(f"page {line['page']} of orders")
        assert line["request_id"] in line["message"]
        assert line["trace_id"] == f"{run_trace_id('telemetry-json'):032x}"

    credential = runtime.current().credentials.token_source
    secrets = {
        "Entra token": credential.get_token(f"{cloud.audience}/.default").token,
        **{f"signature {s[:8]}": s for s in signatures},
    }
    for issued in cloud.credentials.all():
        if issued.issued_at >= started:
            secrets |= {
                f"access key id {issued.access_key_id}": issued.access_key_id,
                "secret access key": issued.secret_access_key,
                "session token": issued.session_token,
            }
    assert len(secrets) > 4 and signatures
    assert [kind for kind, value in secrets.items() if value in text] == []


def test_json_formatter_renders_exceptions_redacted_and_escapes_nothing_it_should_not() -> None:
    telemetry.install_redaction()
    log = logging.getLogger("tests.telemetry")
    record: logging.LogRecord | None = None

    class Keep(logging.Handler):
        def emit(self, record_: logging.LogRecord) -> None:
            nonlocal record
            record = record_

    keep = Keep()
    log.addHandler(keep)
    try:
        with telemetry.correlated(pipeline_run_id="run-ü", page=7):
            try:
                raise ValueError("password=hunter2hunter2 went astray")
            except ValueError:
                log.error("failed with session_token=IQoJb3JpZ2luX2VjEXAMPLEEXAMPLEEXAMPLE", exc_info=True)
    finally:
        log.removeHandler(keep)
    assert record is not None
    line = JsonFormatter().format(record)
    document = json.loads(line)
    assert document["pipeline_run_id"] == "run-ü" and document["page"] == 7
    assert document["level"] == "ERROR" and document["logger"] == "tests.telemetry"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document["time"])
    assert "hunter2" not in line and "IQoJ" not in line
    assert "ValueError" in document["exception"]


def test_the_status_line_steps_aside_for_log_lines() -> None:
    stream = io.StringIO()
    handler = ConsoleHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "a log line", None, None)
    handler.show_status("12 records")
    handler.handle(record)
    handler.clear_status()
    handler.handle(record)
    erase = "\r\x1b[K"
    assert stream.getvalue() == (
        f"{erase}12 records" + f"{erase}a log line\n12 records" + erase + "a log line\n"
    )


# --- the command line --------------------------------------------------------------------------


def test_cli_json_logs_and_periodic_progress_with_verbose(app: App) -> None:
    app.set_env(LOG_FORMAT="json")
    result = app.cli(
        "-v", "ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1], "--run-id", "cli-json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    pages = [line for line in lines if line["message"].startswith("page ")]
    assert {line["request_id"] for line in pages} == {r.request_id for r in app.stack.cloud.gateway.requests}
    assert all(
        line["pipeline_run_id"] == "cli-json" and line["instance_id"] == summary["instanceId"]
        for line in pages
    )
    [final] = [
        line
        for line in lines
        if line["logger"] == "shared.observability.progress" and "finished" in line["message"]
    ]
    assert "3,600 records" in final["message"] and f"{summary['pages']} pages" in final["message"]


def test_cli_prints_nothing_on_stderr_when_quiet_and_not_a_terminal(app: App) -> None:
    result = app.cli("ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_cli_shows_a_status_line_on_a_terminal_and_erases_it(app: App) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "shared", "ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1]],
        cwd=REPO,
        env=app._process_env(),
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    seen = bytearray()
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    stdout, _ = process.communicate(timeout=120)
    os.close(controller)
    assert process.returncode == 0
    assert json.loads(stdout)["records"] == 3600
    shown = seen.decode()
    assert "records" in shown and "pages/s" in shown and "retries" in shown
    assert shown.endswith("\r\x1b[K"), repr(shown[-80:])


def test_progress_reports_only_what_happened_inside_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry, "_console", ConsoleHandler(io.StringIO()))  # not a terminal
    with tracing.page_span(FakeSource(), 1, RunContext("r", "i"), FakeAttempts(2)) as before:
        before.fetched(FakePage([{}] * 10, 10))  # before progress starts: not reported
    with (
        caplog.at_level(logging.INFO, logger="shared.observability.progress"),
        reporting(periodic_seconds=60),
        tracing.page_span(FakeSource(), 1, RunContext("r", "i"), FakeAttempts(2)) as traced,
    ):
        traced.fetched(FakePage([{}] * 10, 10))
    [line] = [r.getMessage() for r in caplog.records if r.name == "shared.observability.progress"]
    assert line.startswith("progress: 10 records, 1 pages (") and "1 retries (0 throttled)" in line
    assert describe(otel_setup.Totals(landed_bytes=3 * 1024 * 1024), 61.0).endswith("(3.0 MiB), 1:01")


def test_activity_fields_follow_the_activity_contracts() -> None:
    window = {"from": HOUR[0], "to": HOUR[1]}
    fetch = FetchPartInput(
        source="orders",
        window=window,
        prefix="p",
        segment=2,
        part_index=3,
        cursor=None,
        pages_before=0,
        pipeline_run_id="run",
        pipeline_name=None,
        instance_id="inst",
        role_arn=None,
        session_name=None,
    )
    state = IngestState(source="orders", window=window, pipeline_run_id="run")
    expected = {"pipeline_run_id": "run", "instance_id": "inst", "source": "orders", "window": WINDOW}
    assert tracing.activity_fields(fetch.model_dump()) == {**expected, "segment": 2, "part": 3}
    assert tracing.activity_fields(FinalizeInput(state=state, instance_id="inst").model_dump()) == {
        **expected,
        "segment": None,
        "part": None,
    }
    plan = PlanInput(source="orders", window=window, mode="replace", dry_run=False).model_dump()
    assert {k: v for k, v in tracing.activity_fields(plan).items() if v is not None} == {
        "source": "orders",
        "window": WINDOW,
    }
