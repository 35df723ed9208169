"""Hostile request bodies and catalogs: never a 5xx, never a traceback, always the field named."""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import api
from shared.config.catalog import load_catalog
from shared.config.settings import Settings
from shared.durable.journal import JournalStore
from shared.errors import ConfigError, PageFormatError, UnsafeUrlError
from shared.gateway.client import GatewayClient

from fixtures import HOUR, App, catalog_source, gateway_client

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


def post_drawn_bodies(
    loop: asyncio.AbstractEventLoop,
    start: Callable[[func.HttpRequest, Any], Awaitable[func.HttpResponse]],
    route: str,
    bodies: st.SearchStrategy[Any],
) -> DurableClientDouble:
    """Every drawn body POSTed to a starting handler, each answer checked; returns the client it used."""
    client = DurableClientDouble()

    @EXAMPLES
    @given(body=bodies)
    def run(body: Any) -> None:
        check(loop.run_until_complete(start(post(route, body), client)))

    run()
    return client


def test_ingest_bodies(app: App, loop: asyncio.AbstractEventLoop) -> None:
    client = post_drawn_bodies(loop, api.start_ingest, "ingest", ingest_bodies | raw_bodies)
    # Only well-formed windows of the known source ever reached the durable client.
    assert all(i.startswith("dev-orders-") or i.startswith("dryrun-dev-orders-") for i in client.started)


def test_backfill_bodies(app: App, loop: asyncio.AbstractEventLoop) -> None:
    post_drawn_bodies(loop, api.start_backfill, "backfill", backfill_bodies | raw_bodies)


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


# Finding 8 of issue 17: each of these used to surface as "unexpected …" or an HTTP 500.


def _gateway_client(handler: Callable[[httpx.Request], httpx.Response]) -> GatewayClient:
    src = catalog_source(
        "https://api.example.com", pagination={"type": "next_url"}, retry={"max_attempts": 1}
    )
    return gateway_client(src, httpx.MockTransport(handler))


def test_a_page_with_an_integer_over_4300_digits_is_a_page_format_error() -> None:
    body = b'{"items": [{"id": ' + b"7" * 5000 + b'}], "links": {}}'
    client = _gateway_client(
        lambda request: httpx.Response(200, content=body, headers={"x-amzn-requestid": "r-9"})
    )
    with pytest.raises(PageFormatError) as caught:
        client.fetch(None, 4)
    assert caught.value.page == 4 and caught.value.request_id == "r-9"
    assert "integer too long" in str(caught.value)
    assert not caught.value.retryable  # the same page would fail the same way


def test_a_next_link_with_port_99999_is_refused_naming_the_page() -> None:
    link = b'{"items": [], "links": {"next": "https://api.example.com:99999/dev/orders?p=2"}}'
    client = _gateway_client(
        lambda request: httpx.Response(200, content=link, headers={"x-amzn-requestid": "r-2"})
    )
    with pytest.raises(UnsafeUrlError) as caught:
        client.fetch(None, 2)
    assert caught.value.page == 2 and "refusing to follow" in str(caught.value)


def test_a_deeply_nested_request_body_is_a_400_naming_the_body(
    app: App, loop: asyncio.AbstractEventLoop
) -> None:
    raw = b"[" * 200_000 + b"]" * 200_000
    response = loop.run_until_complete(api.start_ingest(post("ingest", raw), DurableClientDouble()))  # type: ignore[arg-type]
    assert response.status_code == 400
    assert json.loads(response.get_body())["field"] == "body"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("0001-01-01T00:00:00+01:00", "0001-01-02T00:00:00Z"),
        ("9999-12-31T00:00:00Z", "9999-12-31T23:59:59-01:00"),
    ],
)
def test_years_1_and_9999_with_an_offset_are_a_400(
    app: App, loop: asyncio.AbstractEventLoop, start: str, end: str
) -> None:
    body = {"source": "orders", "window": {"from": start, "to": end}}
    response = loop.run_until_complete(api.start_ingest(post("ingest", body), DurableClientDouble()))  # type: ignore[arg-type]
    assert response.status_code == 400
    assert "outside years 0001-9999" in json.loads(response.get_body())["reason"]


def test_a_catalog_path_naming_a_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a folder, not a TOML file \(set SOURCE_CATALOG_PATH\)"):
        load_catalog(tmp_path)


def test_an_uncreatable_run_state_dir_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(ConfigError, match="RUN_STATE_DIR"):
        JournalStore(tmp_path / "file" / "state")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("garbage", "malformed"),
        ("AccountName=a;AccountKey=not base64!!", "not base64"),
        ("AccountKey=c2VjcmV0", "names no account"),
        ("BlobEndpoint=ftp://x;AccountName=a;AccountKey=c2VjcmV0", "not an http(s) URL"),
        ("BlobEndpoint=http://127.0.0.1:99999/a;AccountName=a;AccountKey=c2VjcmV0", "invalid port"),
        ("AccountName=a", "no credential"),
    ],
)
def test_a_malformed_landing_connection_string_is_a_config_error_naming_it(value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"LANDING_CONNECTION_STRING": value})
    assert "LANDING_CONNECTION_STRING" in str(caught.value) and reason in str(caught.value)
    assert "not base64!!" not in str(caught.value) and "c2VjcmV0" not in str(caught.value)
