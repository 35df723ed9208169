"""Where our ingest spends its time: `shared ingest` once under cProfile, top functions.

Run by hand from the repo root:

    .venv/bin/python bench/profile_ours.py                 # zero-latency scenario, 2,000 x 100
    .venv/bin/python bench/profile_ours.py --pages 10000 --top 40 --save /tmp/ours.prof

The stack (emulator, Azurite) runs in this process; the app runs in a child process (same
interpreter) that calls `shared.cli.main(["ingest", ...])` in-process with cProfile enabled
on its main thread and on every thread it starts (the runner's activity workers), so the
emulator's threads never share the app's GIL or its profile.  Prints the top N functions by
cumulative and by own (total) time, all threads merged.  cProfile roughly doubles the run
time; read the shares, not the seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import threading
from pathlib import Path
from typing import Any

from harness import (
    BENCH_PATH,
    REPO,
    Workload,
    client_env,
    local_stack,
    orders_source,
    publish,
    spawn,
)

CHILD = "--profiled-child"


def child(out: Path, argv: list[str]) -> int:
    """In the app's process: run the CLI with every thread profiled, dump merged stats."""
    from shared.cli import main as cli_main

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        with lock:
            profiles.append(profile)
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    main_profile = cProfile.Profile()
    main_profile.enable()
    try:
        code = cli_main(argv)
    finally:
        main_profile.disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]
    stats = pstats.Stats(main_profile)
    with lock:
        for profile in profiles:
            stats.add(profile)
    stats.dump_stats(str(out))
    return code


def report(path: Path, top: int) -> str:
    """Top functions by cumulative and by own time, with paths shortened."""
    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    total = getattr(stats, "total_tt", 0.0)
    # Summed over threads, waits included (a worker blocked on a lock accrues its time).
    text.write(f"profiled time, all threads summed: {total:.1f} s\n")
    for key, title in (("cumulative", "by cumulative time"), ("tottime", "by total (own) time")):
        text.write(f"\n--- top {top} {title} ---\n")
        stats.sort_stats(key).print_stats(top)
    return _shorten(text.getvalue())


def _shorten(text: str) -> str:
    """Drop the site-packages, repo and stdlib prefixes from file names."""
    prefixes = [p for p in sys.path if p.endswith("site-packages")]
    prefixes += [str(REPO), f"{sys.base_prefix}/lib/python{sys.version_info.major}.{sys.version_info.minor}"]
    for prefix in prefixes:
        text = text.replace(prefix.rstrip("/") + "/", "")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", type=Path, help="also keep the .prof file here (for snakeviz etc.)")
    args = parser.parse_args()
    workload = Workload(args.pages, args.page_size)
    with local_stack() as stack:
        publish(stack, workload)
        container = "profile"
        source: dict[str, Any] = {
            "path": BENCH_PATH,
            "pagination": {"page_size": workload.page_size},
            "rate_limit": {"requests_per_second": 1_000_000, "burst": 1000},
            "output": {"pages_per_part": 100},
        }
        catalog = stack.write_catalog(
            {"orders": orders_source(stack.cloud.gateway_url, **source)},
            stack.workdir / "catalog-profile.toml",
        )
        prof = args.save or stack.workdir / "ours.prof"
        start, end = workload.window
        command = [sys.executable, str(Path(__file__).resolve()), CHILD, str(prof), "ingest"]
        command += ["--source", "orders", "--from", start, "--to", end, "--run-id", "bench-profile"]
        finished = spawn(command, client_env(stack, catalog, container))
        if finished.returncode != 0:
            raise SystemExit(f"profiled ingest failed: {finished.err.strip()[-500:]}")
        print(
            f"ours under cProfile: {workload.pages:,} pages x {workload.page_size} = "
            f"{workload.records:,} records, wall {finished.seconds:.1f} s"
        )
        print(report(prof, args.top))


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD]:  # internal: the profiled process, then the CLI's own arguments
        sys.exit(child(Path(sys.argv[2]), sys.argv[3:]))
    main()
