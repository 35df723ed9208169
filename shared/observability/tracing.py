"""OpenTelemetry traces and metrics of a run: the spans and counters the app's code records.

Spans: one per activity (`plan_window`, `fetch_part`, `finalize`), one per page fetched from API
Gateway (retries included: `bridge.attempts`, the final `http.response.status_code` and
`aws.request_id`), one per STS `AssumeRoleWithWebIdentity`. Root spans of a run take the trace id
its API requests carry in `traceparent` (shared.observability.otel.trace_id_for), so one run's
activities, on whichever worker, share one operation in Application Insights. Counters: pages,
records, retries, 429s, parts and bytes landed, STS calls.

With telemetry off (shared.observability.otel) every hook returns after a None check: the
per-page cost is a few attribute reads and a contextvar set (the correlation of log lines).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from shared.observability import logs, otel
from shared.observability.redaction import redact

if TYPE_CHECKING:  # the SDK's providers and exporters are imported when telemetry is configured
    pass

log = logging.getLogger(__name__)


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
        tracer = otel._state.tracer
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
        with otel._tally.lock:
            otel._tally.pages += 1
            otel._tally.records += records
        instruments = otel._state.instruments
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
            with otel._tally.lock:
                otel._tally.retries += attempts - 1
            if otel._state.instruments is not None:
                otel._state.instruments.retries.add(attempts - 1, _by_source(self._source))
        if self._span is not None and self._span.is_recording():
            self._span.set_attribute(ATTEMPTS, attempts)
        self._close(exc)


def response(source: str, status: int, request_id: str | None) -> None:
    """An attempt got an answer (inside `page_span` only): note its status and API request id."""
    if status == 429:
        with otel._tally.lock:
            otel._tally.throttled += 1
        if otel._state.instruments is not None:
            otel._state.instruments.throttled.add(1, _by_source(source))
    if request_id is not None:
        # No unbind: the enclosing page_span's unbind restores the context from before the page.
        logs.bind_known({"request_id": request_id})
    if otel._state.tracer is not None:
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
        with otel._tally.lock:
            otel._tally.sts_calls += 1
        if otel._state.instruments is not None:
            outcome = "ok" if exc is None else str(getattr(exc, "code", None) or type(exc).__name__)
            otel._state.instruments.sts_calls.add(1, {"cloud.region": self._region, "outcome": outcome})
        self._close(exc)


class _Part(Protocol):
    @property
    def records(self) -> int: ...

    @property
    def bytes(self) -> int: ...


def part_landed(source: str, part: _Part | None) -> None:
    """A part was committed (`PartInfo`); None when the part had no records."""
    if part is None:
        return
    records, size = part.records, part.bytes
    with otel._tally.lock:
        otel._tally.parts += 1
        otel._tally.landed_records += records
        otel._tally.landed_bytes += size
    instruments = otel._state.instruments
    if instruments is not None:
        instruments.parts.add(1, _by_source(source))
        instruments.landed_bytes.add(size, _by_source(source))
    if otel._state.tracer is not None:
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
