"""Progress of a command-line run on stderr, read from the telemetry hooks' process totals.

On a terminal: one status line redrawn in place (log lines print above it) and erased when the
run ends. Not on a terminal: with -v, a plain log line every `PERIODIC_SECONDS` and one at the
end, in the LOG_FORMAT of every other line; without -v, nothing, so a failure stays one line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.observability import logs, otel

log = logging.getLogger(__name__)

LIVE_SECONDS = 0.5
PERIODIC_SECONDS = 10.0


@contextmanager
def reporting(
    *, live_seconds: float = LIVE_SECONDS, periodic_seconds: float = PERIODIC_SECONDS
) -> Iterator[None]:
    """Report progress while the block runs, as the console allows (see the module docstring)."""
    handler = logs.console()
    live = handler is not None and _isatty(handler.stream)
    if handler is None or not (live or log.isEnabledFor(logging.INFO)):
        yield
        return
    start, started = otel.totals(), time.monotonic()

    def line() -> str:
        return describe(otel.totals() - start, time.monotonic() - started)

    show: Callable[[str], None]
    if live:
        show, interval = handler.show_status, live_seconds
        show(line())
    else:
        show, interval = (lambda text: log.info("progress: %s", text)), periodic_seconds
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            show(line())

    thread = threading.Thread(target=loop, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if live:
            handler.clear_status()
        else:
            log.info("progress: %s, finished", line())


def describe(done: otel.Totals, elapsed: float) -> str:
    """One line: records, pages and their rate, retries, what landed, time taken."""
    rate = done.pages / elapsed if elapsed > 0 else 0.0
    minutes, seconds = divmod(int(elapsed), 60)
    return (
        f"{done.records:,} records, {done.pages:,} pages ({rate:.1f} pages/s), "
        f"{done.retries:,} retries ({done.throttled:,} throttled), "
        f"{done.parts:,} parts landed ({_size(done.landed_bytes)}), {minutes}:{seconds:02d}"
    )


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # not reached


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
