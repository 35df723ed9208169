"""`python -m localcloud demo`: the main job end to end on the embedded local stack.

Starts the identity endpoint, STS, the API Gateway emulator and Azurite on free 127.0.0.1
ports; runs `python -m shared ingest` as its own process with nothing but app settings (as
a Function App would have them); then reads back what landed and checks it against what the
gateway served. Exits non-zero if a single record is missing or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from localcloud.stack import FOREIGN_CREDENTIAL_VARS, Stack, orders_source
from shared.landing.blobs import Landing, blob_service
from shared.landing.verify import read_records, verify_window

WINDOW = ("2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")


def demo() -> int:
    with tempfile.TemporaryDirectory(prefix="apigw-adf-bridge-demo-") as tmp, Stack(Path(tmp)) as stack:
        gateway = stack.cloud.gateway
        catalog = stack.write_catalog({"orders": orders_source(gateway.url)})
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_CREDENTIAL_VARS}
        env.update(stack.app_env(catalog, container="landing"))
        _say(
            f"local stack up: gateway {gateway.url}, STS {stack.cloud.sts.url}, Azurite :{stack.azurite.port}"
        )

        command = [
            sys.executable,
            "-m",
            "shared",
            "--verbose",
            "ingest",
            "--source",
            "orders",
            "--from",
            WINDOW[0],
            "--to",
            WINDOW[1],
            "--run-id",
            "demo-run-0001",
        ]
        _say("$ " + " ".join(command[1:]))
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            sys.stderr.write(result.stderr)
            _say(f"ingest failed with exit code {result.returncode}")
            return 1
        summary = json.loads(result.stdout)
        for line in result.stderr.splitlines():
            _say(f"  | {line}")

        landing = Landing(blob_service(stack.azurite.connection_string, None), "landing")
        check = verify_window(landing, summary["prefix"])
        ids = Counter(record["id"] for record in read_records(landing, summary["prefix"]))
        expected = gateway.expected_ids("/dev/orders", *WINDOW)
        duplicates = sum(n - 1 for n in ids.values() if n > 1)
        missing = len(expected - set(ids))
        extra = len(set(ids) - expected)

        print(json.dumps(summary, indent=2))
        _say(f"landed {summary['records']} records in {len(summary['parts'])} parts in {elapsed:.1f}s")
        _say(f"  where: container 'landing', folder {summary['prefix']}/ (manifest, parts, _SUCCESS)")
        _say(
            f"  gateway served {len(expected)} distinct records over {gateway.count(status=200)} pages; "
            f"STS calls: {stack.cloud.sts.call_count}"
        )
        _say(
            f"  read back: {sum(ids.values())} records, {duplicates} duplicated, "
            f"{missing} missing, {extra} unexpected"
        )
        _say(f"  manifest check: {'ok' if check.ok else '; '.join(check.problems)}")
        good = check.ok and not (duplicates or missing or extra) and sum(ids.values()) == len(expected)
        _say("demo OK" if good else "demo FAILED")
        return 0 if good else 1


def _say(line: str) -> None:
    print(f"[demo] {line}", file=sys.stderr if line.startswith("$") else sys.stdout, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud", description=__doc__)
    parser.add_argument("command", choices=["demo"])
    parser.parse_args()
    return demo()


if __name__ == "__main__":
    raise SystemExit(main())
