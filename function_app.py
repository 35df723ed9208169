"""Azure Functions entry point: wires HTTP triggers, the orchestrator and activities to `shared`.

No business logic lives here; see shared/api.py and shared/ingest/.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared import api, probe_schedule
from shared.ingest import activities, orchestrators
from shared.runtime import current

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="ingest", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@app.durable_client_input(client_name="client")
async def ingest(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await api.start_ingest(req, client)


@app.route(route="backfill", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@app.durable_client_input(client_name="client")
async def backfill(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await api.start_backfill(req, client)


@app.route(route="probe", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def probe(req: func.HttpRequest) -> func.HttpResponse:
    return api.run_probe(req)


@app.route(route="runs/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@app.durable_client_input(client_name="client")
async def run_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await api.run_status(req, client)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return api.health()


# Off unless PROBE_SCHEDULE is set: without it there is no timer function at all (the host would
# refuse a trigger whose %PROBE_SCHEDULE% does not resolve). The host reads the schedule from that
# app setting: a timer's schedule may name an app setting wrapped in percent signs (Azure
# Functions timer trigger reference, "Configuration"), so changing it needs no deployment.
if os.environ.get("PROBE_SCHEDULE", "").strip():

    @app.timer_trigger(schedule="%PROBE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
    def scheduled_probe(timer: func.TimerRequest) -> None:
        probe_schedule.run_probes(current())


@app.orchestration_trigger(context_name="context")
def ingest_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    return (yield from orchestrators.ingest_orchestrator(context))


@app.orchestration_trigger(context_name="context")
def backfill_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    return (yield from orchestrators.backfill_orchestrator(context))


@app.activity_trigger(input_name="payload")
def plan_window(payload: dict[str, Any]) -> dict[str, Any]:
    return activities.plan_window(payload)


@app.activity_trigger(input_name="payload")
def fetch_part(payload: dict[str, Any]) -> dict[str, Any]:
    return activities.fetch_part(payload)


@app.activity_trigger(input_name="payload")
def finalize(payload: dict[str, Any]) -> dict[str, Any]:
    return activities.finalize(payload)


@app.activity_trigger(input_name="payload")
def record_backfill(payload: dict[str, Any]) -> dict[str, Any]:
    return activities.record_backfill(payload)
