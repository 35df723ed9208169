"""`python -m localcloud up`: the stack kept running for trying the CLI by hand, and for func start.

One `up` process for the module, as a user keeps it open in one shell: the CLI runs in another
with nothing but the printed exports, the written local.settings.json holds every setting the
app reads (checked against its settings model) and a full Azurite for the Durable extension,
and the function app served over that file runs a window.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localcloud import localsettings
from localcloud.functionshost import ServeProcess
from localcloud.process import LocalProcess
from localcloud.stack import FOREIGN_CREDENTIAL_VARS
from shared.config.settings import Settings

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(r"^# ready")
HOUR = ("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z")


def clean_env(without: set[str] | None = None) -> dict[str, str]:
    drop = set(FOREIGN_CREDENTIAL_VARS) | (without or set())
    return {k: v for k, v in os.environ.items() if k not in drop}


def exports(output: str) -> dict[str, str]:
    """The `export NAME=value` lines, read back as a shell would."""
    found = {}
    for line in output.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            found[name] = shlex.split(value)[0] if value else ""
    return found


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalProcess, Path]]:
    folder = tmp_path_factory.mktemp("up")
    settings = folder / "local.settings.json"
    args = ("--write-local-settings", str(settings), "--env-file", str(folder / "stack.env"))
    with LocalProcess("up", *args, ready=READY, env=clean_env()) as process:
        yield process, settings


def test_the_cli_runs_by_hand_with_nothing_but_the_printed_exports(up: tuple[LocalProcess, Path]) -> None:
    process, _ = up
    env = exports(process.output)
    assert {"IDENTITY_ENDPOINT", "AWS_ENDPOINT_URL_STS", "LANDING_CONNECTION_STRING"} <= set(env)
    result = subprocess.run(
        [sys.executable, "-m", "shared", "ingest", "--source", "orders", "--from", HOUR[0], "--to", HOUR[1]],
        cwd=REPO,
        env={**clean_env(set(env)), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["records"] == 3600


def test_local_settings_json_holds_every_setting_and_a_full_azurite_for_func_start(
    up: tuple[LocalProcess, Path],
) -> None:
    process, path = up
    written = localsettings.read(path)
    values = written.values
    assert written.port == 7071
    # Every documented setting is there, and the app's own settings model accepts them all.
    assert set(localsettings.example_values()) <= set(values)
    settings = Settings.from_env(values)
    assert settings.landing_connection_string == values["LANDING_CONNECTION_STRING"]
    assert Path(settings.catalog_path).is_file()
    # The stand-ins, as the CLI gets them.
    for name, value in exports(process.output).items():
        assert values[name] == value, name
    # The Functions host's own settings: Python worker, and the Durable extension's storage,
    # which keeps its task hub in blobs, queues and tables.
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["DURABLE_TASK_HUB"]
    storage = dict(part.split("=", 1) for part in values["AzureWebJobsStorage"].strip(";").split(";"))
    for service in ("Blob", "Queue", "Table"):
        answer = httpx.get(f"{storage[f'{service}Endpoint']}?comp=list", timeout=5)
        assert answer.headers.get("server", "").startswith(f"Azurite-{service}"), service


def test_the_function_app_served_over_the_written_file_lands_a_window(up: tuple[LocalProcess, Path]) -> None:
    _, path = up
    values = localsettings.read(path).values
    body = {"source": "orders", "window": {"from": HOUR[0], "to": "2024-01-01T02:00:00Z"}}
    with (
        ServeProcess("--port", "0", "--settings", str(path), env=clean_env(set(values))) as served,
        httpx.Client(timeout=30) as http,
    ):
        started = http.post(f"{served.url}/api/ingest", json=body)
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        deadline = time.monotonic() + 120
        status = http.get(location)
        while status.status_code == 202 and time.monotonic() < deadline:
            time.sleep(0.1)  # the API's own polling contract (Retry-After), shortened
            status = http.get(location)
    assert status.status_code == 200, status.text
    assert status.json()["records"] == 2 * 3600


def test_up_stops_on_sigint_and_removes_what_it_wrote(tmp_path: Path) -> None:
    settings, env_file = tmp_path / "local.settings.json", tmp_path / "stack.env"
    args = ("--write-local-settings", str(settings), "--env-file", str(env_file))
    process = LocalProcess("up", *args, ready=READY, env=clean_env()).start()
    ports = [int(p) for p in re.findall(r"(?:blob|queue|table) :(\d+)", process.output)]
    assert len(ports) == 3 and settings.exists() and env_file.exists()
    assert env_file.read_text().splitlines() == [
        line for line in process.output.splitlines() if line.startswith("export ")
    ]

    assert process.stop(signal.SIGINT) == 0, process.output
    assert not settings.exists() and not env_file.exists()
    assert all(refuses(port) for port in ports), "Azurite outlived `up`"


def test_up_never_replaces_a_local_settings_json_it_did_not_write(tmp_path: Path) -> None:
    settings = tmp_path / "local.settings.json"
    localsettings.write(settings, localsettings.example_values())
    before = settings.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "localcloud", "up", "--write-local-settings", str(settings)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--force" in result.stderr
    assert settings.read_bytes() == before
