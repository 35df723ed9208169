"""OpenTelemetry set-up: providers and exporters (Application Insights when configured), and process totals.

Telemetry is exported only when APPLICATIONINSIGHTS_CONNECTION_STRING is set. Otherwise no
provider or exporter exists and every hook in shared.observability.tracing returns after a None
check. The providers are this module's own, never OpenTelemetry's global ones: a host that
configures its own (the Functions worker can) is not fought, and tests can swap them in and out.

Besides, the hooks keep process-wide `totals()` in plain integers, always: the command line's
progress display reads them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.metrics import Counter

from shared import __version__
from shared.observability import logs

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
