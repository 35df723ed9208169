"""Availability results in Application Insights: pass/fail, duration and failing step of a probe.

OpenTelemetry has no availability signal. The Azure Monitor exporter turns a log record that
carries the `microsoft.availability.*` attributes (id, name, duration, success; runLocation and
message optional) into an AvailabilityData envelope, the `availabilityResults` table: see
`_get_availability_data` and the `elif availability_data:` branch of `_convert_log_to_envelope`
in azure/monitor/opentelemetry/exporter/export/logs/_exporter.py and the attribute names in its
_constants.py (azure-monitor-opentelemetry-exporter 1.0.0b58, our pin); the JavaScript exporter's
README documents the same attributes as its supported way. tests/shared/observability/
test_availability.py runs our records through that conversion, so an exporter that changes it
fails there, not silently in production.

Like shared.observability.otel, the LoggerProvider is this module's own (never OpenTelemetry's
global one, nor the `logging` bridge, whose records the Functions host ships as traces), created
only when APPLICATIONINSIGHTS_CONNECTION_STRING is set; `configure_availability(log_exporter=...)`
is the test hook.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared import __version__
from shared.observability.otel import SERVICE_NAME
from shared.observability.redaction import redact

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExporter

log = logging.getLogger(__name__)

# The exporter's attribute names (azure/monitor/opentelemetry/exporter/_constants.py).
ID = "microsoft.availability.id"
NAME = "microsoft.availability.name"
DURATION = "microsoft.availability.duration"
SUCCESS = "microsoft.availability.success"
RUN_LOCATION = "microsoft.availability.runLocation"
MESSAGE = "microsoft.availability.message"
#: Application Insights keeps at most 8,192 characters of an availability message.
MAX_MESSAGE = 8192


@dataclass(frozen=True)
class AvailabilityResult:
    """One availability test run: what the `availabilityResults` row says."""

    name: str
    success: bool
    duration_ms: float
    message: str
    run_location: str
    #: Custom dimensions (customDimensions in KQL); values are strings.
    properties: dict[str, str] = field(default_factory=dict)


class _State:
    configured = False
    provider: LoggerProvider | None = None


_state = _State()
_lock = threading.RLock()


def configure_availability(
    connection_string: str | None = None, *, log_exporter: LogRecordExporter | None = None
) -> bool:
    """Replace the set-up; returns whether results are recorded.

    With a connection string, records go to Application Insights in batches (`flush` sends
    them); `log_exporter` (exported synchronously) is the test hook. Neither: nothing recorded.
    """
    with _lock:
        _shutdown()
        _state.configured = True
        if not connection_string and log_exporter is None:
            return False
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
        from opentelemetry.sdk.resources import Resource

        provider = LoggerProvider(
            resource=Resource.create({"service.name": SERVICE_NAME, "service.version": __version__})
        )
        if log_exporter is not None:
            provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
        if connection_string:
            from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter

            try:
                exporter = AzureMonitorLogExporter(connection_string=connection_string)
            except ValueError as exc:  # the exporter's own check of the connection string
                log.error("APPLICATIONINSIGHTS_CONNECTION_STRING refused (%s): no availability results", exc)
                provider.shutdown()
                return False
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        _state.provider = provider
        return True


def ensure_configured(connection_string: str | None) -> bool:
    """Configure from the settings once per process."""
    with _lock:
        if _state.configured:
            return _state.provider is not None
        return configure_availability(connection_string)


def reset_availability() -> None:
    """Flush and drop the provider; the next `ensure_configured` configures afresh (tests)."""
    with _lock:
        _shutdown()
        _state.configured = False


def record(result: AvailabilityResult) -> None:
    """Emit one availability result (a no-op when nothing is configured)."""
    provider = _state.provider
    if provider is None:
        return
    message = redact(result.message)[:MAX_MESSAGE]
    provider.get_logger(__name__, __version__).emit(
        body=message,
        attributes={
            **result.properties,
            ID: uuid.uuid4().hex,
            NAME: result.name,
            DURATION: duration(result.duration_ms),
            # A string: the exporter compares str(value).lower() == "true".
            SUCCESS: "true" if result.success else "false",
            RUN_LOCATION: result.run_location,
            MESSAGE: message,
        },
    )


def flush(timeout_ms: int = 10_000) -> None:
    """Send what is batched; a timer invocation ends soon after, and the worker may be recycled."""
    provider = _state.provider
    if provider is not None:
        provider.force_flush(timeout_ms)


def duration(milliseconds: float) -> str:
    """A .NET TimeSpan, d.hh:mm:ss.fff, as Application Insights reads durations."""
    total = round(milliseconds)
    seconds, ms = divmod(total, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}.{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}"


def _shutdown() -> None:
    if _state.provider is not None:
        _state.provider.shutdown()
    _state.provider = None
