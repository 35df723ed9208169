"""Logging set-up: redacted records, the correlation context of log lines, text and JSON formats.

Our own code never logs secrets; redaction (shared.observability.redaction) is the belt to
those braces, catching what a dependency puts in a message. botocore at DEBUG, for one, logs
the STS answer (access key, secret key, session token), the web identity token it sends, and
every canonical request and signature. `install_redaction` rewrites each record as it is
created, so no handler -- ours, the Functions host's, Application Insights' -- ever receives it.

Correlation: an activity binds the pipeline run id, instance id, source and window for as long
as it runs, the gateway client the page and then the API request id for as long as it fetches a
page (`bind`/`unbind`, a contextvar: nothing is threaded through arguments). Every record is
stamped with that context when it is created; with `LOG_FORMAT=json` each line is one JSON object
carrying it. Traces and metrics live in `shared.observability.tracing`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from opentelemetry import trace

from shared.observability.redaction import redact

# --- correlation context -----------------------------------------------------------------------

#: The fields bound while work runs, in the order JSON lines list them.
CORRELATION_FIELDS = (
    "pipeline_run_id",
    "instance_id",
    "activity",
    "source",
    "window",
    "segment",
    "part",
    "page",
    "request_id",
)
_EMPTY: Mapping[str, Any] = MappingProxyType({})
# Each value is a fresh dict that is never mutated afterwards: records keep a reference, not a copy.
_correlation: ContextVar[Mapping[str, Any]] = ContextVar("bridge_correlation", default=_EMPTY)


def correlation() -> Mapping[str, Any]:
    """The correlation fields bound in the current context (run id, instance id, page, ...)."""
    return _correlation.get()


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add fields (those given as None are skipped) to the context, until `unbind(token)`."""
    added = {name: value for name, value in fields.items() if value is not None}
    return _correlation.set({**_correlation.get(), **added})


def bind_known(fields: Mapping[str, Any]) -> Token[Mapping[str, Any]]:
    """`bind` for fields known not to be None (per page: no filtering)."""
    return _correlation.set({**_correlation.get(), **fields})


def unbind(token: Token[Mapping[str, Any]]) -> None:
    """Restore the context as it was before the `bind` that returned the token."""
    _correlation.reset(token)


@contextmanager
def correlated(**fields: Any) -> Iterator[None]:
    """`bind` for the duration of a block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


# --- the record factory ------------------------------------------------------------------------

_install_lock = threading.Lock()
_installed = False


def install_redaction() -> None:
    """Redact every log record this process creates from now on, whatever logs it or handles it.

    A record factory rather than a handler filter: filters only see records of the handlers
    they are attached to, and a host adds handlers of its own. The factory also stamps each
    record with the correlation context of the code that logs it (`record.bridge_correlation`), so a
    handler formatting it later, on another thread, still has it. Idempotent.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        create = logging.getLogRecordFactory()

        def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = create(*args, **kwargs)
            _redact_record(record)
            record.bridge_correlation = _correlation.get()
            return record

        logging.setLogRecordFactory(redacted_record)
        _installed = True


def _redact_record(record: logging.LogRecord) -> None:
    # Records are created only for enabled levels, so this costs nothing for DEBUG lines that
    # are switched off.
    message = record.getMessage()
    cleaned = redact(message)
    if cleaned != message or record.args:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        # Formatters use exc_text when it is set, so the raw traceback text is never rendered.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))


# --- formats and the console handler -----------------------------------------------------------

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then the correlation fields known.

    `trace_id`/`span_id` join a line to its span in Application Insights when tracing is on.
    String fields other than the (already redacted) message are redacted here: a run id is
    whatever the caller sent.
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = record.__dict__.get("bridge_correlation")
        if context is None:  # a record from before install_redaction, or made by hand
            context = _correlation.get()
        for name in CORRELATION_FIELDS:
            value = context.get(name)
            if value is not None:
                document[name] = redact(value) if isinstance(value, str) else value
        span_ids = _span_ids()
        if span_ids is not None:
            document["trace_id"], document["span_id"] = span_ids
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = redact(record.exc_text)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def _span_ids() -> tuple[str, str] | None:
    """The current span's ids as W3C hex, when a recording span is current."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


class ConsoleHandler(logging.StreamHandler[TextIO]):
    """Log lines on stderr that share a terminal with a live status line (`shared.observability.progress`).

    The status line is erased before each log line and drawn again under it, so the two never
    garble each other.
    """

    _ERASE = "\r\x1b[K"

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._status = ""

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle holds self.lock around emit.
        if self._status:
            self.stream.write(self._ERASE)
        super().emit(record)
        if self._status:
            self.stream.write(self._status)
            self.flush()

    def show_status(self, text: str) -> None:
        """Replace the status line (no newline: the cursor stays on it)."""
        self.acquire()
        try:
            self._status = text
            self.stream.write(self._ERASE + text)
            self.flush()
        finally:
            self.release()

    def clear_status(self) -> None:
        """Erase the status line, leaving the cursor at the start of an empty line."""
        self.acquire()
        try:
            if self._status:
                self._status = ""
                self.stream.write(self._ERASE)
                self.flush()
        finally:
            self.release()


_console: ConsoleHandler | None = None


def console() -> ConsoleHandler | None:
    """The stderr handler `configure_logging` installed, if it did."""
    return _console


def log_format_from_env(env: Mapping[str, str] | None = None) -> str:
    """LOG_FORMAT as `configure_logging` reads it: json, else text.

    Lenient on purpose: logging is set up before the settings are validated, so that even a
    run refused for its settings reports in the chosen format; `Settings` rejects a bad value.
    """
    value = (os.environ if env is None else env).get("LOG_FORMAT", "")
    return "json" if value.strip().lower() == "json" else "text"


def configure_logging(verbose: bool = False, log_format: str | None = None) -> None:
    """Log lines on stderr (stdout is reserved for results), redacted; quiet unless verbose.

    `log_format` is text or json; by default the LOG_FORMAT setting.
    """
    global _console
    install_redaction()
    handler = ConsoleHandler(sys.stderr)
    if (log_format or log_format_from_env()) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.ERROR)
    _console = handler
    # The Azure SDKs log every HTTP exchange at INFO, headers included.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
