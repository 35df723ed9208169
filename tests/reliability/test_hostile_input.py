"""Hostile request bodies and catalogs: never a 5xx, never a traceback, always the field named."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import api
from shared.config.catalog import load_catalog
from shared.errors import ConfigError

from fixtures import HOUR, App

EXAMPLES = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
instants = st.sampled_from(
    [*HOUR, "2024-02-30T00:00:00Z", "../../etc", "2024-01-01", "9999-12-31T23:59:59Z", ""]
) | st.text(max_size=30)
sources = st.sampled_from(["orders", "../orders", "orders/../../x", "ORDERS", "", "a" * 200]) | st.text(
    max_size=20
)
ingest_bodies = st.fixed_dictionaries(
    {"source": sources, "window": st.fixed_dictionaries({"from": instants, "to": instants}) | json_values},
    optional={
        "mode": st.sampled_from(["replace", "append", ""]) | json_values,
        "dryRun": json_values,
        "pipelineRunId": json_values,
        "pipelineName": json_values,
        "extra": json_values,
    },
)
backfill_bodies = st.fixed_dictionaries(
    {
        "source": sources,
        "from": instants,
        "to": instants,
        "every": st.sampled_from(["PT1H", "P1D", "PT0S", "soon", "P1000Y"]) | json_values,
    },
    optional={"maxParallel": json_values | st.integers(-5, 100)},
)
raw_bodies = st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode())


class DurableClientDouble:
    """Stands in for the Durable client: these tests are about what happens before it is used."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def get_status(self, instance_id: str) -> DurableOrchestrationStatus:
        return DurableOrchestrationStatus()

    async def get_status_by(self, **_: Any) -> list[Any]:
        return []

    async def start_new(self, name: str, instance_id: str, input_: Any) -> str:
        self.started.append(instance_id)
        return instance_id

    def get_client_response_links(self, request: Any, instance_id: str) -> dict[str, str]:
        return {}


def check(response: func.HttpResponse) -> None:
    body = response.get_body().decode()
    assert response.status_code < 500, body
    document = json.loads(body)
    assert isinstance(document, dict)
    assert "Traceback" not in body
    if response.status_code == 400:
        assert document["field"] and document["reason"]


@pytest.fixture
def loop(event_loop_runner: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    return event_loop_runner


def post(route: str, body: Any) -> func.HttpRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return func.HttpRequest("POST", f"https://x.example/api/{route}", body=raw)


def test_ingest_bodies(app: App, loop: asyncio.AbstractEventLoop) -> None:
    client = DurableClientDouble()

    @EXAMPLES
    @given(body=ingest_bodies | raw_bodies)
    def run(body: Any) -> None:
        check(loop.run_until_complete(api.start_ingest(post("ingest", body), client)))  # type: ignore[arg-type]

    run()
    # Only well-formed windows of the known source ever reached the durable client.
    assert all(i.startswith("dev-orders-") or i.startswith("dryrun-dev-orders-") for i in client.started)


def test_backfill_bodies(app: App, loop: asyncio.AbstractEventLoop) -> None:
    client = DurableClientDouble()

    @EXAMPLES
    @given(body=backfill_bodies | raw_bodies)
    def run(body: Any) -> None:
        check(loop.run_until_complete(api.start_backfill(post("backfill", body), client)))  # type: ignore[arg-type]

    run()


def test_probe_bodies(app: App) -> None:
    @EXAMPLES
    @given(body=st.fixed_dictionaries({"source": sources.filter(lambda s: s != "orders")}) | raw_bodies)
    def run(body: Any) -> None:
        check(api.run_probe(post("probe", body)))

    run()


def test_status_ids(app: App, loop: asyncio.AbstractEventLoop) -> None:
    client = DurableClientDouble()

    @EXAMPLES
    @given(instance_id=st.text(max_size=80))
    def run(instance_id: str) -> None:
        request = func.HttpRequest(
            "GET", "https://x.example/api/runs/x", body=b"", route_params={"id": instance_id}
        )
        response = loop.run_until_complete(api.run_status(request, client))  # type: ignore[arg-type]
        assert response.status_code == 404
        check(response)

    run()


toml_scalars = (
    st.booleans()
    | st.integers(-10, 10**6)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "aws_iam",
            "none",
            "api_key",
            "jwt",
            "next_token",
            "offset",
            "dev",
            "prod",
            "https://a.example",
            "PT1H",
            "P1D",
        ]
    )
)
catalog_keys = st.sampled_from(
    [
        "environment",
        "base_url",
        "path",
        "auth",
        "type",
        "role_arn",
        "region",
        "audience",
        "pagination",
        "page_size",
        "window",
        "segment",
        "rate_limit",
        "output",
        "container",
        "records_path",
        "x",
    ]
)
toml_tables = st.recursive(
    toml_scalars, lambda inner: st.dictionaries(catalog_keys, inner, max_size=6), max_leaves=20
)


def test_catalog_loader_only_ever_raises_config_error(tmp_path: Path) -> None:
    @EXAMPLES
    @given(
        sources=st.dictionaries(
            st.text(max_size=12) | st.sampled_from(["orders", "../x"]), toml_tables, max_size=3
        )
    )
    def run(sources: dict[str, Any]) -> None:
        from localcloud.stack import catalog_toml

        path = tmp_path / "catalog.toml"
        try:
            text = catalog_toml({k: v if isinstance(v, dict) else {"x": v} for k, v in sources.items()})
            tomllib.loads(text)
        except (TypeError, tomllib.TOMLDecodeError, ValueError):
            text = "[sources.broken\n"
        path.write_text(text)
        try:
            load_catalog(path)
        except ConfigError as exc:
            assert str(path) in str(exc)

    run()
