"""Shared set-up for the benchmarks: the local stack, an app environment, and a CLI run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from localcloud.stack import FOREIGN_CREDENTIAL_VARS, Stack, orders_source  # noqa: E402


@dataclass
class Run:
    seconds: float
    summary: dict[str, Any]
    peak_rss_mb: float


@contextmanager
def local_stack() -> Iterator[Stack]:
    with Stack() as stack:
        yield stack


def run_ingest(stack: Stack, window: tuple[str, str], container: str, **source: Any) -> Run:
    """`python -m shared ingest` as its own process; wall time and peak RSS of that process."""
    catalog = stack.write_catalog(
        {"orders": orders_source(stack.cloud.gateway_url, **source)},
        stack.workdir / f"catalog-{container}.toml",
    )
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_CREDENTIAL_VARS}
    env.update(stack.app_env(catalog, container=container, state_dir=stack.workdir / f"state-{container}"))
    command = [
        sys.executable,
        "-m",
        "shared",
        "ingest",
        "--source",
        "orders",
        "--from",
        window[0],
        "--to",
        window[1],
        "--run-id",
        f"bench-{container}",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, _, rusage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    if process.returncode not in (0, None) and not out:
        raise SystemExit(f"ingest failed: {err.decode()}")
    return Run(seconds, json.loads(out), rusage.ru_maxrss / 1024)


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
