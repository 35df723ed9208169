"""The long-running local commands (`serve`, `up`): their shutdown, and running them as children.

`ShutdownSignals`: SIGINT and SIGTERM only set an event, so the command's main thread shuts
down what it started, in order, and exits 0; a second signal tells it to stop waiting for
work still in flight. `LocalProcess`: `python -m localcloud <command>` as a child process of
the demo or a test, waited for by its output and stopped by a signal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from localcloud.server import Service

__all__ = ["LocalProcess", "ShutdownSignals"]

_REPO_ROOT = Path(__file__).resolve().parent.parent

_HANDLED = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignals:
    """While entered, SIGINT and SIGTERM set :attr:`requested` (and, the second time, :attr:`forced`)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.forced = threading.Event()
        self.received: list[str] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        # signal.signal, not loop.add_signal_handler: this must work before and after any event loop.
        self._previous = {sig: signal.signal(sig, self._handle) for sig in _HANDLED}
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)
        if self.requested.is_set():
            self.forced.set()
        self.requested.set()

    def wait(self) -> str:
        """Block until a signal arrives; returns its name (SIGINT, SIGTERM)."""
        # Event.wait() without a timeout cannot be interrupted on every platform; a timeout
        # lets the handler run promptly (the loop is the wait, not a sleep standing in for one).
        while not self.requested.wait(0.5):
            pass
        return self.received[0]


class LocalProcess(Service):
    """`python -m localcloud <command> ...` as a child process, ready once it prints a line matching `ready`.

    Its stdout and stderr are collected line by line on a thread, so every wait for a line is
    bounded by a timeout rather than by a blocking read.
    """

    def __init__(
        self,
        command: str,
        *args: str,
        ready: re.Pattern[str],
        env: Mapping[str, str] | None = None,
        cwd: Path = _REPO_ROOT,
    ) -> None:
        self.args = ["-m", "localcloud", command, *args]
        self.ready = ready
        self.ready_match: re.Match[str] | None = None
        self._env = dict(os.environ if env is None else env)
        self._cwd = cwd
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 120.0) -> Self:
        self._process = subprocess.Popen(
            [sys.executable, *self.args],
            cwd=self._cwd,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="localcloud-output", daemon=True)
        self._reader.start()
        line = self.wait_for(lambda line: self.ready.match(line) is not None, timeout)
        self.ready_match = self.ready.match(line)
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> str:
        """The first output line satisfying `predicate`; raises if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self._lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self._lines)
                ended = self._reader is None or not self._reader.is_alive()
                left = deadline - time.monotonic()
                if ended or left <= 0:
                    why = "exited" if ended else f"printed no such line within {timeout:g}s"
                    raise RuntimeError(f"`python {' '.join(self.args)}` {why}; its output:\n{self.output}")
                self._changed.wait(left)

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self._lines)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the process to exit; returns its exit code."""
        process = self._process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(sig)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            name = signal.Signals(sig).name
            raise RuntimeError(
                f"`python {' '.join(self.args)}` did not stop within {timeout:g}s of {name}"
            ) from None
        if self._reader is not None:
            self._reader.join(timeout)
        return code
