"""Command-line interface: the same orchestrator and activities as the Function App, in-process.

Results go to stdout as JSON; failures are one line on stderr and a non-zero exit code
(1: the run failed, 2: bad arguments, settings or catalog).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared import __version__
from shared.durable.engine import Engine
from shared.durable.journal import InstanceBusy, JournalStore
from shared.errors import BridgeError, ConfigError, RequestError
from shared.ingest import activities, orchestrators
from shared.ingest.layout import window_prefix
from shared.ingest.orchestrators import BACKFILL_ORCHESTRATOR, INGEST_ORCHESTRATOR
from shared.ingest.requests import BackfillRequest, IngestRequest, parse_request
from shared.ingest.start import prepare_backfill, prepare_ingest
from shared.ingest.window import Window
from shared.landing.verify import verify_window
from shared.observability import progress
from shared.observability.logs import JsonFormatter, configure_logging, log_format_from_env
from shared.observability.redaction import redact
from shared.probe import probe
from shared.runtime import Runtime, current

EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        result: int = args.handler(args)
        return result
    except (ConfigError, RequestError) as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except BridgeError as exc:
        _fail(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _fail("interrupted; run the same command again to resume")
        return 130
    except BrokenPipeError:
        # The reader left (`validate | head -1`): nothing to tell anyone. stdout goes to devnull so
        # the interpreter's final flush does not raise again (Python's documented SIGPIPE recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # a bug, not an operator error: still one line, the rest with -v
        logging.getLogger(__name__).debug("unexpected error", exc_info=exc)
        _fail(f"unexpected {type(exc).__name__}: {exc} (run with -v for details)")
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    parser.add_argument("--version", action="version", version=f"apigw-adf-bridge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="land one window of a source")
    ingest.add_argument("--source", required=True)
    ingest.add_argument("--from", dest="start", required=True, help="ISO8601 start (inclusive)")
    ingest.add_argument("--to", dest="end", required=True, help="ISO8601 end (exclusive)")
    ingest.add_argument("--run-id", help="pipeline run id used for correlation (default: the instance id)")
    ingest.add_argument("--pipeline-name", help="ADF pipeline name, selects a per-pipeline role")
    ingest.add_argument("--mode", choices=["skip-if-complete", "replace"], default="skip-if-complete")
    ingest.add_argument("--dry-run", action="store_true", help="fetch one page and land it under _dryrun/")
    ingest.set_defaults(handler=_ingest)

    backfill = commands.add_parser("backfill", help="land every window of a range, a bounded number at once")
    backfill.add_argument("--source", required=True)
    backfill.add_argument("--from", dest="start", required=True)
    backfill.add_argument("--to", dest="end", required=True)
    backfill.add_argument("--every", required=True, help="window length as ISO8601 duration: PT1H, P1D")
    backfill.add_argument("--max-parallel", type=int, default=4)
    backfill.add_argument("--run-id")
    backfill.add_argument("--pipeline-name")
    backfill.add_argument("--mode", choices=["skip-if-complete", "replace"], default="skip-if-complete")
    backfill.set_defaults(handler=_backfill)

    probe_cmd = commands.add_parser("probe", help="test the connection: identity, STS, one request, blob")
    probe_cmd.add_argument("--source", required=True)
    probe_cmd.set_defaults(handler=_probe)

    verify = commands.add_parser(
        "verify", help="recompute a landed window's sha256 and counts against its manifest"
    )
    verify.add_argument("--source", required=True)
    verify.add_argument("--from", dest="start", required=True)
    verify.add_argument("--to", dest="end", required=True)
    verify.set_defaults(handler=_verify)

    validate = commands.add_parser("validate", help="check the app settings and the source catalog")
    validate.set_defaults(handler=_validate)

    demo = commands.add_parser("demo", help="run the end-to-end demo on the embedded local stack")
    demo.set_defaults(handler=_demo)
    return parser


def _ingest(args: argparse.Namespace) -> int:
    runtime = current()
    request = parse_request(
        IngestRequest,
        {**_run_fields(args), "window": {"from": args.start, "to": args.end}, "dryRun": args.dry_run},
    )
    instance_id, state = prepare_ingest(request, runtime)
    return _run(runtime, INGEST_ORCHESTRATOR, instance_id, state.model_dump())


def _backfill(args: argparse.Namespace) -> int:
    runtime = current()
    request = parse_request(
        BackfillRequest,
        {
            **_run_fields(args),
            "from": args.start,
            "to": args.end,
            "every": args.every,
            "maxParallel": args.max_parallel,
        },
    )
    instance_id, state = prepare_backfill(request, runtime)
    return _run(runtime, BACKFILL_ORCHESTRATOR, instance_id, state.model_dump())


def _run_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields ingest and backfill share, as the HTTP API names them."""
    return {
        "source": args.source,
        "pipelineRunId": args.run_id,
        "pipelineName": args.pipeline_name,
        "mode": args.mode,
    }


def _probe(args: argparse.Namespace) -> int:
    report = probe(current(), args.source)
    _print(report.to_json())
    if not report.ok:
        failed = next(s for s in report.steps if s.status == "failed")
        _fail(f"probe failed at step {failed.name}: {failed.detail}")
        return EXIT_FAILED
    return 0


def _run(runtime: Runtime, name: str, instance_id: str, input_: dict[str, Any]) -> int:
    engine = local_engine(runtime.settings.state_dir)
    # The journal's identity goes with the run, so its generation folder is its own (issue 17).
    (input_["template"] if name == BACKFILL_ORCHESTRATOR else input_)["owner"] = engine.store.owner
    try:
        with progress.reporting():
            instance = engine.run(name, instance_id, input_)
    except InstanceBusy as busy:
        _fail(str(busy))
        return EXIT_FAILED
    if instance.runtime_status != "Completed":
        _fail(f"{instance_id} {instance.runtime_status.lower()}: {instance.output}")
        return EXIT_FAILED
    _print(instance.output)
    return 0


def local_engine(state_dir: Path | None) -> Engine:
    """The in-process Durable backend with this app's orchestrators and activities registered."""
    return Engine(
        {
            INGEST_ORCHESTRATOR: orchestrators.ingest_orchestrator,
            BACKFILL_ORCHESTRATOR: orchestrators.backfill_orchestrator,
        },
        {
            orchestrators.PLAN_WINDOW: activities.plan_window,
            orchestrators.FETCH_PART: activities.fetch_part,
            orchestrators.FINALIZE: activities.finalize,
            orchestrators.RECORD_BACKFILL: activities.record_backfill,
        },
        JournalStore(state_dir),
    )


def _verify(args: argparse.Namespace) -> int:
    runtime = current()
    source = runtime.source(args.source)
    prefix = window_prefix(
        runtime.settings.environment.value, source.name, Window.parse(args.start, args.end)
    )
    report = verify_window(runtime.landing_for(source), prefix)
    _print(report.to_json())
    if not report.ok:
        _fail(f"{prefix}: " + "; ".join(report.problems))
        return EXIT_FAILED
    return 0


def _validate(args: argparse.Namespace) -> int:
    runtime = current()
    environment = runtime.settings.environment
    sources = {
        name: "ok" if source.environment == environment else f"skipped: labelled {source.environment.value}"
        for name, source in sorted(runtime.catalog.sources.items())
    }
    settings = runtime.settings
    # Settings.from_env has checked the connection string's shape (it names LANDING_CONNECTION_STRING).
    target = "LANDING_CONNECTION_STRING" if settings.landing_connection_string else "LANDING_ACCOUNT_URL"
    _print(
        {
            "environment": environment.value,
            "catalog": str(settings.catalog_path),
            "landing": {"container": settings.landing_container, "from": target},
            "sources": sources,
        }
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    # The demo's stand-ins live outside the app package; run them as their own program.
    if importlib.util.find_spec("localcloud") is None:
        _fail("the demo needs the localcloud package from the repository checkout; run `make demo` there")
        return EXIT_USAGE
    os.execv(sys.executable, [sys.executable, "-m", "localcloud", "demo"])  # noqa: S606


def _print(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()  # a closed pipe raises here, inside main, not at interpreter exit


def _fail(message: str) -> None:
    """The one line a failure prints: text, or under LOG_FORMAT=json a JSON object like every log line."""
    first_line = redact(" ".join(str(message).split()))
    if log_format_from_env() == "json":
        record = logging.LogRecord(__name__, logging.ERROR, __file__, 0, first_line, None, None)
        sys.stderr.write(JsonFormatter().format(record) + "\n")
    else:
        sys.stderr.write(f"error: {first_line}\n")
