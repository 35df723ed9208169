"""The managed identity endpoint answers azure-identity and refuses what App Service refuses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from localcloud import LocalCloud
from localcloud.tokens import ExpiredTokenError, InvalidTokenError, decode_verified


def _verify(cloud: LocalCloud, token: str) -> dict[str, Any]:
    return decode_verified(
        token, cloud.identity.signing_key.public_keys(), issuer=cloud.identity.issuer, audience=cloud.audience
    )


def test_azure_identity_gets_an_entra_shaped_token(cloud_env: LocalCloud) -> None:
    identity = cloud_env.identity
    issued_before = identity.tokens_issued

    with ManagedIdentityCredential() as credential:
        access_token = credential.get_token(f"{cloud_env.audience}/.default")

    claims = _verify(cloud_env, access_token.token)
    assert claims["iss"] == f"https://sts.windows.net/{identity.tenant_id}/"
    assert claims["aud"] == cloud_env.audience
    assert claims["sub"] == claims["oid"] == identity.object_id
    assert claims["appid"] == identity.client_id
    assert claims["tid"] == identity.tenant_id
    assert claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(access_token.token)["kid"] == identity.signing_key.kid
    assert abs(access_token.expires_on - claims["exp"]) <= 1
    assert identity.tokens_issued == issued_before + 1


def test_response_has_the_app_service_shape(cloud: LocalCloud, http: httpx.Client) -> None:
    response = http.get(
        cloud.identity.endpoint,
        params={"api-version": "2019-08-01", "resource": cloud.audience},
        headers={"X-IDENTITY-HEADER": cloud.identity.identity_header},
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["expires_on"].isdigit()
    assert int(body["expires_on"]) == _verify(cloud, body["access_token"])["exp"]
    assert (body["resource"], body["token_type"], body["client_id"]) == (
        cloud.audience,
        "Bearer",
        cloud.identity.client_id,
    )


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {"api-version": "2019-08-01", "resource": "api://x"}, 401),
        ({"X-IDENTITY-HEADER": "wrong"}, {"api-version": "2019-08-01", "resource": "api://x"}, 401),
        (None, {"api-version": "2018-02-01", "resource": "api://x"}, 400),
        (None, {"api-version": "2019-08-01"}, 400),
        (None, {"api-version": "2019-08-01", "resource": "api://x", "client_id": "someone-else"}, 400),
        (None, {"api-version": "2019-08-01", "resource": "api://x", "mi_res_id": "/subscriptions/x"}, 400),
    ],
    ids=["no-header", "wrong-header", "api-version", "no-resource", "foreign-client-id", "mi_res_id"],
)
def test_bad_requests_are_refused(
    cloud: LocalCloud,
    http: httpx.Client,
    headers: dict[str, str] | None,
    params: dict[str, str],
    status: int,
) -> None:
    issued_before = cloud.identity.tokens_issued
    sent_headers = {"X-IDENTITY-HEADER": cloud.identity.identity_header} if headers is None else headers

    response = http.get(cloud.identity.endpoint, params=params, headers=sent_headers)

    assert response.status_code == status
    assert response.json()["statusCode"] == status
    assert cloud.identity.tokens_issued == issued_before


def test_azure_identity_fails_with_a_wrong_identity_header(
    mi_token: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")

    with pytest.raises(ClientAuthenticationError):
        mi_token()


def test_negative_lifetime_mints_expired_tokens(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloud.identity, "token_lifetime", -60)

    token, expires_on = cloud.identity.issue_token(cloud.audience)

    assert expires_on < time.time()
    with pytest.raises(ExpiredTokenError):
        _verify(cloud, token)


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("audience_override", "api://someone-else"),
        ("issuer_override", "https://sts.windows.net/another-tenant/"),
        ("sign_with_untrusted_key", True),
    ],
)
def test_knobs_produce_tokens_a_verifier_rejects(
    cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch, knob: str, value: object
) -> None:
    monkeypatch.setattr(cloud.identity, knob, value)

    token, _ = cloud.identity.issue_token(cloud.audience)

    with pytest.raises(InvalidTokenError):
        _verify(cloud, token)


def test_untrusted_key_reuses_the_trusted_kid(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only a real signature check can tell these tokens apart from genuine ones.
    monkeypatch.setattr(cloud.identity, "sign_with_untrusted_key", True)

    token, _ = cloud.identity.issue_token(cloud.audience)

    assert jwt.get_unverified_header(token)["kid"] == cloud.identity.signing_key.kid


def test_jwks_publishes_the_signing_key(cloud: LocalCloud) -> None:
    (jwk,) = cloud.identity.jwks["keys"]
    token, _ = cloud.identity.issue_token(cloud.audience)

    public_key = jwt.PyJWK(jwk).key
    assert (
        jwt.decode(token, public_key, algorithms=["RS256"], audience=cloud.audience)["aud"] == cloud.audience
    )
    assert (jwk["kid"], jwk["kty"], jwk["alg"]) == (cloud.identity.signing_key.kid, "RSA", "RS256")
