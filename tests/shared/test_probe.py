"""The probe names the step that broke, for each way a connection can be misconfigured."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localcloud import Fault
from localcloud.stack import orders_source
from shared import runtime
from shared.probe import probe

from fixtures import App


@pytest.fixture
def identity_knobs(app: App) -> Iterator[None]:
    identity = app.stack.cloud.identity
    yield
    identity.audience_override = None


def run(app: App) -> dict[str, object]:
    return probe(runtime.current(), "orders").to_json()


def test_a_healthy_connection_passes_every_step_and_lands_nothing(app: App) -> None:
    report = run(app)
    assert report["ok"] is True
    assert [s["status"] for s in report["steps"]] == ["ok", "ok", "ok", "ok"]  # type: ignore[union-attr]
    assert all(s["ms"] >= 0 for s in report["steps"])  # type: ignore[union-attr]
    assert app.landing.list_names("_probe") == []
    assert app.landing.list_names("dev") == []


def test_wrong_audience_fails_at_sts(app: App, identity_knobs: None) -> None:
    app.stack.cloud.identity.audience_override = "api://someone-else"
    report = run(app)
    assert report["failedStep"] == "sts"
    assert "api://apigw-adf-bridge" in str(report["steps"])


def test_role_not_trusted_fails_at_sts(app: App) -> None:
    untrusted = "arn:aws:iam::123456789012:role/not-trusting-us"
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, auth={"role_arn": untrusted}))
    report = run(app)
    assert report["failedStep"] == "sts"
    assert "AccessDenied" in str(report["steps"]) and untrusted in str(report["steps"])


def test_bad_signature_fails_at_the_gateway(app: App) -> None:
    # Credentials scoped to the wrong region: the signature cannot match what the gateway computes.
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, auth={"region": "eu-central-1"}))
    report = run(app)
    assert report["failedStep"] == "gateway"
    assert "403" in str(report["steps"]) and "InvalidSignatureException" in str(report["steps"])


def test_gateway_403_fails_at_the_gateway(app: App) -> None:
    app.stack.cloud.gateway.inject(Fault("status", status=403), times=1)
    report = run(app)
    assert report["failedStep"] == "gateway"
    assert "HTTP 403" in str(report["steps"])


def test_missing_container_fails_at_blob(app: App) -> None:
    app.set_env(LANDING_CREATE_CONTAINER="false", LANDING_CONTAINER="missingcontainer")
    report = run(app)
    assert report["failedStep"] == "blob"
    assert "missingcontainer" in str(report["steps"])


def test_probe_cli_reports_the_step_and_exits_non_zero(app: App) -> None:
    app.stack.cloud.gateway.inject(Fault("status", status=403), times=1)
    result = app.cli("probe", "--source", "orders")
    assert result.returncode == 1
    assert result.stderr.startswith("error: probe failed at step gateway")
