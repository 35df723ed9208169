"""`python -m localcloud serve` (make serve): function_app's HTTP API over real HTTP, as ADF calls it.

Each host is its own process, driven with httpx: POST a run, poll the Location it answers
with until 200, and stop it with a signal as Ctrl-C or a service manager would.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localcloud import localsettings
from localcloud.functionshost import ServeProcess
from localcloud.stack import FOREIGN_CREDENTIAL_VARS
from shared.landing.verify import read_records, verify_window

from fixtures import HOUR, App

INGEST = {"source": "orders", "window": {"from": HOUR[0], "to": HOUR[1]}, "pipelineRunId": "serve-run-1"}
POLL_SECONDS = 0.1  # ADF waits Retry-After (10 s) between polls; a test need not
RUN_SECONDS = 120.0


def clean_env(without: Collection[str] = ()) -> dict[str, str]:
    """This process's environment minus credentials and minus the settings a file should supply."""
    return {k: v for k, v in os.environ.items() if k not in FOREIGN_CREDENTIAL_VARS and k not in without}


def poll(client: httpx.Client, location: str) -> tuple[httpx.Response, int]:
    """GET the status URL until it stops answering 202, as ADF's Web activity does; (last answer, 202s)."""
    deadline = time.monotonic() + RUN_SECONDS
    running = 0
    while True:
        response = client.get(location)
        if response.status_code != 202 or time.monotonic() > deadline:
            return response, running
        running += 1
        assert response.headers["Location"] == location
        time.sleep(POLL_SECONDS)


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def served() -> Iterator[ServeProcess]:
    """One host over its own local stack for the read-mostly tests of this module."""
    with ServeProcess("--port", "0", "--local-stack", env=clean_env()) as process:
        yield process


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


def test_post_ingest_answers_202_with_location_and_polling_it_ends_in_200_with_the_summary(
    served: ServeProcess, client: httpx.Client
) -> None:
    started = client.post(f"{served.url}/api/ingest", json=INGEST)
    assert started.status_code == 202, started.text
    body = started.json()
    location = started.headers["Location"]
    assert location == body["statusUrl"] == f"{served.url}/api/runs/{body['id']}"
    assert int(started.headers["Retry-After"]) > 0

    finished, _ = poll(client, location)
    assert finished.status_code == 200, finished.text
    summary = finished.json()
    assert summary["runtimeStatus"] == "Completed"
    assert summary["records"] == 3600
    assert summary["pipelineRunId"] == "serve-run-1"
    assert summary["success"].endswith("/_SUCCESS") and summary["parts"]
    # The Durable management URL from the 202 works too, as under func start.
    management = client.get(body["management"]["statusQueryGetUri"])
    assert management.status_code == 200 and management.json()["runtimeStatus"] == "Completed"


@pytest.mark.parametrize(
    ("body", "field"),
    [(b"{not json", "body"), (b'{"source": "orders"}', "window"), (b'{"window": {}}', "source")],
)
def test_a_bad_body_is_a_400_naming_the_field(
    served: ServeProcess, client: httpx.Client, body: bytes, field: str
) -> None:
    response = client.post(f"{served.url}/api/ingest", content=body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["field"] == field


def test_an_unknown_run_is_a_404(served: ServeProcess, client: httpx.Client) -> None:
    response = client.get(f"{served.url}/api/runs/no-such-run")
    assert response.status_code == 404
    assert "no-such-run" in response.json()["message"]


def test_the_routes_are_func_starts_paths_and_methods(served: ServeProcess, client: httpx.Client) -> None:
    lines = re.findall(r"^\s+(\w+): \[(\w+)\] (\S+)$", served.output, re.MULTILINE)
    listed = {name: (methods, url) for name, methods, url in lines}
    assert listed == {
        "backfill": ("POST", f"{served.url}/api/backfill"),
        "health": ("GET", f"{served.url}/api/health"),
        "ingest": ("POST", f"{served.url}/api/ingest"),
        "probe": ("POST", f"{served.url}/api/probe"),
        "run_status": ("GET", f"{served.url}/api/runs/{{id}}"),
    }
    health = client.get(f"{served.url}/api/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    wrong_method = client.get(f"{served.url}/api/ingest")
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"
    assert client.get(f"{served.url}/api/nothing-here").status_code == 404


def test_probe_over_http_reports_every_step(served: ServeProcess, client: httpx.Client) -> None:
    response = client.post(f"{served.url}/api/probe", json={"source": "orders"})
    assert response.status_code == 200, response.text
    assert [s["name"] for s in response.json()["steps"]] == ["identity", "sts", "gateway", "blob"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_host_and_everything_it_started_with_exit_0(sig: signal.Signals) -> None:
    process = ServeProcess("--port", "0", "--local-stack", env=clean_env()).start()
    stack_line = process.wait_for(lambda line: line.startswith("[serve] settings: local stack"))
    azurite_port = int(re.search(r"Azurite :(\d+)", stack_line)[1])  # type: ignore[index]
    workdir = Path(re.search(r"catalog (\S+)", stack_line)[1]).parent  # type: ignore[index]
    host_port = int(process.url.rsplit(":", 1)[1])
    assert not refuses(azurite_port) and workdir.is_dir()

    assert process.stop(sig) == 0, process.output
    assert refuses(host_port), "the HTTP host still listens"
    assert refuses(azurite_port), "Azurite (a child process) outlived the host"
    assert not workdir.exists(), "the stack's data directory was left behind"
    assert "[serve] stopped" in process.output
    assert "Traceback" not in process.output


def _settings_file(app: App, path: Path) -> tuple[Path, dict[str, str]]:
    values = {**localsettings.example_values(), **app.env}
    localsettings.write(path, values)
    return path, values


def test_settings_come_from_local_settings_json_when_given(app: App, tmp_path: Path) -> None:
    path, values = _settings_file(app, tmp_path / "local.settings.json")
    with (
        ServeProcess("--port", "0", "--settings", str(path), env=clean_env(set(values))) as process,
        httpx.Client(timeout=30) as http,
    ):
        assert f"[serve] settings: {path}" in process.output
        started = http.post(f"{process.url}/api/ingest", json=INGEST)
        assert started.status_code == 202, started.text
        finished, _ = poll(http, started.headers["Location"])
        assert finished.status_code == 200, finished.text
    # It landed where the file said: this test's container, in this test's Azurite.
    assert verify_window(app.landing, finished.json()["prefix"]).ok


@pytest.mark.slow
def test_a_run_cut_off_by_shutdown_resumes_when_the_host_starts_again_exactly_once(
    app: App, tmp_path: Path
) -> None:
    path, values = _settings_file(app, tmp_path / "local.settings.json")
    env = clean_env(set(values))
    gateway = app.stack.cloud.gateway
    gateway.latency_ms = 20  # 216 pages: several seconds, so the signal lands mid-run
    six_hours: dict[str, Any] = {"from": "2024-01-01T00:00:00Z", "to": "2024-01-01T06:00:00Z"}
    with httpx.Client(timeout=30) as http:
        first = ServeProcess("--port", "0", "--settings", str(path), "--grace", "0", env=env).start()
        started = http.post(f"{first.url}/api/ingest", json={"source": "orders", "window": six_hours})
        assert started.status_code == 202, started.text
        instance_id = started.json()["id"]
        assert gateway.wait_for_requests(30, RUN_SECONDS), "the run never got going"
        assert first.stop(signal.SIGINT) == 0, first.output
        assert "left 1 run(s) unfinished; they resume on the next start" in first.output

        gateway.latency_ms = 0
        with ServeProcess("--port", "0", "--settings", str(path), env=env) as second:
            assert f"resumed 1 run(s) left active: {instance_id}" in second.output
            finished, _ = poll(http, f"{second.url}/api/runs/{instance_id}")
    assert finished.status_code == 200, finished.text
    summary = finished.json()
    assert summary["records"] == 6 * 3600
    ids = Counter(record["id"] for record in read_records(app.landing, summary["prefix"]))
    assert len(ids) == 6 * 3600 and set(ids.values()) == {1}
    assert verify_window(app.landing, summary["prefix"]).ok
