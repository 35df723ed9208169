"""Sustained throughput under an API Gateway limit: achieved req/s and 429 share.

Run by hand:  .venv/bin/python bench/ratelimit.py [--rate 50] [--burst 10] [--seconds 30]
The gateway limits to R req/s with burst B; the client is configured at R (the documented
setting) and at 2R (mis-configured, the adaptive bucket must find the limit). The ratio is
achieved/R, measured from the emulator's own request timestamps.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from harness import local_stack, run_ingest, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30, help="target run length (bounded by the window)")
    args = parser.parse_args()
    page_size = 20
    pages = int(args.rate * args.seconds)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(seconds=pages * page_size)  # 3600 records/hour = 1 record per second
    window = (start.strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    rows = [("client limit", "pages", "429s", "429 share", "achieved req/s", "achieved / R")]
    with local_stack() as stack:
        gateway = stack.cloud.gateway
        gateway.set_rate_limit(args.rate, burst=args.burst)
        for factor in (1, 2):
            gateway.reset_observations()
            run_ingest(
                stack,
                window,
                f"rl{factor}",
                rate_limit={"requests_per_second": args.rate * factor, "burst": args.burst},
                pagination={"page_size": page_size},
                output={"pages_per_part": 100},
            )
            requests = [r for r in gateway.requests if r.path == "/dev/orders"]
            elapsed = requests[-1].monotonic - requests[0].monotonic
            ok = sum(1 for r in requests if r.status == 200)
            throttled = sum(1 for r in requests if r.status == 429)
            achieved = (len(requests) - 1) / elapsed
            rows.append(
                (
                    f"{factor}x R",
                    str(ok),
                    str(throttled),
                    f"{throttled / len(requests):.2%}",
                    f"{achieved:.1f}",
                    f"{achieved / args.rate:.3f}",
                )
            )
    print(f"gateway limit R = {args.rate:g} req/s, burst {args.burst}")
    print(table(rows))


if __name__ == "__main__":
    main()
