"""Ours without landing: the app's own GatewayClient walking the window, nothing written.

Started by bench/throughput.py as client `ours-fetch`, its own process, with the app's
environment and catalog (the source `ours` ingests).  The runtime is built from settings as
in an activity (managed identity -> STS once, before the clock starts, like the ceiling's);
then `GatewayClient.pages()` walks the window with everything the app does per page --
rate limit, retries, correlation headers, size cap, parse checks, loop guards, telemetry hooks
-- and no part writer, no durable engine.  `ours` over `ours-fetch` is what landing and
orchestration cost; `ours-fetch` over `ceiling` is what the walk's own bookkeeping costs.
Prints one JSON object: records, pages, seconds (the walk only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared import runtime
from shared.gateway.client import RunContext
from shared.ingest.window import Window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default="orders")
    parser.add_argument("--from", dest="start", required=True)
    parser.add_argument("--to", dest="end", required=True)
    args = parser.parse_args()
    app = runtime.current()
    source = app.source(args.source)
    window = Window.parse(args.start, args.end)
    # Credentials (managed identity -> STS) are obtained here, before the clock, as the ceiling's.
    client = app.gateway_client(
        source,
        window.query_params(source.window),
        RunContext("bench-fetch-only", "bench"),
        app.role_session(source, None, None),
    )
    records = pages = 0
    started = time.perf_counter()
    for page in client.pages(None, max_pages=10**9):
        records += len(page.records)
        pages += 1
    seconds = time.perf_counter() - started
    print(json.dumps({"records": records, "pages": pages, "seconds": seconds}))


if __name__ == "__main__":
    main()
