"""function_app.py driven the way the Functions host drives it.

HTTP triggers get `azure.functions.HttpRequest` objects and the durable client binding JSON;
the real DurableOrchestrationClient then talks HTTP to a stand-in of the Durable extension
(localcloud.durablehost), which runs the real orchestrator and activities.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

import function_app
from localcloud.durablehost import DurableHost

from fixtures import HOUR, App

# get_functions() indexes the app and may be called once per process, as the worker does.
INDEXED = {fn.get_function_name(): fn for fn in function_app.app.get_functions()}
FUNCTIONS = {name: fn.get_user_function() for name, fn in INDEXED.items()}
BASE = "https://bridge.example.net/api"


@pytest.fixture
def host(app: App) -> Iterator[DurableHost]:
    with DurableHost() as started:
        yield started
        started.wait_idle()


def call(
    loop: asyncio.AbstractEventLoop, name: str, request: func.HttpRequest, host: DurableHost | None = None
) -> func.HttpResponse:
    handler = FUNCTIONS[name]
    kwargs: dict[str, Any] = {"req": request}
    if host is not None:
        kwargs["client"] = host.binding()
    result = handler(**kwargs)
    if asyncio.iscoroutine(result):
        result = loop.run_until_complete(result)
    assert isinstance(result, func.HttpResponse)
    return result


def post_ingest(body: bytes | dict[str, Any]) -> func.HttpRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return func.HttpRequest("POST", f"{BASE}/ingest", body=raw, headers={"content-type": "application/json"})


def get_run(instance_id: str) -> func.HttpRequest:
    return func.HttpRequest("GET", f"{BASE}/runs/{instance_id}", body=b"", route_params={"id": instance_id})


def body_of(response: func.HttpResponse) -> dict[str, Any]:
    document = json.loads(response.get_body())
    assert isinstance(document, dict), "ADF needs a JSON object, never an array"
    return document


VALID = {"source": "orders", "window": {"from": HOUR[0], "to": HOUR[1]}, "pipelineRunId": "run-1"}


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (b"", "body", "empty"),
        (b"{not json", "body", "not valid JSON"),
        (b"[1, 2]", "body", "JSON object"),
        ({"window": VALID["window"]}, "source", "required"),
        ({"source": "orders"}, "window", "required"),
        ({"source": "orders", "window": {"from": HOUR[0]}}, "window.to", "required"),
        ({**VALID, "window": {"from": "soon", "to": HOUR[1]}}, "window.from", "ISO8601"),
        ({**VALID, "window": {"from": HOUR[1], "to": HOUR[0]}}, "window", "before"),
        ({**VALID, "mode": "append"}, "mode", "skip-if-complete"),
        ({**VALID, "source": "nope"}, "source", "unknown source"),
        ({**VALID, "dryRun": "maybe"}, "dryRun", "boolean"),
        ({**VALID, "extra": 1}, "extra", "not a known field"),
    ],
)
def test_bad_ingest_requests_get_400_naming_the_field(
    app: App, event_loop_runner: asyncio.AbstractEventLoop, body: Any, field: str, reason: str
) -> None:
    response = call(event_loop_runner, "ingest", post_ingest(body), host=None_host())
    assert response.status_code == 400
    document = body_of(response)
    assert document["field"] == field
    assert reason in document["reason"]
    assert "Traceback" not in response.get_body().decode()


def None_host() -> Any:
    """Validation fails before the durable client is used; a host that refuses everything proves it."""
    return _RefusingHost()


class _RefusingHost:
    def binding(self) -> str:
        return json.dumps(
            {
                "taskHubName": "x",
                "creationUrls": {},
                "managementUrls": {"id": "INSTANCEID"},
                "rpcBaseUrl": "http://127.0.0.1:9/durabletask/",
            }
        )


def test_ingest_returns_202_and_the_status_url_answers_202_then_200(
    app: App, host: DurableHost, event_loop_runner: asyncio.AbstractEventLoop
) -> None:
    started = call(event_loop_runner, "ingest", post_ingest(VALID), host)
    assert started.status_code == 202
    document = body_of(started)
    instance_id = document["id"]
    assert instance_id == "dev-orders-20240101T000000Z_20240101T010000Z"
    assert started.headers["Location"] == f"{BASE}/runs/{instance_id}" == document["statusUrl"]
    assert "statusQueryGetUri" in document["management"]

    host.wait_idle()
    finished = call(event_loop_runner, "run_status", get_run(instance_id), host)
    assert finished.status_code == 200, finished.get_body()
    result = body_of(finished)
    assert result["runtimeStatus"] == "Completed"
    assert result["records"] == 3600
    assert result["success"].endswith("/_SUCCESS")


def test_status_of_a_running_instance_is_202_with_location_and_retry_after(
    app: App, host: DurableHost, event_loop_runner: asyncio.AbstractEventLoop
) -> None:
    app.stack.cloud.gateway.latency_ms = 20  # keep the run going while we look at it
    call(event_loop_runner, "ingest", post_ingest(VALID), host)
    running = call(
        event_loop_runner, "run_status", get_run("dev-orders-20240101T000000Z_20240101T010000Z"), host
    )
    assert running.status_code == 202
    assert running.headers["Location"].endswith("/runs/dev-orders-20240101T000000Z_20240101T010000Z")
    assert int(running.headers["Retry-After"]) > 0


def test_a_second_trigger_for_the_same_window_attaches_to_the_running_instance(
    app: App, host: DurableHost, event_loop_runner: asyncio.AbstractEventLoop
) -> None:
    app.stack.cloud.gateway.latency_ms = 20

    async def both() -> list[func.HttpResponse]:
        return list(
            await asyncio.gather(
                *(FUNCTIONS["ingest"](req=post_ingest(VALID), client=host.binding()) for _ in range(2))
            )
        )

    responses = event_loop_runner.run_until_complete(both())
    assert [r.status_code for r in responses] == [202, 202]
    assert {body_of(r)["id"] for r in responses} == {"dev-orders-20240101T000000Z_20240101T010000Z"}
    assert len(host.starts) == 1


def test_a_failed_run_reports_a_readable_non_2xx_error(
    app: App, host: DurableHost, event_loop_runner: asyncio.AbstractEventLoop
) -> None:
    from localcloud import Fault

    app.stack.cloud.gateway.inject(Fault("status", status=404), times=10)
    started = body_of(call(event_loop_runner, "ingest", post_ingest(VALID), host))
    host.wait_idle()
    failed = call(event_loop_runner, "run_status", get_run(started["id"]), host)
    assert failed.status_code == 500
    document = body_of(failed)
    assert document["runtimeStatus"] == "Failed"
    assert "HTTP 404" in document["message"] and "request_id=" in document["message"]


def test_unknown_run_is_404_json(
    app: App, host: DurableHost, event_loop_runner: asyncio.AbstractEventLoop
) -> None:
    response = call(event_loop_runner, "run_status", get_run("nope"), host)
    assert response.status_code == 404
    assert "nope" in body_of(response)["message"]


def test_health_is_anonymous_and_makes_no_calls(event_loop_runner: asyncio.AbstractEventLoop) -> None:
    response = call(event_loop_runner, "health", func.HttpRequest("GET", f"{BASE}/health", body=b""))
    assert response.status_code == 200
    assert body_of(response)["status"] == "ok"
    trigger = next(b for b in INDEXED["health"].get_bindings() if b.type == "httpTrigger")
    assert str(trigger.auth_level).lower().endswith("anonymous")


def test_host_json_is_valid_for_the_functions_host() -> None:
    host_json = json.loads((Path(function_app.__file__).parent / "host.json").read_text())
    assert host_json["version"] == "2.0"
    assert host_json["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host_json["extensionBundle"]["version"].startswith("[4.")
    assert host_json["extensions"]["http"]["routePrefix"] == "api"
    names = set(INDEXED)
    assert {
        "ingest",
        "run_status",
        "health",
        "ingest_orchestrator",
        "plan_window",
        "fetch_part",
        "finalize",
    } <= names


def test_starts_beyond_the_sources_concurrency_cap_get_429_with_retry_after(
    app: App, host: DurableHost, event_loop_runner: asyncio.AbstractEventLoop
) -> None:
    from localcloud.stack import orders_source

    app.write_sources(
        orders=orders_source(app.stack.cloud.gateway_url, rate_limit={"max_concurrent_runs": 2})
    )
    app.stack.cloud.gateway.latency_ms = 20  # the first two runs are still going when the third asks
    windows = [
        ("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
        ("2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"),
        ("2024-01-01T02:00:00Z", "2024-01-01T03:00:00Z"),
    ]
    responses = [
        call(
            event_loop_runner,
            "ingest",
            post_ingest({"source": "orders", "window": {"from": a, "to": b}}),
            host,
        )
        for a, b in windows
    ]
    assert [r.status_code for r in responses] == [202, 202, 429]
    refused = body_of(responses[2])
    assert "max_concurrent_runs" in refused["message"]
    assert int(responses[2].headers["Retry-After"]) > 0
    # A trigger for a window already running still attaches, cap or not.
    again = call(
        event_loop_runner,
        "ingest",
        post_ingest({"source": "orders", "window": {"from": windows[0][0], "to": windows[0][1]}}),
        host,
    )
    assert again.status_code == 202 and body_of(again)["attached"] is True


def test_runs_of_a_source_whose_name_extends_anothers_do_not_count_against_its_cap(
    app: App, host: DurableHost, event_loop_runner: asyncio.AbstractEventLoop
) -> None:
    from localcloud.stack import orders_source

    capped = orders_source(app.stack.cloud.gateway_url, rate_limit={"max_concurrent_runs": 2})
    app.write_sources(**{"orders": capped, "orders-eu": capped})  # both ids begin dev-orders-
    app.stack.cloud.gateway.latency_ms = 20  # the first two runs are still going when the third asks
    hours = [(f"2024-01-01T0{h}:00:00Z", f"2024-01-01T0{h + 1}:00:00Z") for h in range(3)]

    def start(source: str, window: tuple[str, str]) -> int:
        body = {"source": source, "window": {"from": window[0], "to": window[1]}}
        return call(event_loop_runner, "ingest", post_ingest(body), host).status_code

    assert [start("orders-eu", hours[0]), start("orders-eu", hours[1])] == [202, 202]
    assert start("orders", hours[2]) == 202, "orders-eu's two runs are not orders'"
    assert start("orders-eu", hours[2]) == 429


def test_backfill_route_starts_a_bounded_backfill(
    app: App, host: DurableHost, event_loop_runner: asyncio.AbstractEventLoop
) -> None:
    body = {
        "source": "orders",
        "from": "2024-01-01T00:00:00Z",
        "to": "2024-01-01T03:00:00Z",
        "every": "PT1H",
        "maxParallel": 2,
    }
    started = call(
        event_loop_runner,
        "backfill",
        func.HttpRequest("POST", f"{BASE}/backfill", body=json.dumps(body).encode()),
        host,
    )
    assert started.status_code == 202
    instance_id = body_of(started)["id"]
    assert instance_id == "backfill-dev-orders-20240101T000000Z_20240101T030000Z-PT1H"
    host.wait_idle()
    done = body_of(call(event_loop_runner, "run_status", get_run(instance_id), host))
    assert done["runtimeStatus"] == "Completed"
    assert done["landed"] == 3 and done["records"] == 3 * 3600


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": "orders", "from": HOUR[0], "to": HOUR[1], "every": "soon"}, "every"),
        (
            {"source": "orders", "from": HOUR[0], "to": HOUR[1], "every": "PT1H", "maxParallel": 0},
            "maxParallel",
        ),
        # The body's own fields, not the ingest's window.from / window.to.
        ({"source": "orders", "from": "yesterday", "to": HOUR[1], "every": "PT1H"}, "from"),
        ({"source": "orders", "from": HOUR[0], "to": "2024-01-01T00:00:00", "every": "PT1H"}, "to"),
        ({"source": "orders", "from": HOUR[1], "to": HOUR[0], "every": "PT1H"}, "to"),
        # Windows longer than the source allows (31 days): the step is what to change.
        (
            {
                "source": "orders",
                "from": "2024-01-01T00:00:00Z",
                "to": "2024-06-01T00:00:00Z",
                "every": "P40D",
            },
            "every",
        ),
    ],
)
def test_bad_backfill_requests_name_the_field(
    app: App, event_loop_runner: asyncio.AbstractEventLoop, body: dict[str, Any], field: str
) -> None:
    request = func.HttpRequest("POST", f"{BASE}/backfill", body=json.dumps(body).encode())
    response = call(event_loop_runner, "backfill", request, None_host())
    assert response.status_code == 400
    assert body_of(response)["field"] == field


def test_probe_route_reports_steps(app: App, event_loop_runner: asyncio.AbstractEventLoop) -> None:
    request = func.HttpRequest("POST", f"{BASE}/probe", body=b'{"source": "orders"}')
    response = call(event_loop_runner, "probe", request)
    assert response.status_code == 200
    assert [s["name"] for s in body_of(response)["steps"]] == ["identity", "sts", "gateway", "blob"]


# --- GET /api/runs/{id}?report=always: the status an Azure Function activity can decide on ----


def get_report(instance_id: str) -> func.HttpRequest:
    return func.HttpRequest(
        "GET",
        f"{BASE}/runs/{instance_id}",
        body=b"",
        route_params={"id": instance_id},
        params={"report": "always"},
    )


def test_report_always_answers_200_while_running_and_when_done(
    app: App, host: DurableHost, event_loop_runner: asyncio.AbstractEventLoop
) -> None:
    app.stack.cloud.gateway.latency_ms = 20  # keep the run going while we look at it
    instance_id = body_of(call(event_loop_runner, "ingest", post_ingest(VALID), host))["id"]
    running = call(event_loop_runner, "run_status", get_report(instance_id), host)
    assert running.status_code == 200, "an Azure Function activity must not fail on a running run"
    assert "Location" not in running.headers
    progress = body_of(running)
    assert (progress["id"], progress["done"], progress["ok"]) == (instance_id, False, False)
    assert progress["runtimeStatus"] in {"Pending", "Running"}

    host.wait_idle()
    done = call(event_loop_runner, "run_status", get_report(instance_id), host)
    assert done.status_code == 200
    result = body_of(done)
    assert (result["runtimeStatus"], result["done"], result["ok"]) == ("Completed", True, True)
    assert result["container"] == app.container
    assert result["success"] == f"{result['prefix']}/_SUCCESS"
    assert result["prefix"] == "dev/orders/20240101T000000Z_20240101T010000Z"
    assert result["partCount"] == len(result["parts"]) >= 1


def test_report_always_hands_over_a_failed_runs_own_error_with_200(
    app: App, host: DurableHost, event_loop_runner: asyncio.AbstractEventLoop
) -> None:
    from localcloud import Fault

    app.stack.cloud.gateway.inject(Fault("status", status=404), times=10)
    instance_id = body_of(call(event_loop_runner, "ingest", post_ingest(VALID), host))["id"]
    host.wait_idle()
    reported = call(event_loop_runner, "run_status", get_report(instance_id), host)
    assert reported.status_code == 200
    report = body_of(reported)
    assert (report["runtimeStatus"], report["done"], report["ok"]) == ("Failed", True, False)
    assert report["error"] == "GatewayError"
    message = report["message"]
    assert message.startswith("GatewayError [source=orders") and "request_id=" in message
    assert instance_id in message, "the message names the run, and with it the window"
    # Without report=always the same body comes as a 500, for a Web activity's async pattern.
    plain = call(event_loop_runner, "run_status", get_run(instance_id), host)
    assert plain.status_code == 500 and body_of(plain) == report


class _StatusOnly:
    """A durable client that knows one finished instance, for what only its output decides."""

    def __init__(self, output: Any) -> None:
        from types import SimpleNamespace

        from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

        self.status = SimpleNamespace(
            runtime_status=OrchestrationRuntimeStatus.Completed, output=output, custom_status=None
        )

    async def get_status(self, instance_id: str) -> Any:
        return self.status


def test_a_window_of_thousands_of_parts_reports_counts_not_every_name(
    event_loop_runner: asyncio.AbstractEventLoop,
) -> None:
    prefix = "dev/orders/20240101T000000Z_20240102T000000Z"
    parts = [f"{prefix}/part-{i:05d}.jsonl.gz" for i in range(20_000)]
    output = {"container": "landing", "prefix": prefix, "success": f"{prefix}/_SUCCESS", "parts": parts}
    from shared import api

    response = event_loop_runner.run_until_complete(
        api.run_status(get_report("dev-orders-x"), _StatusOnly(output))  # type: ignore[arg-type]
    )
    report = body_of(response)
    assert len(response.get_body()) < 16_000, "a Web activity accepts at most 4 MB; stay far below"
    assert report["partCount"] == 20_000 and report["partsTruncated"] is True
    assert report["parts"] == parts[: len(report["parts"])] and report["success"] == f"{prefix}/_SUCCESS"
