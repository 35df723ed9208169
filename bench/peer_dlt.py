"""The peer client: dlt's rest_api source into dlt's filesystem destination as jsonl.

Runs in .venv-bench (requirements-bench.txt), never in the app's .venv; started by
bench/throughput.py as `.venv-bench/bin/python bench/peer_dlt.py --base-url ... --out DIR`.
Same pages as the other clients: `GET <base-url>/<path>?from=&to=&limit=` followed by
dlt's JSONResponseCursorPaginator over `{"items": [...], "next_token": "..."}` (the token
goes back as the `next_token` query parameter), each request SigV4-signed for execute-api
by botocore through dlt's custom auth hook (an AuthConfigBase, which is a requests AuthBase).
Temporary credentials come from BENCH_AWS_ACCESS_KEY_ID / BENCH_AWS_SECRET_ACCESS_KEY /
BENCH_AWS_SESSION_TOKEN and are never printed.  The files dlt writes are gzip jsonl (its
default for this destination), like the app's parts.

Prints one JSON object: records, seconds (pipeline.run only), and the extract / normalize /
load step times from dlt's trace.  On failure prints {"error": "..."} and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

# Must be set before dlt is imported: no telemetry, and nothing from the user's ~/.dlt.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")


def build_auth(region: str) -> Any:
    """A dlt auth object that signs each prepared request with botocore's SigV4 (execute-api)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from dlt.common.configuration import configspec
    from dlt.sources.helpers.rest_client.auth import AuthConfigBase
    from requests import PreparedRequest

    credentials = Credentials(
        os.environ["BENCH_AWS_ACCESS_KEY_ID"],
        os.environ["BENCH_AWS_SECRET_ACCESS_KEY"],
        os.environ.get("BENCH_AWS_SESSION_TOKEN") or None,
    )

    @configspec
    class AwsSigV4Auth(AuthConfigBase):
        """Signs host, x-amz-date and the session token, like the app does."""

        region: str = None  # type: ignore[assignment]

        def __call__(self, request: PreparedRequest) -> PreparedRequest:
            parts = urlsplit(request.url or "")
            aws_request = AWSRequest(
                method=request.method,
                url=urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
                params=parse_qsl(parts.query, keep_blank_values=True),
                headers={"host": parts.netloc},
            )
            SigV4Auth(credentials, "execute-api", self.region).add_auth(aws_request)
            for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
                if name in aws_request.headers:
                    request.headers[name] = aws_request.headers[name]
            return request

    return AwsSigV4Auth(region=region).resolve()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import dlt
    from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": args.base_url,
                "auth": build_auth(args.region),
                "paginator": JSONResponseCursorPaginator(cursor_path="next_token", cursor_param="next_token"),
            },
            "resource_defaults": {"write_disposition": "append"},
            "resources": [
                {
                    "name": "bench",
                    "endpoint": {
                        "path": args.path,
                        "params": {"from": args.start, "to": args.end, "limit": args.page_size},
                        "data_selector": "items",
                    },
                }
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_peer",
        destination=dlt.destinations.filesystem(bucket_url=args.out),
        dataset_name="bench",
        pipelines_dir=args.work,
    )
    started = time.perf_counter()
    pipeline.run(source, loader_file_format="jsonl")
    seconds = time.perf_counter() - started
    trace = pipeline.last_trace
    steps = {
        step.step: (step.finished_at - step.started_at).total_seconds()
        for step in trace.steps
        if step.finished_at is not None
    }
    records = trace.last_normalize_info.row_counts.get("bench", 0) if trace.last_normalize_info else 0
    return {"records": records, "seconds": seconds, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True, help="stage URL, e.g. http://127.0.0.1:PORT/dev")
    parser.add_argument("--path", required=True, help="resource path under the stage, e.g. bench")
    parser.add_argument("--from", dest="start", required=True)
    parser.add_argument("--to", dest="end", required=True)
    parser.add_argument("--page-size", type=int, required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--out", required=True, help="local directory for the filesystem destination")
    parser.add_argument("--work", required=True, help="dlt pipelines_dir (state, staging)")
    args = parser.parse_args()
    try:
        result = run(args)
    except Exception as exc:  # reported in the bench table instead of a traceback
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:500]}))
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
