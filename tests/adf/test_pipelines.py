"""adf/ pipelines run through Microsoft's ADF evaluator, fed what the app and ADF really answer.

data-factory-testing-framework walks a pipeline's activities in dependency order, evaluating
every expression with ADF's own expression engine; each Azure Function activity it reaches is
answered here the way ADF would see it: the start body the app's request models accept, the
status route's real answers (shared/api.py run_status over a durable client that reports
Running, then the end state), non-2xx answers failed as ADF fails them (error 3608 with its own
generic message). The tests assert the path taken, the bodies sent, where `_SUCCESS` is awaited,
and what the pipeline fails with; the last ones check that they catch the defects of issue 15.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func
import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from shared import api
from shared.errors import GatewayError, RunFailed
from shared.ingest.layout import summarize, window_prefix
from shared.ingest.requests import BackfillRequest, IngestRequest, WindowBody
from shared.ingest.start import backfill_instance_id, instance_id_for, iso_duration
from shared.ingest.window import Window
from shared.landing.blobs import SUCCESS

ROOT = Path(__file__).resolve().parents[2]
ADF = ROOT / "adf"
BASE = "https://func-apigw-adf-bridge-dev.azurewebsites.net/api"
RUN_ID = "8d3b2a4e-0f51-4c57-9a4c-3f2e1b0c9d8e"
TRIGGER_OUTPUTS = {"windowStartTime": "2024-01-01T00:00:00Z", "windowEndTime": "2024-01-02T00:00:00Z"}
# A container per environment that is not the pipeline's old default: it must come from the run.
CONTAINERS = {"dev": "landing", "stage": "landing-stage", "prod": "raw"}
RUNNING_POLLS = 1
MAX_STEPS = 40
REQUEST_ID = "c0ffee00-1234-4bcd-9ef0-0123456789ab"

Framework = Callable[[Path], Any]


def _aliases(model: type[Any]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


# --- the app as ADF reaches it -----------------------------------------------------------------


class _Durable:
    """A durable client that reports a run as running for a few polls, then its end state."""

    def __init__(self, end: tuple[str, Any], running: int) -> None:
        self._states = [("Running", None)] * running + [end]

    async def get_status(self, instance_id: str) -> Any:
        name, output = self._states.pop(0) if len(self._states) > 1 else self._states[0]
        return SimpleNamespace(
            runtime_status=OrchestrationRuntimeStatus(name),
            output=output,
            custom_status={"parts": 1} if name == "Running" else None,
        )


@dataclass
class Bridge:
    """Answers ADF's calls: the start with the real request models and instance ids, every poll
    with the real status route."""

    environment: str
    end: Callable[[str], tuple[str, Any]]  # instance id -> (runtimeStatus, output)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    durable: _Durable | None = None

    def call(self, method: str, function: str, body: str | None) -> tuple[int, dict[str, Any]]:
        self.calls.append((method, function, json.loads(body) if body else None))
        path, _, query = function.partition("?")
        if method == "POST":
            return 202, self._start(path, json.loads(body or "null"))
        assert method == "GET" and path.startswith("runs/"), f"no such route: {method} {function}"
        instance_id = path.removeprefix("runs/")
        if self.durable is None:
            self.durable = _Durable(self.end(instance_id), RUNNING_POLLS)
        request = func.HttpRequest(
            "GET", f"{BASE}/{path}", body=b"", route_params={"id": instance_id}, params=dict(parse_qsl(query))
        )
        response = asyncio.run(api.run_status(request, self.durable))  # type: ignore[arg-type]
        return response.status_code, json.loads(response.get_body())

    def _start(self, route: str, body: Any) -> dict[str, Any]:
        if route == "ingest":
            request = IngestRequest.model_validate(body)
            window = Window.parse(request.window.start, request.window.end)
            instance_id = instance_id_for(self.environment, request.source, window, dry_run=request.dry_run)
        else:
            assert route == "backfill", route
            backfill = BackfillRequest.model_validate(body)
            window = Window.parse(backfill.start, backfill.end)
            every = iso_duration(backfill.every)
            instance_id = backfill_instance_id(self.environment, backfill.source, window, every)
        url = f"{BASE}/runs/{instance_id}"
        management = {"id": instance_id, "statusQueryGetUri": f"{url}?code=SYSTEMKEY"}
        return {"id": instance_id, "statusUrl": url, "attached": False, "management": management}


def landed(environment: str, *, dry_run: bool = False, parts: int = 3) -> Callable[[str], tuple[str, Any]]:
    """The output of a completed ingest run, built by the app's own layout rules."""

    def end(instance_id: str) -> tuple[str, Any]:
        window = Window.parse(TRIGGER_OUTPUTS["windowStartTime"], TRIGGER_OUTPUTS["windowEndTime"])
        manifest = {
            "source": "orders",
            "window": window.to_json(),
            "container": CONTAINERS[environment],
            "prefix": window_prefix(environment, "orders", window, dry_run=dry_run),
            "parts": [
                {
                    "name": f"g1/part-{i:05d}.jsonl.gz",
                    "first_request_id": f"r{i}a",
                    "last_request_id": f"r{i}z",
                }
                for i in range(parts)
            ],
            "totals": {"records": 3600 * parts, "bytes": 1000 * parts, "pages": 36 * parts},
            "instanceId": instance_id,
            "pipelineRunId": RUN_ID,
        }
        return "Completed", summarize(manifest, skipped=False)

    return end


def failed(message: str) -> Callable[[str], tuple[str, Any]]:
    # The Durable extension reports an out-of-process orchestrator's exception like this.
    return lambda _: ("Failed", f"Orchestrator function 'ingest_orchestrator' failed: {message}")


GATEWAY_FAILURE = str(
    GatewayError(
        "HTTP 403 AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/adf-ingest/"
        f"{RUN_ID} is not authorized to perform: execute-api:Invoke",
        source="orders",
        page=3,
        request_id=REQUEST_ID,
    )
)


# --- driving a pipeline ------------------------------------------------------------------------


@dataclass
class Outcome:
    path: list[str] = field(default_factory=list)
    marker: dict[str, str] | None = None
    failure: dict[str, str] | None = None


def _value(element: Any) -> Any:
    """An evaluated property: DataFactoryElement keeps its result; literals are themselves."""
    return getattr(element, "result", element)


def adf_error(function: str, status: int) -> dict[str, str]:
    """How an Azure Function activity fails on a non-2xx answer (ADF error 3608): the body is lost."""
    reason = {404: "NotFound", 500: "InternalServerError", 502: "BadGateway"}.get(status, str(status))
    return {
        "errorCode": "3608",
        "message": f"Call to provided Azure function '{function}' failed with status-'{reason}' and "
        f"message - 'Invoking Azure function failed with HttpStatusCode - {reason}.'.",
    }


def run(framework: Framework, root: Path, name: str, parameters: dict[str, Any], bridge: Bridge) -> Outcome:
    from data_factory_testing_framework.exceptions import (
        NoRemainingPipelineActivitiesMeetDependencyConditionsError,
    )
    from data_factory_testing_framework.state import DependencyCondition, RunParameter, RunParameterType

    test_framework = framework(root)
    pipeline = test_framework.get_pipeline_by_name(name)
    arguments = [RunParameter(RunParameterType.Pipeline, k, v) for k, v in parameters.items()]
    arguments += [
        RunParameter(RunParameterType.System, "RunId", RUN_ID),
        RunParameter(RunParameterType.System, "Pipeline", name),
    ]
    outcome, last_error = Outcome(), None
    try:
        for activity in test_framework.evaluate_pipeline(pipeline, arguments):
            outcome.path.append(activity.name)
            assert len(outcome.path) <= MAX_STEPS, f"{name} never stops: {outcome.path}"
            props = activity.type_properties
            if activity.type == "AzureFunctionActivity":
                function = _value(props["functionName"])
                status, body = bridge.call(props["method"], function, _value(props.get("body")))
                if 200 <= status < 300:
                    activity.set_result(DependencyCondition.Succeeded, body)
                else:
                    last_error = adf_error(function, status)
                    activity.set_result(DependencyCondition.Failed, {})
            elif activity.type == "Validation":
                outcome.marker = _marker(root, props["dataset"])
            elif activity.type == "Fail":
                outcome.failure = {
                    "errorCode": _value(props["errorCode"]),
                    "message": _value(props["message"]),
                }
    except NoRemainingPipelineActivitiesMeetDependencyConditionsError:
        # An activity failed and nothing handles it: ADF ends the run with that activity's error.
        assert last_error is not None, f"{name} stalled without a failed activity: {outcome.path}"
        outcome.failure = last_error
    return outcome


def _marker(root: Path, reference: dict[str, Any]) -> dict[str, str]:
    """The blob a Validation activity waits for: its dataset's location, evaluated by ADF's engine."""
    from data_factory_testing_framework.models import DataFactoryElement
    from data_factory_testing_framework.state import PipelineRunState, RunParameter, RunParameterType

    path = root / "dataset" / f"{reference['referenceName']}.json"
    dataset = json.loads(path.read_text(encoding="utf-8"))["properties"]
    values = {k: v["defaultValue"] for k, v in dataset.get("parameters", {}).items() if "defaultValue" in v}
    values |= {k: _value(v) for k, v in reference.get("parameters", {}).items()}
    state = PipelineRunState(
        parameters=[RunParameter(RunParameterType.Dataset, k, v) for k, v in values.items()]
    )
    location = dataset["typeProperties"]["location"]
    return {
        key: DataFactoryElement(location[key]["value"]).evaluate(state)
        for key in ("container", "folderPath", "fileName")
    }


def trigger_parameters() -> dict[str, Any]:
    """What tr_orders_daily passes: its expressions over a tumbling window's outputs."""
    trigger = json.loads((ADF / "trigger" / "tr_orders_daily.json").read_text(encoding="utf-8"))["properties"]
    assert trigger["pipeline"]["pipelineReference"]["referenceName"] == "pl_ingest_window"
    resolved = {}
    for name, value in trigger["pipeline"]["parameters"].items():
        if isinstance(value, str) and value.startswith("@trigger().outputs."):
            value = TRIGGER_OUTPUTS[value.removeprefix("@trigger().outputs.")]
        resolved[name] = value
    return resolved


# --- the checks, as functions so that the last tests can run them on broken pipelines ----------

POLL = ["Back off", "Poll run", "Record report"]


def check_ingest_lands_where_the_run_says(
    framework: Framework, root: Path, environment: str, *, dry_run: bool = False
) -> None:
    parameters = trigger_parameters() | ({"dryRun": True} if dry_run else {})
    bridge = Bridge(environment, landed(environment, dry_run=dry_run))
    outcome = run(framework, root, "pl_ingest_window", parameters, bridge)

    assert outcome.failure is None, outcome.failure
    # The evaluator lists the activities that do work; Until and If Condition only steer.
    assert outcome.path == ["Start ingest", *POLL * (RUNNING_POLLS + 1), "Check _SUCCESS"]
    (method, function, body), *polls = bridge.calls
    assert (method, function) == ("POST", "ingest")
    assert set(body) == _aliases(IngestRequest), "every IngestRequest field, by its alias, and nothing else"
    assert set(body["window"]) == _aliases(WindowBody)
    request = IngestRequest.model_validate(body)
    assert (request.source, request.pipeline_run_id, request.pipeline_name) == (
        "orders",
        RUN_ID,
        "pl_ingest_window",
    )
    assert request.dry_run is dry_run and request.mode == "skip-if-complete"
    window = Window.parse(request.window.start, request.window.end)
    assert window == Window.parse(TRIGGER_OUTPUTS["windowStartTime"], TRIGGER_OUTPUTS["windowEndTime"])
    instance_id = instance_id_for(environment, "orders", window, dry_run=dry_run)
    assert polls == [("GET", f"runs/{instance_id}?report=always", None)] * (RUNNING_POLLS + 1)
    assert outcome.marker == {
        "container": CONTAINERS[environment],
        "folderPath": window_prefix(environment, "orders", window, dry_run=dry_run),
        "fileName": SUCCESS,
    }, f"{environment}: _SUCCESS awaited in the wrong place"


def check_a_failed_run_fails_the_pipeline_with_its_message(
    framework: Framework, root: Path, pipeline: str, parameters: dict[str, Any], message: str, error: str
) -> dict[str, str]:
    bridge = Bridge("prod", failed(message))
    outcome = run(framework, root, pipeline, parameters, bridge)
    start = "Start ingest" if pipeline == "pl_ingest_window" else "Start backfill"
    assert outcome.path[0] == start and outcome.path[1:4] == POLL, outcome.path
    assert outcome.marker is None, "a failed run must not go on to wait for _SUCCESS"
    assert outcome.failure is not None, f"{pipeline} did not fail: {outcome.path}"
    instance_id = bridge.calls[1][1].removeprefix("runs/").split("?")[0]
    assert outcome.failure["message"] == f"{message} (run {instance_id})", (
        f"{pipeline} fails with {outcome.failure['message']!r}, not the run's own message"
    )
    assert outcome.failure["errorCode"] == error, outcome.failure
    return outcome.failure


# --- the pipelines as they are ----------------------------------------------------------------


@pytest.mark.parametrize("environment", sorted(CONTAINERS))
def test_the_daily_trigger_lands_a_window_and_awaits_the_marker_the_run_wrote(
    adf_framework: Framework, environment: str
) -> None:
    check_ingest_lands_where_the_run_says(adf_framework, ADF, environment)


def test_a_dry_run_awaits_the_dry_run_marker(adf_framework: Framework) -> None:
    check_ingest_lands_where_the_run_says(adf_framework, ADF, "stage", dry_run=True)


def test_a_failed_ingest_fails_the_pipeline_with_the_runs_error_class_source_window_and_request_id(
    adf_framework: Framework,
) -> None:
    failure = check_a_failed_run_fails_the_pipeline_with_its_message(
        adf_framework, ADF, "pl_ingest_window", trigger_parameters(), GATEWAY_FAILURE, "GatewayError"
    )
    message = failure["message"]
    assert failure["errorCode"] == "GatewayError"
    for piece in (
        "GatewayError",
        "source=orders",
        "page=3",
        f"request_id={REQUEST_ID}",
        "AccessDeniedException",
    ):
        assert piece in message, f"{piece!r} is not in the pipeline's failure message {message!r}"
    assert "prod-orders-20240101T000000Z_20240102T000000Z" in message, "the message names the window"


def test_a_terminated_run_fails_the_pipeline_saying_so(adf_framework: Framework) -> None:
    bridge = Bridge("dev", lambda _: ("Terminated", "stopped by an operator: wrong window"))
    outcome = run(adf_framework, ADF, "pl_ingest_window", trigger_parameters(), bridge)
    assert outcome.path[-2:] == ["Record report", "Run failed"] and outcome.marker is None
    assert outcome.failure == {
        "errorCode": "RunTerminated",
        "message": "stopped by an operator: wrong window (run dev-orders-20240101T000000Z_20240102T000000Z)",
    }


def test_a_status_route_that_answers_an_error_fails_the_pipeline_before_the_marker(
    adf_framework: Framework,
) -> None:
    """An instance purged mid-run (404): the activity fails as ADF fails it, and nothing goes on."""

    class Gone(Bridge):
        def call(self, method: str, function: str, body: str | None) -> tuple[int, dict[str, Any]]:
            if method == "GET":
                self.calls.append((method, function, None))
                return 404, {"error": "NotFoundError", "message": "no run with id ..."}
            return super().call(method, function, body)

    outcome = run(adf_framework, ADF, "pl_ingest_window", trigger_parameters(), Gone("dev", landed("dev")))
    assert outcome.path == ["Start ingest", "Back off", "Poll run"]
    assert outcome.marker is None and outcome.failure is not None and outcome.failure["errorCode"] == "3608"


def test_backfill_sends_a_backfill_request_and_finishes_when_the_run_completes(
    adf_framework: Framework,
) -> None:
    parameters = {
        "source": "orders",
        "windowStart": "2024-01-01T00:00:00Z",
        "windowEnd": "2024-02-01T00:00:00Z",
    }
    result = {"source": "orders", "windows": [], "landed": 31, "skipped": 0, "records": 31 * 86400}
    bridge = Bridge("dev", lambda _: ("Completed", result))
    outcome = run(adf_framework, ADF, "pl_backfill", parameters, bridge)
    assert outcome.failure is None and outcome.marker is None
    assert outcome.path == ["Start backfill", *POLL * (RUNNING_POLLS + 1)]
    (method, function, body), *polls = bridge.calls
    assert (method, function) == ("POST", "backfill")
    assert set(body) <= _aliases(BackfillRequest), (
        f"the route refuses unknown fields {set(body) - _aliases(BackfillRequest)}"
    )
    request = BackfillRequest.model_validate(body)
    assert (iso_duration(request.every), request.max_parallel, request.mode) == ("P1D", 4, "skip-if-complete")
    assert (request.pipeline_run_id, request.pipeline_name) == (RUN_ID, "pl_backfill")
    assert Window.parse(request.start, request.end) == Window.parse(
        parameters["windowStart"], parameters["windowEnd"]
    )
    assert {f for _, f, _ in polls} == {
        "runs/backfill-dev-orders-20240101T000000Z_20240201T000000Z-P1D?report=always"
    }


def test_a_failed_backfill_fails_the_pipeline_naming_the_first_failed_window(
    adf_framework: Framework,
) -> None:
    # The backfill orchestrator's own summary of its failed windows.
    message = str(
        RunFailed(
            f"2 of 31 windows failed; first: 2024-01-05T00:00:00Z: {GATEWAY_FAILURE}; "
            "rerun the backfill to retry only those"
        )
    )
    parameters = {
        "source": "orders",
        "windowStart": "2024-01-01T00:00:00Z",
        "windowEnd": "2024-02-01T00:00:00Z",
    }
    failure = check_a_failed_run_fails_the_pipeline_with_its_message(
        adf_framework, ADF, "pl_backfill", parameters, message, "RunFailed"
    )
    assert (
        "first: 2024-01-05T00:00:00Z" in failure["message"]
        and f"request_id={REQUEST_ID}" in failure["message"]
    )


# --- the checks catch the defects of issue 15 -------------------------------------------------


def _broken_copy(tmp_path: Path, pipeline: str, change: Callable[[dict[str, Any]], None]) -> Path:
    root = tmp_path / "adf"
    shutil.copytree(ADF, root)
    path = root / "pipeline" / f"{pipeline}.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document["properties"])
    path.write_text(json.dumps(document), encoding="utf-8")
    return root


def _activity(properties: dict[str, Any], name: str) -> dict[str, Any]:
    stack = list(properties["activities"])
    while stack:
        activity = stack.pop()
        if activity["name"] == name:
            return activity
        props = activity.get("typeProperties", {})
        for key in ("activities", "ifTrueActivities", "ifFalseActivities"):
            stack += props.get(key, [])
    raise AssertionError(f"no activity {name!r}")


def _marker_from_parameters(properties: dict[str, Any]) -> None:
    """The pipeline as it was: the marker's place rebuilt from parameters with dev defaults."""
    properties["parameters"] |= {
        "environment": {"type": "string", "defaultValue": "dev"},
        "container": {"type": "string", "defaultValue": "landing"},
    }
    folder = (
        "@concat(if(pipeline().parameters.dryRun, '_dryrun/', ''), pipeline().parameters.environment, '/', "
        "pipeline().parameters.source, '/', "
        "formatDateTime(pipeline().parameters.windowStart, 'yyyyMMddTHHmmssZ'), '_', "
        "formatDateTime(pipeline().parameters.windowEnd, 'yyyyMMddTHHmmssZ'))"
    )
    _activity(properties, "Check _SUCCESS")["typeProperties"]["dataset"]["parameters"] = {
        "container": {"value": "@pipeline().parameters.container", "type": "Expression"},
        "folderPath": {"value": folder, "type": "Expression"},
        "fileName": "_SUCCESS",
    }


def _poll_without_report(properties: dict[str, Any]) -> None:
    """Polling the plain status route: a failed run answers 500, which ADF turns into its own error."""
    poll = _activity(properties, "Poll run")["typeProperties"]["functionName"]
    poll["value"] = poll["value"].removesuffix("?report=always")


def _fail_with_the_error_class_only(properties: dict[str, Any]) -> None:
    fail = _activity(properties, "Run failed")["typeProperties"]
    fail["message"] = {
        "value": "@concat('run failed: ', json(variables('report')).error)",
        "type": "Expression",
    }


def test_the_marker_check_fails_when_the_pipeline_rebuilds_the_path_from_parameters(
    adf_framework: Framework, tmp_path: Path
) -> None:
    root = _broken_copy(tmp_path, "pl_ingest_window", _marker_from_parameters)
    check_ingest_lands_where_the_run_says(adf_framework, root, "dev")  # the defaults happen to fit dev
    for environment in ("stage", "prod"):
        with pytest.raises(AssertionError, match="wrong place"):
            check_ingest_lands_where_the_run_says(adf_framework, root, environment)


@pytest.mark.parametrize(
    "change", [_poll_without_report, _fail_with_the_error_class_only], ids=lambda f: f.__name__
)
def test_the_failure_check_fails_when_the_runs_message_is_lost(
    adf_framework: Framework, tmp_path: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    root = _broken_copy(tmp_path, "pl_ingest_window", change)
    with pytest.raises(AssertionError, match=r"not the run's own message|did not fail"):
        check_a_failed_run_fails_the_pipeline_with_its_message(
            adf_framework, root, "pl_ingest_window", trigger_parameters(), GATEWAY_FAILURE, "GatewayError"
        )


def test_an_unchanged_copy_passes_both_checks(adf_framework: Framework, tmp_path: Path) -> None:
    """The broken copies above fail for their change, not for being copies."""
    root = _broken_copy(tmp_path, "pl_ingest_window", lambda properties: copy.deepcopy(properties))
    check_ingest_lands_where_the_run_says(adf_framework, root, "prod")
    check_a_failed_run_fails_the_pipeline_with_its_message(
        adf_framework, root, "pl_ingest_window", trigger_parameters(), GATEWAY_FAILURE, "GatewayError"
    )
