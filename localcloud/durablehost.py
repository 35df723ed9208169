"""A stand-in for the Durable Functions extension's HTTP API, backed by the in-process engine.

The `azure-functions-durable` client in function_app.py talks HTTP to the host (`rpcBaseUrl`:
start an orchestrator, get an instance's status, terminate it). This server answers those
calls the way the extension does, and runs the orchestrations with `shared.durable.engine.Engine`,
so the real client code, the real HTTP starter and the real orchestrator are all exercised.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from localcloud.server import LocalServer, Request, Response, json_response
from shared.cli import local_engine as app_engine
from shared.durable.engine import Engine

log = logging.getLogger(__name__)

TASK_HUB = "localhub"
_RPC = "/durabletask/"
_ENDED = ("Completed", "Failed", "Terminated")


class DurableHost(LocalServer):
    """Start/status/terminate endpoints over an Engine; each started instance runs in a thread."""

    def __init__(self, engine: Engine | None = None, state_dir: Path | None = None) -> None:
        super().__init__()
        self.engine = engine or app_engine(state_dir)
        self.starts: list[str] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def binding(self) -> str:
        """The JSON the Functions host passes as the durable client binding."""
        base = f"{self.url}/runtime/webhooks/durabletask/instances/INSTANCEID"
        query = f"taskHub={TASK_HUB}&connection=Storage&code=local-system-key"
        return json.dumps(
            {
                "taskHubName": TASK_HUB,
                "creationUrls": {
                    "createNewInstancePostUri": f"{self.url}/runtime/webhooks/durabletask/orchestrators/"
                    f"{{functionName}}[/{{instanceId}}]?{query}",
                },
                "managementUrls": {
                    "id": "INSTANCEID",
                    "statusQueryGetUri": f"{base}?{query}",
                    "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}?{query}",
                    "terminatePostUri": f"{base}/terminate?reason={{text}}&{query}",
                    "rewindPostUri": f"{base}/rewind?reason={{text}}&{query}",
                    "purgeHistoryDeleteUri": f"{base}?{query}",
                    "restartPostUri": f"{base}/restart?{query}",
                    "suspendPostUri": f"{base}/suspend?reason={{text}}&{query}",
                    "resumePostUri": f"{base}/resume?reason={{text}}&{query}",
                },
                "rpcBaseUrl": f"{self.url}{_RPC}",
                "requiredQueryStringParameters": query,
            }
        )

    def handle(self, request: Request) -> Response:
        if not request.path.startswith(_RPC):
            return json_response(404, {"message": f"no route {request.path}"})
        parts = [unquote(p) for p in request.path[len(_RPC) :].split("/")]
        if request.method == "POST" and len(parts) == 3 and parts[0] == "orchestrators":
            return self._start(parts[1], parts[2], request.body)
        if request.method == "GET" and parts == ["instances", ""]:
            return self._query(request.params())
        if request.method == "GET" and len(parts) == 2 and parts[0] == "instances":
            return self._status(parts[1])
        if (
            request.method == "POST"
            and len(parts) == 3
            and parts[0] == "instances"
            and parts[2] == "terminate"
        ):
            self.engine.terminate(parts[1])
            return Response(202)
        return json_response(404, {"message": f"no route {request.method} {request.path}"})

    def _start(self, name: str, instance_id: str, body: bytes) -> Response:
        input_: Any = json.loads(body) if body else None
        if isinstance(input_, str):
            # The Python client posts its already-serialised input as a JSON string.
            input_ = json.loads(input_)
        _, created = self.engine.start(name, instance_id, input_)
        if not created:
            # host.json sets overridableExistingInstanceStates=NonRunningStates: an active
            # instance is not replaced; the extension answers with an error.
            return json_response(409, f"An instance with ID '{instance_id}' already exists and is running.")
        thread = threading.Thread(target=self._run, args=(name, instance_id, input_), daemon=True)
        with self._lock:
            self.starts.append(instance_id)
            self._threads.append(thread)
        thread.start()
        return json_response(202, {"id": instance_id, **json.loads(self.binding())["managementUrls"]})

    def _run(self, name: str, instance_id: str, input_: Any) -> None:
        try:
            self.engine.run(name, instance_id, input_)
        except Exception:  # a runner bug must not kill the server thread silently
            log.exception("engine crashed running %s", instance_id)

    def _status(self, instance_id: str) -> Response:
        instance = self.engine.store.load(instance_id)
        if instance is None:
            return Response(404)
        body = instance.to_json()
        body.pop("history")
        return json_response(200 if instance.runtime_status in _ENDED else 202, body)

    def _query(self, params: dict[str, str]) -> Response:
        wanted = set(filter(None, params.get("runtimeStatus", "").split(",")))
        prefix = params.get("instanceIdPrefix", "")
        found = [
            _public(instance.to_json())
            for instance in self.engine.store.all()
            if instance.instance_id.startswith(prefix) and (not wanted or instance.runtime_status in wanted)
        ]
        return json_response(200, found)

    def resume(self) -> list[str]:
        """Drive on every top-level instance the journal still holds as active, as the extension
        does when its host restarts; returns their ids. (Sub-orchestrations resume with their parent.)"""
        resumed = []
        for instance in self.engine.store.all():
            if instance.runtime_status in _ENDED or instance.parent_instance_id is not None:
                continue
            thread = threading.Thread(
                target=self._run, args=(instance.name, instance.instance_id, instance.input), daemon=True
            )
            with self._lock:
                self._threads.append(thread)
            thread.start()
            resumed.append(instance.instance_id)
        return resumed

    def in_flight(self) -> int:
        """How many orchestrations are being driven right now."""
        with self._lock:
            return sum(thread.is_alive() for thread in self._threads)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Join every orchestration thread started so far, within `timeout` seconds in all;
        returns whether they all finished (for tests, the demo and a host shutting down)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)


def _public(status: dict[str, Any]) -> dict[str, Any]:
    """An instance as the status API shows it: no history unless asked for."""
    return {key: value for key, value in status.items() if key != "history"}
