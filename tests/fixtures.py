"""Test support shared across the suite: the App handle a test drives, and common windows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from localcloud import StsCall
from localcloud.stack import FOREIGN_CREDENTIAL_VARS, Stack, orders_source
from shared import runtime
from shared.cli import local_engine as engine
from shared.config.catalog import Source
from shared.durable.history import TASK_SCHEDULED
from shared.durable.journal import Instance
from shared.gateway.client import GatewayClient, RunContext
from shared.gateway.pagination import paginator_for
from shared.gateway.ratelimit import TokenBucket
from shared.identity.sts import session_name_for
from shared.ingest.orchestrators import FETCH_PART, INGEST_ORCHESTRATOR
from shared.ingest.requests import IngestRequest
from shared.ingest.start import prepare_ingest
from shared.landing.blobs import Landing
from shared.landing.storage import blob_service

REPO = Path(__file__).resolve().parent.parent
HOUR = ("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z")


def run_python(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python <args>` as its own process from the repo root, its output captured as text."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stage_threads() -> list[str]:
    """Names of the landing stage's threads still alive (shared.landing.stage)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("stage ")]


def catalog_source(base_url: str, **fields: Any) -> Source:
    """The orders source as the catalog would hold it, with `fields` changed."""
    return Source.model_validate(orders_source(base_url, **fields) | {"name": "orders"})


def gateway_client(
    source: Source,
    transport: httpx.BaseTransport | None = None,
    *,
    limiter: TokenBucket | None = None,
    window_params: dict[str, str] | None = None,
) -> GatewayClient:
    """A client for `source` with no auth and no runtime: over a mock transport, or real HTTP."""
    return GatewayClient(
        source,
        paginator_for(source),
        httpx.Client(transport=transport),
        auth=None,
        limiter=limiter or TokenBucket(100, 100),
        run=RunContext("run", "instance"),
        window_params=window_params or {},
    )


@dataclass
class App:
    """The app as one test configures and drives it."""

    stack: Stack
    env: dict[str, str]
    catalog: Path
    container: str
    state_dir: Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def landing(self) -> Landing:
        return Landing(blob_service(self.stack.azurite.connection_string, None), self.container)

    def write_sources(self, **sources: dict[str, Any]) -> None:
        """Replace the catalog (the runtime re-reads it on next use)."""
        self.stack.write_catalog(sources, self.catalog)
        runtime.reset()

    def set_env(self, **values: str) -> None:
        """Change app settings for the rest of this test only."""
        self.env.update(values)
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)
        runtime.reset()

    def _process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_CREDENTIAL_VARS}
        env.update(self.env)
        return env

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `python -m shared ...` as its own process with the app's settings."""
        return run_python("-m", "shared", *args, env=self._process_env(), timeout=timeout)

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        """Start `python -m shared ...` in the background, e.g. to kill it mid-run."""
        return subprocess.Popen(
            [sys.executable, "-m", "shared", *args],
            cwd=REPO,
            env=self._process_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def ingest(self, source: str = "orders", window: tuple[str, str] = HOUR, **fields: Any) -> Instance:
        """Run the ingest orchestration in-process (same engine as the CLI)."""
        request = IngestRequest.model_validate(
            {"source": source, "window": {"from": window[0], "to": window[1]}, **fields}
        )
        instance_id, state = prepare_ingest(request, runtime.current())
        return engine(self.state_dir).run(INGEST_ORCHESTRATOR, instance_id, state.model_dump())

    def cli_json(self, *args: str) -> dict[str, Any]:
        result = self.cli(*args)
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document


def sts_calls(app: App, run_id: str) -> list[StsCall]:
    """AssumeRoleWithWebIdentity calls STS saw for this run's session."""
    session = session_name_for(run_id, "")
    return [call for call in app.stack.cloud.sts.calls if call.session_name == session]


def fetch_parts_scheduled(instance: Instance) -> int:
    """How many fetch_part activities the run scheduled (each lands up to parts_per_activity parts)."""
    return sum(1 for e in instance.history if e["EventType"] == TASK_SCHEDULED and e["Name"] == FETCH_PART)
