"""Shared fixtures: one local stack (stand-ins + Azurite) per session, a fresh app per test.

The app is configured only through the settings it reads in Azure (environment variables and
the catalog file); each test gets its own blob container, catalog and journal directory.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud.stack import FOREIGN_CREDENTIAL_VARS, Stack, orders_source
from shared import runtime

from fixtures import App


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("stack")) as started:
        yield started


@pytest.fixture
def cloud(stack: Stack) -> Iterator[Any]:
    """The stand-ins, with observations, faults and limits reset for this test."""
    gateway = stack.cloud.gateway
    gateway.wait_idle()
    gateway.reset_observations()
    gateway.reset_modes()
    yield stack.cloud
    gateway.reset_modes()


@pytest.fixture
def app(
    stack: Stack, cloud: Any, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[App]:
    container = "t" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:20]  # noqa: S324 - a name, not security
    catalog = tmp_path / "catalog.toml"
    stack.write_catalog({"orders": orders_source(stack.cloud.gateway_url)}, catalog)
    env = stack.app_env(catalog, container=container, state_dir=tmp_path / "state")
    for name in FOREIGN_CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    yield App(stack, env, catalog, container, tmp_path / "state", monkeypatch)
    runtime.reset()


@pytest.fixture(scope="session")
def event_loop_runner() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the session: the Durable client keeps a module-wide aiohttp session."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
