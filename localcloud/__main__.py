"""`python -m localcloud demo | serve | up`: the app on the embedded local stack.

demo: starts the identity endpoint, STS, the API Gateway emulator and Azurite on free
127.0.0.1 ports; runs `python -m shared ingest` as its own process with nothing but app
settings (as a Function App would have them); then reads back what landed and checks it
against what the gateway served. Then the ADF way: the function app's HTTP API on a local
Functions host (`serve`, its own process), a POST to /api/ingest, the status URL polled to
200, and the same checks. Exits non-zero if a single record is missing or duplicated.

serve: the function app's HTTP routes on http://127.0.0.1:7071 (localcloud/functionshost.py).
up: the local stack kept running, its settings printed for the CLI (localcloud/up.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from localcloud import localsettings
from localcloud.functionshost import ServeProcess, serve
from localcloud.stack import FOREIGN_CREDENTIAL_VARS, Stack, orders_source
from localcloud.up import up
from shared.landing.blobs import Landing
from shared.landing.storage import blob_service
from shared.landing.verify import read_records, verify_window

WINDOW = ("2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")
# The HTTP run takes the next two hours, so it fetches rather than finding WINDOW landed.
HTTP_WINDOW = ("2024-01-01T02:00:00Z", "2024-01-01T04:00:00Z")
# ADF's Web activity waits Retry-After (10 s) between polls; the demo need not.
POLL_SECONDS = 0.2


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
        good = _http_demo(stack, Path(tmp), landing) and good
        _say("demo OK" if good else "demo FAILED")
        return 0 if good else 1


def _http_demo(stack: Stack, workdir: Path, landing: Landing) -> bool:
    """The ADF path: start over HTTP, poll the status URL to 200, check what landed."""
    gateway = stack.cloud.gateway
    _say("ADF-style: the function app's HTTP API on a local Functions host, called as a Web activity does")
    catalog = workdir / "catalog.toml"
    app_env = stack.app_env(catalog, container="landing", state_dir=workdir / "state-http")
    settings_file = workdir / "local.settings.json"
    values = localsettings.stack_values(
        app_env, stack.azurite.connection_string, written_by="localcloud demo"
    )
    localsettings.write(settings_file, values)
    # The file is the host's only source of settings, as local.settings.json is for func start.
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_CREDENTIAL_VARS and k not in values}
    server = ServeProcess("--port", "0", "--settings", str(settings_file), env=env)
    _say("$ " + " ".join(server.args))
    pages_before = gateway.count(status=200)
    try:
        server.start()
    except RuntimeError as exc:
        _say(f"serve did not start: {exc}")
        return False
    try:
        _say(f"  Functions host ready at {server.url}")
        body = {
            "source": "orders",
            "window": {"from": HTTP_WINDOW[0], "to": HTTP_WINDOW[1]},
            "pipelineRunId": "demo-adf-run-0001",
            "pipelineName": "pl_orders_daily",
        }
        with httpx.Client(timeout=30) as client:
            started = time.perf_counter()
            accepted = client.post(f"{server.url}/api/ingest", json=body)
            location = accepted.headers.get("Location", "")
            _say(f"POST /api/ingest {json.dumps(body)}")
            _say(f"  -> {accepted.status_code}, Location: {location}")
            if accepted.status_code != 202 or not location:
                _say(f"  unexpected answer: {accepted.text}")
                return False
            polls, status = 0, accepted
            deadline = time.monotonic() + 300
            while status.status_code == 202 and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                status = client.get(location)
                polls += 1
            elapsed = time.perf_counter() - started
        result = status.json()
        _say(
            f"GET {httpx.URL(location).path} -> 202 while running, polled {polls} times, "
            f"then {status.status_code} {result.get('runtimeStatus')} after {elapsed:.1f}s"
        )
        if status.status_code != 200:
            _say(f"  run did not complete: {result}")
            return False
        _say(
            f"landed {result['records']} records in {len(result['parts'])} parts, "
            f"folder {result['prefix']}/; gateway pages: {gateway.count(status=200) - pages_before}"
        )
        check = verify_window(landing, result["prefix"])
        ids = Counter(record["id"] for record in read_records(landing, result["prefix"]))
        expected = gateway.expected_ids("/dev/orders", *HTTP_WINDOW)
        duplicates = sum(n - 1 for n in ids.values() if n > 1)
        missing, extra = len(expected - set(ids)), len(set(ids) - expected)
        _say(
            f"  read back: {sum(ids.values())} records, {duplicates} duplicated, "
            f"{missing} missing, {extra} unexpected"
        )
        _say(f"  manifest check: {'ok' if check.ok else '; '.join(check.problems)}")
        good = check.ok and not (duplicates or missing or extra) and sum(ids.values()) == len(expected)
    finally:
        code = server.stop(signal.SIGINT)
    for line in server.output.splitlines():
        if "localcloud.functionshost:" in line:  # the host's one line per request
            _say(f"  | {line}")
    _say(f"  Functions host stopped on SIGINT, exit code {code}")
    return good and code == 0


def _say(line: str) -> None:
    print(f"[demo] {line}", file=sys.stderr if line.startswith("$") else sys.stdout, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcloud", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="the main job end to end, by CLI and over HTTP, verified")
    serving = commands.add_parser(
        "serve",
        help="the function app's HTTP API on http://127.0.0.1:7071, like func start",
        description="Serve function_app's HTTP routes (/api/ingest, /api/backfill, /api/probe, "
        "/api/runs/{id}, /api/health) with the in-process Durable engine, over the local stack, or over "
        "the Values of local.settings.json when it exists. Ctrl-C or SIGTERM stops everything it started.",
    )
    serving.add_argument("--port", type=int, help="TCP port (default: Host.LocalHttpPort, else 7071; 0: any)")
    source = serving.add_mutually_exclusive_group()
    source.add_argument("--settings", type=Path, help="a local.settings.json to take settings from")
    source.add_argument(
        "--local-stack", action="store_true", help="use the local stack even if local.settings.json exists"
    )
    serving.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="with settings from a file: seconds running orchestrations get to finish on shutdown (10)",
    )
    upping = commands.add_parser(
        "up",
        help="the local stack, kept running; prints its settings as export lines",
        description="Start the local stack (managed identity, STS, API Gateway, Key Vault, Azurite with "
        "blob, queue and table) and print its app settings as export lines; stays up until Ctrl-C.",
    )
    upping.add_argument(
        "--write-local-settings",
        nargs="?",
        type=Path,
        const=localsettings.DEFAULT_PATH,
        metavar="PATH",
        help="also write a local.settings.json for func start and serve (default: the app root's)",
    )
    upping.add_argument("--env-file", type=Path, help="also write the export lines to this file")
    upping.add_argument(
        "--force", action="store_true", help="replace a local.settings.json not written by up"
    )
    args = parser.parse_args()
    if args.command == "serve":
        return serve(
            port=args.port,
            settings_path=args.settings,
            local_stack=args.local_stack,
            grace_seconds=args.grace,
        )
    if args.command == "up":
        return up(local_settings=args.write_local_settings, env_file=args.env_file, force=args.force)
    return demo()


if __name__ == "__main__":
    raise SystemExit(main())
