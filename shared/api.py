"""HTTP handlers behind function_app.py, written against the Durable client and plain requests.

Every response is a JSON object (ADF rejects arrays). Errors are mapped to HTTP once, here:
a BridgeError becomes its status and `to_dict()`; anything else a 500 without a stack trace.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from shared import __version__
from shared.config.catalog import Source
from shared.errors import BridgeError, NotFoundError, RequestError, TooManyRunsError
from shared.ingest.orchestrators import BACKFILL_ORCHESTRATOR, INGEST_ORCHESTRATOR
from shared.ingest.requests import BackfillRequest, IngestRequest, ProbeRequest, parse_request
from shared.ingest.start import is_window_run, prepare_backfill, prepare_ingest, window_run_prefix
from shared.observability.redaction import redact, redact_data, register_secret
from shared.probe import probe
from shared.runtime import current

log = logging.getLogger(__name__)

ACTIVE = {"Pending", "Running", "ContinuedAsNew", "Suspended"}
RETRY_AFTER_SECONDS = 10


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> func.HttpResponse:
    # Every body, whatever path built it (errors, run status, probe report), is scrubbed last:
    # its strings, so what is left is still JSON.
    return func.HttpResponse(
        json.dumps(redact_data(body)), status_code=status, mimetype="application/json", headers=headers or {}
    )


def _note_function_key(req: func.HttpRequest) -> None:
    """Register the function key the caller sent, so no body or log of this process repeats it."""
    register_secret(req.headers.get("x-functions-key"))
    register_secret(req.params.get("code"))


def error_response(exc: Exception) -> func.HttpResponse:
    """The one place errors become HTTP responses."""
    if isinstance(exc, BridgeError):
        headers = {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        body = {
            key: redact(str(value)) if isinstance(value, str) else value
            for key, value in exc.to_dict().items()
        }
        return json_response(exc.http_status, body, headers)
    log.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
    return json_response(500, {"error": "InternalError", "message": "unexpected error; see the app logs"})


def _body(req: func.HttpRequest) -> Any:
    raw = req.get_body()
    if not raw:
        raise RequestError("body", "is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("body", "is not valid JSON") from None
    except RecursionError:  # the parser recurses per level: a hostile body nests thousands deep
        raise RequestError("body", "nests too deeply; send a flat JSON object") from None


def status_url(req: func.HttpRequest, instance_id: str) -> str:
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}/api/runs/{instance_id}"


def _accepted(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, instance_id: str, **extra: Any
) -> func.HttpResponse:
    url = status_url(req, instance_id)
    management = client.get_client_response_links(req, instance_id)
    body = {"id": instance_id, "statusUrl": url, **extra, "management": management}
    return json_response(202, body, {"Location": url, "Retry-After": str(RETRY_AFTER_SECONDS)})


async def get_status(
    client: df.DurableOrchestrationClient, instance_id: str
) -> df.DurableOrchestrationStatus | None:
    """The instance's status, or None when there is no such instance."""
    try:
        status = await client.get_status(instance_id)
    except TypeError:
        # The host answers 404 with an empty body, which the SDK cannot parse.
        return None
    if status is None or status.runtime_status is None:
        return None
    return status


async def _is_active(client: df.DurableOrchestrationClient, instance_id: str) -> bool:
    status = await get_status(client, instance_id)
    return status is not None and status.runtime_status.value in ACTIVE


async def _start_once(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, name: str, instance_id: str, input_: Any
) -> func.HttpResponse:
    """Attach to the instance if it is active, else start it; 202 either way."""
    if await _is_active(client, instance_id):
        return _accepted(req, client, instance_id, attached=True)
    try:
        await client.start_new(name, instance_id, input_)
    except Exception:
        # A concurrent trigger won the race: the host refuses to replace a running
        # instance (overridableExistingInstanceStates), so attach to it instead.
        if await _is_active(client, instance_id):
            return _accepted(req, client, instance_id, attached=True)
        raise
    log.info("started %s", instance_id)
    return _accepted(req, client, instance_id, attached=False)


async def _admit(client: df.DurableOrchestrationClient, source: Source, environment: str) -> None:
    """Admission control: refuse (429 + Retry-After) beyond the source's concurrent-run cap."""
    statuses = await client.get_status_by(
        runtime_status=[OrchestrationRuntimeStatus.Running, OrchestrationRuntimeStatus.Pending],
        instance_id_prefix=window_run_prefix(environment, source.name),  # filtered by the host
    )
    running = sum(1 for s in statuses if is_window_run(s.instance_id or "", environment, source.name))
    if running >= source.rate_limit.max_concurrent_runs:
        raise TooManyRunsError(
            f"{running} runs of {source.name!r} are already in flight, the cap is "
            f"{source.rate_limit.max_concurrent_runs} (rate_limit.max_concurrent_runs); retry later",
            retry_after=RETRY_AFTER_SECONDS * 3,
            source=source.name,
        )


async def start_ingest(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """POST /api/ingest: validate, attach to a running instance for the window or start one."""
    _note_function_key(req)
    try:
        runtime = current()
        request = parse_request(IngestRequest, _body(req))
        instance_id, state = prepare_ingest(request, runtime)
        if not await _is_active(client, instance_id):
            await _admit(client, runtime.source(state.source), runtime.settings.environment.value)
        return await _start_once(req, client, INGEST_ORCHESTRATOR, instance_id, state.model_dump())
    except Exception as exc:
        return error_response(exc)


async def start_backfill(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """POST /api/backfill: one ingest per window, bounded fan-out, landed windows skipped."""
    _note_function_key(req)
    try:
        request = parse_request(BackfillRequest, _body(req))
        instance_id, state = prepare_backfill(request, current())
        return await _start_once(req, client, BACKFILL_ORCHESTRATOR, instance_id, state.model_dump())
    except Exception as exc:
        return error_response(exc)


def run_probe(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/probe: identity -> STS -> one signed request -> blob write/delete; lands no data."""
    _note_function_key(req)
    try:
        request = parse_request(ProbeRequest, _body(req))
        report = probe(current(), request.source)
        return json_response(200 if report.ok else 502, report.to_json())
    except Exception as exc:
        return error_response(exc)


async def run_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """GET /api/runs/{id}: the run's status.

    By default in the async HTTP pattern an ADF Web activity follows: 202 + Location while
    running, 200 with the result, 500 with the run's error when it failed. With
    `?report=always` every existing run answers 200 with `done` and `ok`, so an Azure Function
    activity (which fails on any non-2xx with a generic message of its own) hands the pipeline
    the run's own error to decide on.
    """
    _note_function_key(req)
    try:
        instance_id = req.route_params.get("id", "")
        always = req.params.get("report", "").lower() == "always"
        status = await get_status(client, instance_id)
        if status is None:
            raise NotFoundError(f"no run with id {instance_id!r}")
        runtime_status = status.runtime_status.value
        body: dict[str, Any] = {"id": instance_id, "runtimeStatus": runtime_status}
        if runtime_status in ACTIVE:
            body.update(done=False, ok=False, progress=status.custom_status)
            if always:
                return json_response(200, body)
            retry = {"Location": status_url(req, instance_id), "Retry-After": str(RETRY_AFTER_SECONDS)}
            return json_response(202, body, retry)
        if runtime_status == "Completed":
            output = status.output if isinstance(status.output, dict) else {"output": status.output}
            return json_response(200, {**_bounded(output), **body, "done": True, "ok": True})
        body.update(done=True, ok=False, **_failure(runtime_status, status.output, instance_id))
        return json_response(200 if always else 500, body)
    except Exception as exc:
        return error_response(exc)


# A Web activity takes at most 4 MB of response; a window of thousands of parts (a backfill of
# thousands of windows) lists the first ones and counts them all: the manifest has every part.
MAX_LISTED = 100
_LISTS = {"parts": "partCount", "windows": "windowCount"}


def _bounded(output: dict[str, Any]) -> dict[str, Any]:
    bounded = dict(output)
    for key, count in _LISTS.items():
        items = output.get(key)
        if isinstance(items, list):
            bounded[count] = output.get(count, len(items))  # an output may list fewer than it counts
            if len(items) > MAX_LISTED:
                bounded[key] = items[:MAX_LISTED]
                bounded[f"{key}Truncated"] = True
    return bounded


def _failure(runtime_status: str, output: Any, instance_id: str) -> dict[str, str]:
    """`error` (the failing error class) and `message` (the run's own, naming its run and window)."""
    text = str(output or "").split("\n\n$OutOfProcData$", 1)[0]
    # The Durable extension prefixes an orchestrator's exception; the message is what follows.
    if text.startswith("Orchestrator function ") and "failed: " in text:
        text = text.split("failed: ", 1)[1]
    own = redact(" ".join(text.split())) or f"the run ended {runtime_status.lower()}"
    # Our errors render as `ErrorClass [source=… page=… request_id=…]: message`.
    head = own.split(" ", 1)[0].rstrip(":")
    named = head.isidentifier() and head[0].isupper() and head.endswith(("Error", "Failed", "Exception"))
    error = head if named else "RunFailed" if runtime_status == "Failed" else f"Run{runtime_status}"
    # The instance id is <env>-<source>-<from>_<to>: the window the message may not name itself.
    message = own if instance_id in own else f"{own} (run {instance_id})"
    return {"error": error, "message": message}


def health() -> func.HttpResponse:
    """GET /api/health: liveness only; no outbound calls, no settings echoed."""
    return json_response(200, {"status": "ok", "version": __version__})
