"""Shared set-up for the benchmarks: the local stack, a bench dataset, and client processes.

Not run on its own; imported by bench/throughput.py, bench/profile_ours.py,
bench/ratelimit.py and bench/memory.py (run those with the app's .venv/bin/python).

Every client runs as its own process: the emulator serves from threads of the bench process,
and a client sharing its GIL would measure the contention rather than the client.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO))

# Re-exported for the bench scripts, which cannot import localcloud before this module has
# put the repo on sys.path (a script's sys.path[0] is bench/).
from localcloud import Dataset, LocalCloud, RequestRecord  # noqa: E402
from localcloud.stack import FOREIGN_CREDENTIAL_VARS, Stack, orders_source  # noqa: E402

__all__ = [
    "BENCH",
    "BENCH_PATH",
    "FOREIGN_CREDENTIAL_VARS",
    "REPO",
    "Dataset",
    "Finished",
    "LocalCloud",
    "Proc",
    "RequestRecord",
    "Run",
    "Stack",
    "Workload",
    "bench_python",
    "client_env",
    "local_stack",
    "orders_source",
    "publish",
    "run_ingest",
    "run_process",
    "spawn",
    "table",
]

# The dlt peer's own virtualenv: never the app's .venv, whose pins are what Azure deploys.
BENCH_VENV = REPO / ".venv-bench"
BENCH_REQUIREMENTS = REPO / "requirements-bench.txt"
BENCH_PATH = "/bench"  # catalog path under the stage; the gateway route is /dev/bench
ISO = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class Run:
    seconds: float
    summary: dict[str, Any]
    peak_rss_mb: float
    in_process_seconds: float | None = None
    cpu_seconds: float | None = None


@dataclass
class Proc:
    """A finished client process: wall time, peak RSS, the JSON it printed last (or why not)."""

    seconds: float
    peak_rss_mb: float
    result: dict[str, Any] | None
    error: str | None
    cpu_seconds: float | None = None


@dataclass(frozen=True)
class Workload:
    """`pages` x `page_size` records: a one-hour window of a dataset holding exactly that many."""

    pages: int
    page_size: int
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)

    @property
    def records(self) -> int:
        return self.pages * self.page_size

    @property
    def window(self) -> tuple[str, str]:
        return self.start.strftime(ISO), (self.start + timedelta(hours=1)).strftime(ISO)


@contextmanager
def local_stack() -> Iterator[Stack]:
    """Identity, STS, the gateway emulator (in this process) and Azurite (node), started and stopped."""
    with Stack() as stack:
        yield stack


def publish(stack: Stack, workload: Workload) -> str:
    """Serve a dataset at /dev/bench whose window holds exactly workload.records; returns the route."""
    route = f"/dev{BENCH_PATH}"
    dataset = Dataset(
        name="bench",
        records_per_hour=workload.records,
        epoch_start=workload.start,
        max_limit=max(1000, workload.page_size),
    )
    stack.cloud.gateway.add_dataset(route, dataset)
    assert stack.cloud.gateway.expected_count(route, *workload.window) == workload.records
    return route


def client_env(stack: Stack, catalog: Path | None = None, container: str = "bench") -> dict[str, str]:
    """This process's environment less foreign credentials, plus the stack's app settings."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_CREDENTIAL_VARS}
    catalog = catalog or stack.workdir / "catalog-unused.toml"
    env.update(stack.app_env(catalog, container=container, state_dir=stack.workdir / f"state-{container}"))
    return env


def run_process(
    command: Sequence[str], env: Mapping[str, str], cwd: Path = REPO, timeout: float = 900
) -> Proc:
    """Run a client to completion; its last stdout line must be a JSON object."""
    finished = spawn(command, env, cwd, timeout)
    lines = finished.out.strip().splitlines()
    result: dict[str, Any] | None = None
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = None
    error = None
    if finished.returncode != 0 or result is None or "error" in result:
        reason = (result or {}).get("error") or _last_line(finished.err) or "no output"
        error = f"exit {finished.returncode}: {reason}"
    return Proc(finished.seconds, finished.peak_rss_mb, result, error, finished.cpu_seconds)


@dataclass
class Finished:
    seconds: float
    peak_rss_mb: float
    returncode: int
    out: str
    err: str
    #: user + sys of that process (and any children it waited for): what a consumption plan bills.
    cpu_seconds: float = 0.0


def spawn(command: Sequence[str], env: Mapping[str, str], cwd: Path = REPO, timeout: float = 900) -> Finished:
    """Run `command`; wall time, the peak RSS of that process alone, its output as text.

    Output goes through temporary files, so a chatty child never blocks on a full pipe; a
    child still running after `timeout` seconds is killed (its exit code then says so).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=dict(env), cwd=cwd, stdout=out, stderr=err)
        peak = _PeakRss(process.pid)
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            # wait4, not wait: its rusage carries the child's CPU time (its ru_maxrss is not
            # trusted, see _PeakRss).
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            watchdog.cancel()
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return Finished(
            seconds,
            peak.stop(),
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_utime + usage.ru_stime,
        )


class _PeakRss(threading.Thread):
    """Polls the child's VmHWM (its own high-water mark, reset at exec) until it exits.

    Not getrusage/wait4: Linux folds the parent's RSS at fork/exec time into the child's
    ru_maxrss, so a child smaller than this bench process would report the bench's size.
    Growth in the last poll interval before exit can be missed.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self._path = Path(f"/proc/{pid}/status")
        self._interval = interval
        self._done = threading.Event()
        self.peak_kb = 0
        self.start()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                status = self._path.read_text()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            self._done.wait(self._interval)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak_kb / 1024


def run_ingest(
    stack: Stack, span: tuple[str, str], container: str, timeout: float = 900, **source: Any
) -> Run:
    """`python -m shared ingest` as its own process: wall time and peak RSS (VmHWM) of that
    process, and the in-process time from the run's journal (created to completed)."""
    catalog = stack.write_catalog(
        {"orders": orders_source(stack.cloud.gateway_url, **source)},
        stack.workdir / f"catalog-{container}.toml",
    )
    env = client_env(stack, catalog, container)
    command = [
        sys.executable,
        "-m",
        "shared",
        "ingest",
        "--source",
        "orders",
        "--from",
        span[0],
        "--to",
        span[1],
        "--run-id",
        f"bench-{container}",
    ]
    finished = spawn(command, env, timeout=timeout)
    if finished.returncode != 0 or not finished.out.strip():
        raise RuntimeError(f"ingest failed: {_last_line(finished.err) or 'no output'}")
    summary = json.loads(finished.out)
    return Run(
        finished.seconds,
        summary,
        finished.peak_rss_mb,
        _run_seconds(stack, container, summary),
        finished.cpu_seconds,
    )


def _run_seconds(stack: Stack, container: str, summary: dict[str, Any]) -> float | None:
    """How long the orchestration ran, created to completed, from the local engine's journal
    (to the microsecond; the manifest's startedAt/finishedAt are whole seconds, which at 30 s
    is a 3% error either way). None if the journal cannot be read."""
    try:
        from shared.durable.journal import JournalStore

        instance = JournalStore(stack.workdir / f"state-{container}").load(summary["instanceId"])
        if instance is None:
            return None
        created, completed = (
            datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            for stamp in (instance.created_time, instance.last_updated_time)
        )
        return (completed - created).total_seconds()
    except Exception:
        return None


def bench_python(install: bool = True) -> Path | str:
    """The interpreter of .venv-bench with requirements-bench.txt installed, or why not.

    Creates the venv (with a `*` .gitignore inside, so git and ruff ignore it) and installs
    the requirements when they changed since the last install, unless `install` is False.
    """
    python = BENCH_VENV / "bin" / "python"
    stamp = BENCH_VENV / ".requirements-sha256"
    wanted = hashlib.sha256(BENCH_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    if not install:
        return f"{BENCH_VENV.name} missing or stale (run without --no-install)"
    requirements = str(BENCH_REQUIREMENTS)
    try:
        if not python.exists():
            subprocess.run([_base_python(), "-m", "venv", str(BENCH_VENV)], check=True, capture_output=True)
            (BENCH_VENV / ".gitignore").write_text("*\n")
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                requirements,
            ],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        reason = _last_line(exc.stderr.decode(errors="replace"))
        return f"installing {BENCH_REQUIREMENTS.name} failed: {reason}"
    stamp.write_text(wanted + "\n")
    return python


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _base_python() -> str:
    """The interpreter the app's venv was made from (a venv made from a venv would chain)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
