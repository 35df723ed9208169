"""Peak memory of landing a window: it must be bounded by the part size, not the window.

Run by hand:  .venv/bin/python bench/memory.py [--records 1000000] [--format jsonl.gz|parquet|both]
Lands N/10 and N records through `python -m shared ingest` in each output format and prints the
CLI process's peak RSS (its own VmHWM, polled by harness.spawn) for both, with their ratio: ~1.0
means memory does not grow with the window. Also prints the STS calls made (one per role per
credential lifetime expected).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from harness import Dataset, local_stack, run_ingest, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("jsonl.gz", "parquet", "both"), default="both")
    args = parser.parse_args()
    formats = ("jsonl.gz", "parquet") if args.format == "both" else (args.format,)
    header = ("format", "records", "pages", "parts", "raw MB", "landed MB", "seconds", "records/s")
    rows = [(*header, "peak RSS MB", "STS calls")]
    with local_stack() as stack:
        gateway = stack.cloud.gateway
        gateway.add_dataset("/dev/dense", Dataset(name="dense", records_per_hour=360_000, max_limit=1000))
        ratios = []
        for output_format, records in ((f, n) for f in formats for n in (args.records // 10, args.records)):
            if records == args.records // 10:
                peaks: list[float] = []
            start = datetime(2024, 1, 1, tzinfo=UTC)
            end = start + timedelta(seconds=records // 100)  # 100 records per second
            window = (start.strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ"))
            calls_before = stack.cloud.sts.call_count
            run = run_ingest(
                stack,
                window,
                f"mem{records}{output_format.replace('.', '')}",
                path="/dense",
                pagination={"page_size": 1000},
                output={"pages_per_part": 100, "format": output_format},
            )
            summary = run.summary
            peaks.append(run.peak_rss_mb)
            rows.append(
                (
                    output_format,
                    str(summary["records"]),
                    str(summary["pages"]),
                    str(len(summary["parts"])),
                    f"{summary['uncompressedBytes'] / 1e6:.0f}",
                    f"{summary['bytes'] / 1e6:.0f}",
                    f"{run.seconds:.1f}",
                    f"{summary['records'] / run.seconds:,.0f}",
                    f"{run.peak_rss_mb:.0f}",
                    str(stack.cloud.sts.call_count - calls_before),
                )
            )
            if len(peaks) == 2:
                ratios.append(f"{output_format} {peaks[1] / peaks[0]:.2f}")
    print(table(rows))
    # "raw MB" is what max_part_bytes counts: JSON for jsonl.gz, decoded Arrow data for parquet.
    print(f"peak RSS ratio (N / (N/10)): {', '.join(ratios)}")


if __name__ == "__main__":
    main()
