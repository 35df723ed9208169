"""OpenTelemetry traces and metrics, exported to Application Insights when it is configured.

Spans: one per activity (`plan_window`, `fetch_part`, `finalize`), one per page fetched from API
Gateway (retries included: `bridge.attempts`, the final `http.response.status_code` and
`aws.request_id`), one per STS `AssumeRoleWithWebIdentity`. Root spans of a run take the trace id
its API requests carry in `traceparent` (the first 32 hex digits of sha256(run id)), so one
run's activities, on whichever worker, share one operation in Application Insights. Counters:
pages, records, retries, 429s, parts and bytes landed, STS calls.

Telemetry is exported only when APPLICATIONINSIGHTS_CONNECTION_STRING is set. Otherwise no
provider or exporter exists and every hook below returns after a None check: the per-page cost
is a few attribute reads and a contextvar set (the correlation of log lines, `shared.observability.logs`).
The providers are this module's own, never OpenTelemetry's global ones: a host that configures
its own (the Functions worker can) is not fought, and tests can swap them in and out.

Besides, the hooks keep process-wide `totals()` in plain integers, always: the command line's
progress display reads them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import Counter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from shared import __version__
from shared.observability import logs
from shared.observability.logs import redact

if TYPE_CHECKING:  # the SDK's providers and exporters are imported when telemetry is configured
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    from opentelemetry.sdk.trace.id_generator import IdGenerator

log = logging.getLogger(__name__)

SERVICE_NAME = "apigw-adf-bridge"
#: How often metrics are sent to Application Insights.
METRIC_EXPORT_INTERVAL_MS = 60_000

# Span attribute names: ours under bridge.*, the rest from OpenTelemetry's semantic conventions.
SOURCE = "bridge.source"
PAGE = "bridge.page"
ATTEMPTS = "bridge.attempts"
RECORDS = "bridge.records"
RUN_ID = "bridge.pipeline_run_id"
INSTANCE_ID = "bridge.instance_id"
REQUEST_ID = "aws.request_id"
HTTP_STATUS = "http.response.status_code"
# Correlation field (shared.observability.logs) -> span attribute.
_ATTRIBUTES = {name: f"bridge.{name}" for name in logs.CORRELATION_FIELDS} | {"request_id": REQUEST_ID}

PAGE_SPAN = "gateway.page"
STS_SPAN = "sts.AssumeRoleWithWebIdentity"


def trace_id_for(run_id: str) -> int:
    """The trace id of a pipeline run: the gateway client sends it in `traceparent` too."""
    return int(hashlib.sha256(run_id.encode()).hexdigest()[:32], 16)


# --- in-process totals -------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    """Counts since the process started (subtract two snapshots for a span of time)."""

    pages: int = 0
    records: int = 0
    retries: int = 0
    throttled: int = 0
    parts: int = 0
    landed_records: int = 0
    landed_bytes: int = 0
    sts_calls: int = 0

    def __sub__(self, other: Totals) -> Totals:
        return Totals(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})


class _Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pages = self.records = self.retries = self.throttled = 0
        self.parts = self.landed_records = self.landed_bytes = self.sts_calls = 0

    def snapshot(self) -> Totals:
        with self.lock:
            return Totals(**{f.name: getattr(self, f.name) for f in fields(Totals)})


_tally = _Tally()


def totals() -> Totals:
    """What this process has fetched, retried and landed so far."""
    return _tally.snapshot()


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Instruments:
    pages: Counter
    records: Counter
    retries: Counter
    throttled: Counter
    parts: Counter
    landed_bytes: Counter
    sts_calls: Counter


class _State:
    configured = False
    tracer: trace.Tracer | None = None
    instruments: _Instruments | None = None
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None


_state = _State()
_lock = threading.RLock()


def _run_trace_ids() -> IdGenerator:
    """Ids whose root spans, started while a pipeline run is bound, take the run's trace id."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RunTraceIds(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            run_id = logs.correlation().get("pipeline_run_id")
            if isinstance(run_id, str) and run_id:
                return trace_id_for(run_id) or super().generate_trace_id()
            return super().generate_trace_id()

    return RunTraceIds()


def configure_telemetry(
    connection_string: str | None = None,
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> bool:
    """Replace the telemetry set-up; returns whether anything is recorded.

    With a connection string, spans go to Application Insights in batches and metrics every
    minute. `span_exporter` (exported synchronously, span by span) and `metric_reader` are the
    test hook: an in-memory exporter and reader. With none of the three, telemetry is off: no
    provider, no exporter, nothing sent.
    """
    with _lock:
        _shutdown()
        _state.configured = True
        if not connection_string and span_exporter is None and metric_reader is None:
            return False
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        resource = Resource.create({"service.name": SERVICE_NAME, "service.version": __version__})
        # The sampler follows OTEL_TRACES_SAMPLER; a ratio sampler keeps or drops whole runs,
        # since a run's spans share its trace id.
        provider = TracerProvider(resource=resource, id_generator=_run_trace_ids())
        readers: list[MetricReader] = [] if metric_reader is None else [metric_reader]
        if span_exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        if connection_string:
            try:
                processor, reader = _application_insights(connection_string, provider)
            except ValueError as exc:  # the exporter's own check of the connection string
                # Telemetry must not stop ingestion: say so, and go on without it.
                log.error("APPLICATIONINSIGHTS_CONNECTION_STRING refused (%s): nothing is exported", exc)
                provider.shutdown()
                return False
            provider.add_span_processor(processor)
            readers.append(reader)
        if connection_string or span_exporter is not None:
            _state.tracer_provider = provider
            _state.tracer = provider.get_tracer(__name__, __version__)
        else:
            provider.shutdown()
        if readers:
            meters = MeterProvider(metric_readers=readers, resource=resource)
            _state.meter_provider = meters
            _state.instruments = _instruments(meters)
        return True


def _application_insights(
    connection_string: str, provider: TracerProvider
) -> tuple[BatchSpanProcessor, PeriodicExportingMetricReader]:
    # Imported only when used: the exporter brings msrest, psutil and friends.
    from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter, AzureMonitorTraceExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # tracer_provider: the exporter reads the resource from it (else from the global provider).
    spans = AzureMonitorTraceExporter(connection_string=connection_string, tracer_provider=provider)
    metrics = AzureMonitorMetricExporter(connection_string=connection_string)
    return (
        BatchSpanProcessor(spans),
        PeriodicExportingMetricReader(metrics, export_interval_millis=METRIC_EXPORT_INTERVAL_MS),
    )


def ensure_configured(connection_string: str | None) -> bool:
    """Configure from the settings once per process (every runtime build calls this)."""
    with _lock:
        if _state.configured:
            return enabled()
        return configure_telemetry(connection_string)


def reset_telemetry() -> None:
    """Flush and drop the providers; the next `ensure_configured` configures afresh (tests)."""
    with _lock:
        _shutdown()
        _state.configured = False


def enabled() -> bool:
    """Whether spans or metrics are being recorded."""
    return _state.tracer is not None or _state.instruments is not None


def _shutdown() -> None:
    if _state.tracer_provider is not None:
        _state.tracer_provider.shutdown()
    if _state.meter_provider is not None:
        _state.meter_provider.shutdown()
    _state.tracer = _state.instruments = None
    _state.tracer_provider = _state.meter_provider = None


def _instruments(provider: MeterProvider) -> _Instruments:
    meter = provider.get_meter(__name__, __version__)
    return _Instruments(
        pages=meter.create_counter("bridge.pages", "{page}", "Pages fetched from API Gateway"),
        records=meter.create_counter("bridge.records", "{record}", "Records fetched from API Gateway"),
        retries=meter.create_counter(
            "bridge.retries", "{request}", "Page requests sent again after a transient failure"
        ),
        throttled=meter.create_counter("bridge.throttled", "{response}", "HTTP 429 answers from API Gateway"),
        parts=meter.create_counter("bridge.parts", "{part}", "Parts committed to Blob Storage"),
        landed_bytes=meter.create_counter(
            "bridge.landed_bytes", "By", "Bytes (gzip) of parts committed to Blob Storage"
        ),
        sts_calls=meter.create_counter(
            "bridge.sts_calls", "{call}", "AssumeRoleWithWebIdentity operations (botocore retries within)"
        ),
    )


_source_attributes: dict[str, dict[str, str]] = {}


def _by_source(source: str) -> dict[str, str]:
    attributes = _source_attributes.get(source)
    if attributes is None:
        attributes = _source_attributes.setdefault(source, {SOURCE: source})
    return attributes


# --- spans -------------------------------------------------------------------------------------

_NOTHING: Mapping[str, Any] = MappingProxyType({})


class _Scope:
    """Binds correlation fields and, when tracing, a current span; undone on exit."""

    __slots__ = ("_otel_token", "_span", "_token")

    def _open(self, name: str, kind: SpanKind, bound: Mapping[str, Any]) -> Span | None:
        """Bind the fields and start the span; returns the span if it records (attributes wanted)."""
        self._token = logs.bind_known(bound)
        self._span: Span | None = None
        tracer = _state.tracer
        if tracer is None:
            return None
        span = self._span = tracer.start_span(name, kind=kind)
        self._otel_token = otel_context.attach(trace.set_span_in_context(span))
        return span if span.is_recording() else None

    def _close(self, exc: BaseException | None) -> None:
        span = self._span
        if span is not None:
            if exc is not None and span.is_recording():
                _record_error(span, exc)
            otel_context.detach(self._otel_token)
            span.end()
        logs.unbind(self._token)


class activity_span(_Scope):
    """`with activity_span(name, payload):` around an activity: its correlation fields and span."""

    __slots__ = ("_name", "_payload")

    def __init__(self, name: str, payload: Any) -> None:
        self._name = name
        self._payload = payload

    def __enter__(self) -> activity_span:
        fields = activity_fields(self._payload)
        bound = {"activity": self._name, **{k: v for k, v in fields.items() if v is not None}}
        # CONSUMER: the Durable extension hands activities over through its work-item queue.
        span = self._open(self._name, SpanKind.CONSUMER, bound)
        if span is not None:
            span.set_attributes({_ATTRIBUTES[key]: value for key, value in bound.items()})
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close(exc)


def activity_fields(payload: Any) -> dict[str, Any]:
    """The correlation fields in an activity's input (`shared.ingest.payloads`).

    FetchPartInput and PlanInput have them all; FinalizeInput has them in `state` (IngestState)
    and `instance_id`.
    """
    if not isinstance(payload, Mapping):
        return {}
    state = payload.get("state")
    body: Mapping[str, Any] = state if isinstance(state, Mapping) else payload
    window = body.get("window")
    return {
        "pipeline_run_id": body.get("pipeline_run_id"),
        "instance_id": payload.get("instance_id"),
        "source": body.get("source"),
        "window": f"{window.get('from')}/{window.get('to')}" if isinstance(window, Mapping) else None,
        "segment": payload.get("segment"),
        "part": payload.get("part_index"),
    }


class _Source(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def endpoint(self) -> str: ...


class _Run(Protocol):
    @property
    def pipeline_run_id(self) -> str: ...

    @property
    def instance_id(self) -> str: ...


class _Attempts(Protocol):
    count: int


class _Page(Protocol):
    records: list[Any]
    size: int


class page_span(_Scope):
    """`with page_span(source, number, run, attempts) as traced:` around fetching one page.

    An HTTP client span (method, the resource's URL without its query, final status): Application
    Insights lists it as an HTTP dependency.

    `traced.fetched(page)` counts it; `response()` notes each attempt's status and request id;
    on exit the retries (`attempts.count` - 1) are counted and the span ended.
    """

    __slots__ = ("_attempts", "_number", "_resource", "_run", "_source")

    def __init__(self, source: _Source, number: int, run: _Run, attempts: _Attempts) -> None:
        self._source = source.name
        self._resource = source
        self._number = number
        self._run = run
        self._attempts = attempts

    def __enter__(self) -> page_span:
        run, source, number = self._run, self._source, self._number
        bound: dict[str, Any] = {
            "pipeline_run_id": run.pipeline_run_id,
            "instance_id": run.instance_id,
            "source": source,
            "page": number,
        }
        span = self._open(PAGE_SPAN, SpanKind.CLIENT, bound)
        if span is not None:
            resource = self._resource
            span.set_attributes(
                {
                    SOURCE: source,
                    PAGE: number,
                    RUN_ID: run.pipeline_run_id,
                    INSTANCE_ID: run.instance_id,
                    "http.request.method": resource.method,
                    "url.full": resource.endpoint,
                }
            )
        return self

    def fetched(self, page: _Page) -> None:
        """The page came back and parsed."""
        records = len(page.records)
        with _tally.lock:
            _tally.pages += 1
            _tally.records += records
        instruments = _state.instruments
        if instruments is not None:
            by_source = _by_source(self._source)
            instruments.pages.add(1, by_source)
            instruments.records.add(records, by_source)
        span = self._span
        if span is not None and span.is_recording():
            span.set_attributes({RECORDS: records, "http.response.body.size": page.size})

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        attempts = self._attempts.count
        if attempts > 1:
            with _tally.lock:
                _tally.retries += attempts - 1
            if _state.instruments is not None:
                _state.instruments.retries.add(attempts - 1, _by_source(self._source))
        if self._span is not None and self._span.is_recording():
            self._span.set_attribute(ATTEMPTS, attempts)
        self._close(exc)


def response(source: str, status: int, request_id: str | None) -> None:
    """An attempt got an answer (inside `page_span` only): note its status and API request id."""
    if status == 429:
        with _tally.lock:
            _tally.throttled += 1
        if _state.instruments is not None:
            _state.instruments.throttled.add(1, _by_source(source))
    if request_id is not None:
        # No unbind: the enclosing page_span's unbind restores the context from before the page.
        logs.bind_known({"request_id": request_id})
    if _state.tracer is not None:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(HTTP_STATUS, status)
            if request_id is not None:
                span.set_attribute(REQUEST_ID, request_id)


class sts_call(_Scope):
    """`with sts_call(role_arn, region, session_name) as call:` around AssumeRoleWithWebIdentity."""

    __slots__ = ("_region", "_role_arn", "_session_name")

    def __init__(self, role_arn: str, region: str, session_name: str) -> None:
        self._role_arn = role_arn
        self._region = region
        self._session_name = session_name

    def __enter__(self) -> sts_call:
        span = self._open(STS_SPAN, SpanKind.CLIENT, _NOTHING)
        if span is not None:
            span.set_attributes(
                {
                    "rpc.system": "aws-api",
                    "rpc.service": "STS",
                    "rpc.method": "AssumeRoleWithWebIdentity",
                    "cloud.region": self._region,
                    "bridge.role_arn": self._role_arn,
                    "bridge.session_name": self._session_name,
                }
            )
        return self

    def answered(self, answer: Mapping[str, Any]) -> None:
        """STS's answer (its credentials are not looked at)."""
        span = self._span
        if span is not None and span.is_recording():
            metadata = answer.get("ResponseMetadata") or {}
            span.set_attributes(
                {
                    REQUEST_ID: str(metadata.get("RequestId") or ""),
                    HTTP_STATUS: int(metadata.get("HTTPStatusCode") or 0),
                    ATTEMPTS: int(metadata.get("RetryAttempts") or 0) + 1,
                }
            )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with _tally.lock:
            _tally.sts_calls += 1
        if _state.instruments is not None:
            outcome = "ok" if exc is None else str(getattr(exc, "code", None) or type(exc).__name__)
            _state.instruments.sts_calls.add(1, {"cloud.region": self._region, "outcome": outcome})
        self._close(exc)


def part_landed(source: str, part: Mapping[str, Any] | None) -> None:
    """A part was committed (`PartInfo.to_json()`); None when the part had no records."""
    if part is None:
        return
    records, size = int(part["records"]), int(part["bytes"])
    with _tally.lock:
        _tally.parts += 1
        _tally.landed_records += records
        _tally.landed_bytes += size
    instruments = _state.instruments
    if instruments is not None:
        instruments.parts.add(1, _by_source(source))
        instruments.landed_bytes.add(size, _by_source(source))
    if _state.tracer is not None:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({"bridge.part.records": records, "bridge.part.bytes": size})


def _record_error(span: Span, exc: BaseException) -> None:
    """Error status and an exception event, redacted like every log line."""
    message = redact(" ".join(str(exc).split()))[:1000]
    span.set_status(Status(StatusCode.ERROR, message))
    attributes: dict[str, Any] = {"error.type": type(exc).__name__}
    status, request_id, code = (getattr(exc, name, None) for name in ("status", "request_id", "code"))
    if isinstance(status, int):
        attributes[HTTP_STATUS] = status
    if isinstance(request_id, str):
        attributes[REQUEST_ID] = request_id
    if isinstance(code, str):
        attributes["bridge.error_code"] = code
    span.set_attributes(attributes)
    stack = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    span.record_exception(
        exc, attributes={"exception.message": message, "exception.stacktrace": stack}, escaped=True
    )
