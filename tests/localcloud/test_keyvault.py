"""The Key Vault stand-in: TLS, Key Vault's bearer challenge, token checks, versioned secrets."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

from localcloud import LocalCloud
from localcloud.keyvault import VAULT_RESOURCE

API_VERSION = {"api-version": "7.5"}


@pytest.fixture(scope="module")
def vault_http(cloud: LocalCloud) -> Iterator[httpx.Client]:
    """A client that trusts only the stand-in's CA, as requests does under REQUESTS_CA_BUNDLE."""
    context = ssl.create_default_context(cafile=str(cloud.keyvault.ca_bundle))
    with httpx.Client(base_url=cloud.keyvault.url, verify=context, timeout=5) as client:
        yield client


def bearer(cloud: LocalCloud, resource: str = VAULT_RESOURCE, **claims: object) -> dict[str, str]:
    token, _ = cloud.identity.issue_token(resource, **claims)
    return {"Authorization": f"Bearer {token}"}


def test_a_request_without_a_token_gets_the_challenge_the_sdk_follows(
    cloud: LocalCloud, vault_http: httpx.Client
) -> None:
    response = vault_http.get("/secrets/anything/", params=API_VERSION)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer authorization="https://login.microsoftonline.com/{cloud.identity.tenant_id}", '
        f'resource="{VAULT_RESOURCE}"'
    )
    assert response.json()["error"]["code"] == "Unauthorized"


@pytest.mark.parametrize(
    ("resource", "claims", "status"),
    [
        ("api://apigw-adf-bridge", {}, 401),  # a token for another audience
        (VAULT_RESOURCE, {"tid": "another-tenant"}, 401),
        (VAULT_RESOURCE, {"oid": "not-in-the-access-policy"}, 403),
    ],
)
def test_only_vault_tokens_of_the_allowed_identity_read_secrets(
    cloud: LocalCloud, vault_http: httpx.Client, resource: str, claims: dict[str, object], status: int
) -> None:
    cloud.keyvault.set_secret("guarded", "value")
    response = vault_http.get(
        "/secrets/guarded/", params=API_VERSION, headers=bearer(cloud, resource, **claims)
    )
    assert response.status_code == status
    assert "value" not in response.json()


def test_a_token_signed_with_an_untrusted_key_is_refused(
    cloud: LocalCloud, vault_http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cloud.identity, "sign_with_untrusted_key", True)
    response = vault_http.get("/secrets/guarded/", params=API_VERSION, headers=bearer(cloud))
    assert response.status_code == 401


def test_secrets_are_versioned_like_key_vaults(cloud: LocalCloud, vault_http: httpx.Client) -> None:
    first = cloud.keyvault.set_secret("rotating", "one")
    cloud.keyvault.set_secret("rotating", "two")
    headers = bearer(cloud)

    latest = vault_http.get("/secrets/rotating/", params=API_VERSION, headers=headers).json()
    assert latest["value"] == "two"
    assert latest["id"].startswith(f"{cloud.keyvault.url}/secrets/rotating/")
    assert latest["attributes"]["enabled"] is True
    pinned = vault_http.get(f"/secrets/rotating/{first}", params=API_VERSION, headers=headers)
    assert pinned.json()["value"] == "one"

    missing = vault_http.get("/secrets/never-set", params=API_VERSION, headers=headers)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "SecretNotFound")
    assert vault_http.get("/secrets/rotating/", headers=headers).status_code == 400
