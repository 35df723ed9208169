"""Credentials over a run's life: which role and session, one STS call per session, renewal of
revoked AWS credentials and rotated API keys mid-run, and STS refusals that say what to check.

Everything runs the real ingest against the stand-ins; STS calls are counted where STS sees them.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from localcloud import Dataset, Fault, LocalCloud
from localcloud.stack import orders_source
from shared import runtime
from shared.errors import RequestError, StsError
from shared.identity.sts import CredentialProvider, RoleSession, session_name_for
from shared.landing.verify import read_records

from fixtures import HOUR, App, sts_calls

STS_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)


def landed_ids(app: App, prefix: str) -> Counter[str]:
    return Counter(record["id"] for record in read_records(app.landing, prefix))


def after_page(number: int, action: Callable[[], None]) -> None:
    """Run `action` once, right after the app received the answer to its `number`-th request.

    It runs on the app's own thread between two requests, so the point is exact, not timed.
    """
    answers = itertools.count(1)

    def hook(response: httpx.Response) -> None:
        if next(answers) == number:
            action()

    runtime.current().http.event_hooks["response"].append(hook)


# --- role and session --------------------------------------------------------------------


@pytest.mark.parametrize(
    "run_id",
    [
        "0b9c3f2e-7d41-4c1a-9d7e-2f6a1b3c4d5e",  # an ADF run id
        "adf run/42:retry;1",
        "ränn-ünïcode",
        "x" * 200,
        "x",
        "   ",
    ],
)
def test_session_names_are_deterministic_and_acceptable_to_sts(run_id: str) -> None:
    name = session_name_for(run_id, "dev-orders-20240101T000000Z_20240101T010000Z")
    assert STS_SESSION_NAME.fullmatch(name), name
    assert name == session_name_for(run_id, "dev-orders-20240101T000000Z_20240101T010000Z")


def test_a_valid_run_id_is_the_session_name_and_altered_ones_stay_distinct() -> None:
    guid = "0b9c3f2e-7d41-4c1a-9d7e-2f6a1b3c4d5e"
    assert session_name_for(guid, "fallback") == guid
    assert session_name_for(None, "dev-orders-x") == "dev-orders-x"
    # Ids STS would refuse keep their readable start but never collide with each other.
    assert session_name_for("run/1", "f").startswith("run-1-")
    assert session_name_for("run/1", "f") != session_name_for("run:1", "f") != session_name_for("run-1", "f")
    long_a, long_b = "a" * 100 + "1", "a" * 100 + "2"
    assert session_name_for(long_a, "f") != session_name_for(long_b, "f")


def test_a_hostile_run_id_becomes_the_session_sts_records_and_the_manifest_names(app: App) -> None:
    # (ASCII: the run id also travels as the x-correlation-id header.)
    run_id = "adf run/42:retry;<script>"
    instance = app.ingest(pipelineRunId=run_id)
    assert instance.runtime_status == "Completed", instance.output
    (call,) = sts_calls(app, run_id)
    assert call.outcome == "Success"
    manifest = app.landing.read_json(instance.output["manifest"])
    assert manifest is not None and manifest["sessionName"] == call.session_name


@pytest.mark.parametrize(
    ("pipeline", "role"),
    [
        ("pl_orders_daily", LocalCloud.orders_role_arn),
        ("pl_adhoc", LocalCloud.role_arn),
        (None, LocalCloud.role_arn),
    ],
)
def test_a_pipeline_runs_as_its_mapped_role(app: App, pipeline: str | None, role: str) -> None:
    run_id = f"run-{pipeline}"
    instance = app.ingest(pipelineRunId=run_id, pipelineName=pipeline)
    assert instance.runtime_status == "Completed", instance.output
    (call,) = sts_calls(app, run_id)
    assert (call.role_arn, call.outcome) == (role, "Success")
    # Every page was signed with the credentials STS issued for that role.
    assert {r.access_key_id for r in app.stack.cloud.gateway.requests} == {call.access_key_id}
    manifest = app.landing.read_json(instance.output["manifest"])
    assert manifest is not None and manifest["roleArn"] == role


def test_an_unmapped_pipeline_is_refused_when_the_source_requires_a_role(app: App) -> None:
    source = orders_source(app.stack.cloud.gateway_url)
    source["auth"]["require_pipeline_role"] = True
    app.write_sources(orders=source)
    calls_before = app.stack.cloud.sts.call_count
    with pytest.raises(RequestError) as refused:
        app.ingest(pipelineName="pl_adhoc")
    assert refused.value.http_status == 400
    assert refused.value.field == "pipelineName"
    assert "'pl_adhoc' has no role mapped" in str(refused.value)
    assert app.stack.cloud.sts.call_count == calls_before
    assert app.ingest(pipelineName="pl_orders_daily").runtime_status == "Completed"


# --- one STS call per session ------------------------------------------------------------


def test_a_thousand_pages_in_ten_parts_and_three_executions_cost_one_sts_call(app: App) -> None:
    # One record per page keeps 1,000 pages cheap; parts of 100 pages, continue_as_new every 4 parts.
    app.write_sources(
        orders=orders_source(
            app.stack.cloud.gateway_url,
            pagination={"page_size": 1},
            rate_limit={"requests_per_second": 100_000, "burst": 1000},
            output={"pages_per_part": 100, "parts_per_execution": 4},
        )
    )
    window = ("2024-01-01T00:00:00Z", "2024-01-01T00:16:40Z")  # 1,000 records at 3600/hour
    instance = app.ingest(window=window, pipelineRunId="run-1000-pages")
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["pages"] == 1000 and len(instance.output["parts"]) == 10
    assert len(sts_calls(app, "run-1000-pages")) == 1
    assert len({r.access_key_id for r in app.stack.cloud.gateway.requests}) == 1


def test_the_shortest_session_sts_grants_is_not_renewed_on_every_request(app: App) -> None:
    # botocore renews 15 minutes before expiry: a 900-second session is always inside that window.
    source = orders_source(app.stack.cloud.gateway_url, pagination={"page_size": 10})
    source["auth"] = {**source["auth"], "session_duration_seconds": 900}
    app.write_sources(orders=source)
    instance = app.ingest(window=("2024-01-01T00:00:00Z", "2024-01-01T00:10:00Z"), pipelineRunId="run-900")
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["pages"] >= 60
    assert [c.outcome for c in sts_calls(app, "run-900")] == ["Success"]


# --- renewal mid-run ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["expired at the gateway", "revoked at STS"])
def test_credentials_refused_mid_run_are_renewed_once_and_no_page_is_lost(app: App, how: str) -> None:
    cloud = app.stack.cloud
    if how == "expired at the gateway":
        cloud.gateway.inject(Fault("expired_credentials", page=15))
    else:
        after_page(15, cloud.sts.revoke)
    run_id = f"run-renewal-{how}"
    instance = app.ingest(pipelineRunId=run_id)
    assert instance.runtime_status == "Completed", instance.output
    assert [c.outcome for c in sts_calls(app, run_id)] == ["Success", "Success"]
    refused = [r for r in cloud.gateway.requests if r.status == 403]
    assert [r.error_type for r in refused] == ["ExpiredTokenException"]
    ids = landed_ids(app, instance.output["prefix"])
    assert set(ids) == cloud.gateway.expected_ids("/dev/orders", *HOUR) and max(ids.values()) == 1


def test_requests_refused_with_the_same_credentials_at_once_cost_one_sts_call(app: App) -> None:
    cloud = app.stack.cloud
    provider = CredentialProvider()
    session = RoleSession(cloud.role_arn, "run-renew-together", cloud.audience, cloud.region)
    refused = provider.credentials(session).get_frozen_credentials()
    start = threading.Barrier(8)

    def renew(_: int) -> str:
        start.wait()
        provider.renew(session, refused)
        return str(provider.credentials(session).get_frozen_credentials().access_key)

    with ThreadPoolExecutor(8) as pool:
        renewed = set(pool.map(renew, range(8)))
    assert len(renewed) == 1 and refused.access_key not in renewed
    assert len(sts_calls(app, "run-renew-together")) == 2


def test_credentials_refused_again_after_renewal_fail_the_run_saying_what_to_check(app: App) -> None:
    cloud = app.stack.cloud
    cloud.gateway.inject(Fault("expired_credentials", page=3), times=2)
    instance = app.ingest(pipelineRunId="run-refused-twice")
    assert instance.runtime_status == "Failed"
    assert "HTTP 403 ExpiredTokenException" in instance.output
    assert f"credentials of role {cloud.role_arn} even after they were renewed through STS" in instance.output
    assert len(sts_calls(app, "run-refused-twice")) == 2
    assert cloud.gateway.count(status=403) == 2, "renewed once, then neither the client nor Durable retries"


def test_an_api_key_rotated_mid_run_is_picked_up_without_a_failed_run(app: App) -> None:
    cloud = app.stack.cloud
    path, secret = "/dev/orders-rotated", "orders-rotated-key"
    cloud.publish_keyed(
        path, Dataset(name="orders-rotated"), auth="aws_iam+api_key", key="key-before", secret=secret
    )
    source = orders_source(cloud.gateway_url, path="/orders-rotated")
    source["auth"]["api_key_secret"] = secret
    app.write_sources(orders=source)
    reads_before = cloud.keyvault.reads(secret)
    after_page(10, lambda: cloud.rotate_api_key(secret, "key-after"))
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    assert [r.error_type for r in cloud.gateway.requests if r.status != 200] == ["ForbiddenException"]
    # Read at the start, and once more when the gateway refused the cached key; the resent
    # request was signed again with the new key in it (else: InvalidSignatureException).
    assert cloud.keyvault.reads(secret) - reads_before == 2
    ids = landed_ids(app, instance.output["prefix"])
    assert set(ids) == cloud.gateway.expected_ids(path, *HOUR) and max(ids.values()) == 1


# --- STS refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "value", "code", "advice"),
    [
        ("sign_with_untrusted_key", True, "InvalidIdentityToken", "IAM OIDC provider for the token's issuer"),
        (
            "audience_override",
            "api://someone-else",
            "AccessDenied",
            "trust policy does not let this identity",
        ),
        ("token_lifetime", -100, "ExpiredTokenException", "check the worker's clock"),
    ],
)
def test_sts_refusals_fail_the_run_naming_role_audience_and_what_to_check(
    app: App, monkeypatch: pytest.MonkeyPatch, knob: str, value: Any, code: str, advice: str
) -> None:
    cloud = app.stack.cloud
    monkeypatch.setattr(cloud.identity, knob, value)  # undone after the test
    instance = app.ingest(pipelineRunId=f"run-{code}")
    assert instance.runtime_status == "Failed"
    message = instance.output
    assert f"STS refused AssumeRoleWithWebIdentity for role {cloud.role_arn}" in message
    assert f"audience '{cloud.audience}'" in message
    assert f"{code}: " in message and advice in message
    assert [c.outcome for c in sts_calls(app, f"run-{code}")] == [code], "a permanent refusal is not retried"
    assert cloud.gateway.requests == []


@pytest.mark.parametrize("code", ["IDPCommunicationError", "Throttling"])
def test_transient_sts_errors_are_retried_with_backoff_and_the_run_succeeds(app: App, code: str) -> None:
    app.stack.cloud.sts.inject_error(code, times=2)
    instance = app.ingest(pipelineRunId=f"run-{code}")
    assert instance.runtime_status == "Completed", instance.output
    assert [c.outcome for c in sts_calls(app, f"run-{code}")] == [code, code, "Success"]


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        ("IDPCommunicationError", "could not reach Entra's OIDC endpoints"),
        ("Throttling", "STS is throttling AssumeRoleWithWebIdentity"),
    ],
)
def test_transient_sts_errors_that_persist_are_retryable_and_say_so(app: App, code: str, advice: str) -> None:
    cloud = app.stack.cloud
    cloud.sts.inject_error(code, times=1)
    session = RoleSession(cloud.role_arn, "run-persisting", cloud.audience, cloud.region)
    with pytest.raises(StsError) as failed:
        CredentialProvider(sts_attempts=1).credentials(session)
    assert failed.value.retryable and failed.value.code == code
    assert f"role {cloud.role_arn} (audience '{cloud.audience}', session run-persisting)" in str(failed.value)
    assert advice in str(failed.value)
