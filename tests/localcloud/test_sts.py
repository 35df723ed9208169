"""The local STS is driven by real boto3 and fails exactly where AWS STS would."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
import httpx
import pytest

from localcloud import LocalCloud, StsServer

_NS = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/"}


def _assume(sts: Any, token: str, role_arn: str = LocalCloud.role_arn, **extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = sts.assume_role_with_web_identity(
        RoleArn=role_arn,
        RoleSessionName=extra.pop("RoleSessionName", "orders-run"),
        WebIdentityToken=token,
        **extra,
    )
    return answer


def _parse(response: httpx.Response) -> ET.Element:
    return ET.fromstring(response.content)  # noqa: S314 - our own stand-in's output


def _error_code(sts: Any, token: str, **kwargs: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        _assume(sts, token, **kwargs)
    code: str = raised.value.response["Error"]["Code"]
    return code


def test_boto3_exchanges_a_managed_identity_token(
    cloud_env: LocalCloud, sts: Any, mi_token: Callable[[], str]
) -> None:
    calls_before = cloud_env.sts.call_count

    answer = _assume(sts, mi_token(), DurationSeconds=1800)

    issued = answer["Credentials"]
    assert issued["AccessKeyId"].startswith("ASIA") and len(issued["AccessKeyId"]) == 20
    remaining = (issued["Expiration"] - datetime.now(UTC)).total_seconds()
    assert 1790 < remaining <= 1800
    assert answer["AssumedRoleUser"]["Arn"] == "arn:aws:sts::123456789012:assumed-role/adf-ingest/orders-run"
    assert answer["AssumedRoleUser"]["AssumedRoleId"].endswith(":orders-run")
    assert answer["SubjectFromWebIdentityToken"] == cloud_env.identity.object_id
    assert answer["Audience"] == cloud_env.audience
    assert answer["Provider"].endswith(f":oidc-provider/sts.windows.net/{cloud_env.identity.tenant_id}/")

    stored = cloud_env.credentials.get(issued["AccessKeyId"])
    assert stored is not None
    assert (stored.secret_access_key, stored.session_token) == (
        issued["SecretAccessKey"],
        issued["SessionToken"],
    )
    assert (stored.role_arn, stored.session_name) == (cloud_env.role_arn, "orders-run")

    call = cloud_env.sts.calls[-1]
    assert cloud_env.sts.call_count == calls_before + 1
    assert (call.outcome, call.role_arn, call.session_name) == ("Success", cloud_env.role_arn, "orders-run")
    assert (call.subject, call.audience, call.access_key_id) == (
        cloud_env.identity.object_id,
        cloud_env.audience,
        issued["AccessKeyId"],
    )


def test_second_role_trusts_the_same_identity(sts: Any, mi_token: Callable[[], str]) -> None:
    answer = _assume(sts, mi_token(), role_arn=LocalCloud.orders_role_arn)

    assert "assumed-role/adf-orders-daily/" in answer["AssumedRoleUser"]["Arn"]


@pytest.mark.parametrize(
    ("knob", "value", "code"),
    [
        ("audience_override", "api://someone-else", "AccessDenied"),
        ("token_lifetime", -120, "ExpiredTokenException"),
        ("sign_with_untrusted_key", True, "InvalidIdentityToken"),
        ("issuer_override", "https://login.example.com/evil/", "InvalidIdentityToken"),
    ],
)
def test_bad_tokens_are_refused(
    cloud_env: LocalCloud,
    sts: Any,
    mi_token: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    knob: str,
    value: object,
    code: str,
) -> None:
    monkeypatch.setattr(cloud_env.identity, knob, value)
    issued_before = len(cloud_env.credentials.all())

    assert _error_code(sts, mi_token()) == code
    assert cloud_env.sts.calls[-1].outcome == code
    assert len(cloud_env.credentials.all()) == issued_before


def test_expired_token_message_names_both_times(
    cloud_env: LocalCloud, sts: Any, mi_token: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cloud_env.identity, "token_lifetime", -120)

    with pytest.raises(botocore.exceptions.ClientError) as raised:
        _assume(sts, mi_token())

    assert raised.value.response["Error"]["Message"].startswith("Token expired: current date/time ")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    ("kwargs", "code", "status"),
    [
        ({"role_arn": "arn:aws:iam::123456789012:role/not-there"}, "AccessDenied", 403),
        ({"RoleSessionName": "has spaces!"}, "ValidationError", 400),
        ({"RoleSessionName": "x" * 65}, "ValidationError", 400),
        ({"DurationSeconds": 7200}, "ValidationError", 400),
    ],
    ids=["unknown-role", "session-name-chars", "session-name-length", "duration-above-role-max"],
)
def test_bad_requests_are_refused(
    sts: Any, mi_token: Callable[[], str], kwargs: dict[str, Any], code: str, status: int
) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        _assume(sts, mi_token(), **kwargs)

    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_malformed_token_is_an_invalid_identity_token(sts: Any) -> None:
    assert _error_code(sts, "not.a.jwt") == "InvalidIdentityToken"


def test_role_trust_can_pin_the_subject(cloud_env: LocalCloud, sts: Any, mi_token: Callable[[], str]) -> None:
    pinned = "arn:aws:iam::123456789012:role/pinned-subject"
    cloud_env.sts.add_role(pinned, audiences=[cloud_env.audience], subjects=["another-principal"])

    assert _error_code(sts, mi_token(), role_arn=pinned) == "AccessDenied"

    cloud_env.sts.add_role(pinned, audiences=[cloud_env.audience], subjects=[cloud_env.identity.object_id])
    assert _assume(sts, mi_token(), role_arn=pinned)["Credentials"]["AccessKeyId"]


def _post_assume(
    http: httpx.Client, cloud: LocalCloud, token: str, session: str, extra: dict[str, str] | None = None
) -> httpx.Response:
    """AssumeRoleWithWebIdentity on the wire, for parameters botocore would not send."""
    form = {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": "2011-06-15",
        "RoleArn": cloud.role_arn,
        "RoleSessionName": session,
        "WebIdentityToken": token,
    }
    return http.post(cloud.sts.url, data={**form, **(extra or {})})


def test_duration_below_minimum_is_refused_server_side(cloud: LocalCloud, http: httpx.Client) -> None:
    # botocore refuses this client-side, so speak the wire protocol directly.
    token, _ = cloud.identity.issue_token(cloud.audience)
    response = _post_assume(http, cloud, token, "short", {"DurationSeconds": "899"})

    assert response.status_code == 400
    error = _parse(response).find("sts:Error", _NS)
    assert error is not None
    assert [error.findtext(f"sts:{name}", namespaces=_NS) for name in ("Type", "Code")] == [
        "Sender",
        "ValidationError",
    ]


def test_tags_and_source_identity_are_recorded(cloud: LocalCloud, http: httpx.Client) -> None:
    token, _ = cloud.identity.issue_token(
        cloud.audience, **{"https://aws.amazon.com/source_identity": "adf-pipeline"}
    )
    response = _post_assume(
        http, cloud, token, "tagged", {"Tags.member.1.Key": "dataset", "Tags.member.1.Value": "orders"}
    )

    assert response.status_code == 200
    result = _parse(response).find("sts:AssumeRoleWithWebIdentityResult", _NS)
    assert result is not None
    assert result.findtext("sts:SourceIdentity", namespaces=_NS) == "adf-pipeline"
    call = cloud.sts.calls[-1]
    assert (call.tags, call.source_identity) == ({"dataset": "orders"}, "adf-pipeline")


@pytest.mark.parametrize(
    ("code", "message"),
    [("IDPCommunicationError", "Couldn't retrieve verification key"), ("Throttling", "Rate exceeded")],
)
def test_injected_errors_fail_the_next_calls_only(
    cloud_env: LocalCloud, sts: Any, mi_token: Callable[[], str], code: str, message: str
) -> None:
    cloud_env.sts.inject_error(code, times=2)
    token = mi_token()

    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            _assume(sts, token)
        assert raised.value.response["Error"]["Code"] == code
        assert raised.value.response["Error"]["Message"].startswith(message)

    assert _assume(sts, token)["Credentials"]["AccessKeyId"]


def test_credential_lifetime_knob_issues_short_lived_credentials(
    cloud_env: LocalCloud, sts: Any, mi_token: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cloud_env.sts, "credential_lifetime", 30)

    issued = _assume(sts, mi_token())["Credentials"]

    remaining = (issued["Expiration"] - datetime.now(UTC)).total_seconds()
    assert 20 < remaining <= 30
    stored = cloud_env.credentials.get(issued["AccessKeyId"])
    assert stored is not None and stored.expires_at - time.time() <= 30


def test_revoke_invalidates_issued_credentials(
    cloud_env: LocalCloud, sts: Any, mi_token: Callable[[], str]
) -> None:
    key_id = _assume(sts, mi_token())["Credentials"]["AccessKeyId"]

    assert cloud_env.sts.revoke(key_id) == 1

    stored = cloud_env.credentials.get(key_id)
    assert stored is not None and stored.revoked and not stored.is_valid()


def test_unknown_action_is_refused(cloud: LocalCloud, http: httpx.Client) -> None:
    response = http.post(cloud.sts.url, data={"Action": "GetCallerIdentity", "Version": "2011-06-15"})

    assert response.status_code == 400
    assert b"<Code>InvalidAction</Code>" in response.content


def test_stopped_sts_refuses_connections(
    cloud_env: LocalCloud, monkeypatch: pytest.MonkeyPatch, mi_token: Callable[[], str], sts_factory: Any
) -> None:
    server = StsServer(cloud_env.credentials).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", server.url)
    server.stop()

    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        _assume(sts_factory(), mi_token())
