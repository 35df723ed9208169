"""Fixtures for the localcloud stand-in tests: one shared cloud, fresh gateways, real clients.

Helpers are handed out as fixtures (not imported from here) so this file can later be
merged into tests/conftest.py without breaking any import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import boto3
import botocore
import httpx
import pytest
from azure.identity import ManagedIdentityCredential
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from localcloud import GatewayServer, IssuedCredentials, LocalCloud

# Variables that would steer azure-identity, msal or boto3 away from the local stand-ins.
_FOREIGN_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AZURE_CLIENT_ID",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)


def _point_env_at(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the real SDKs talk to ``cloud`` and nothing else."""
    for name in _FOREIGN_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in cloud.env().items():
        monkeypatch.setenv(name, value)


def _managed_identity_token(audience: str = LocalCloud.audience) -> str:
    """A token from azure-identity's ManagedIdentityCredential (env must point at the cloud)."""
    with ManagedIdentityCredential() as credential:
        token: str = credential.get_token(f"{audience}/.default").token
        return token


def _sts_client() -> Any:
    """boto3 STS client as the app builds it: unsigned, endpoint from AWS_ENDPOINT_URL_STS.

    Retries are off so injected throttling surfaces instead of being retried away.
    """
    config = Config(
        signature_version=botocore.UNSIGNED, retries={"mode": "standard", "total_max_attempts": 1}
    )
    return boto3.client("sts", region_name=LocalCloud.region, config=config)


@pytest.fixture(scope="session")
def cloud() -> Iterator[LocalCloud]:
    """One LocalCloud for the whole session (RSA key generation is the slow part)."""
    with LocalCloud() as local_cloud:
        yield local_cloud


@pytest.fixture
def cloud_env(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> LocalCloud:
    """The shared cloud with the process environment pointing at it for this test."""
    _point_env_at(cloud, monkeypatch)
    return cloud


@pytest.fixture
def mi_token(cloud_env: LocalCloud) -> Callable[..., str]:
    """``mi_token(audience=...)``: a token from azure-identity's ManagedIdentityCredential."""
    return _managed_identity_token


@pytest.fixture
def sts(cloud_env: LocalCloud) -> Any:
    """A boto3 STS client built from the environment, as the app builds it."""
    return _sts_client()


@pytest.fixture
def sts_factory(cloud_env: LocalCloud) -> Callable[[], Any]:
    """Builds STS clients from the environment as it is when called."""
    return _sts_client


@pytest.fixture(scope="session")
def aws_credentials(cloud: LocalCloud) -> Credentials:
    """Credentials obtained through the real chain: managed identity -> STS."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _point_env_at(cloud, monkeypatch)
        answer = _sts_client().assume_role_with_web_identity(
            RoleArn=cloud.role_arn,
            RoleSessionName="localcloud-tests",
            WebIdentityToken=_managed_identity_token(),
        )
    issued = answer["Credentials"]
    return Credentials(issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"])


@pytest.fixture
def disposable_credentials(cloud: LocalCloud) -> IssuedCredentials:
    """Credentials straight from the shared store, for tests that revoke or expire them."""
    return cloud.credentials.issue(cloud.role_arn, "disposable", lifetime_seconds=900)


@pytest.fixture
def gateway(cloud: LocalCloud) -> Iterator[GatewayServer]:
    """A fresh gateway (no datasets) trusting the shared cloud's credentials and JWTs."""
    server = GatewayServer(cloud.credentials, region=cloud.region)
    server.jwt = cloud.gateway.jwt
    with server:
        yield server


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """A keep-alive httpx client, as the app uses (shared: building one costs ~40 ms of TLS setup)."""
    with httpx.Client(timeout=5) as client:
        yield client


def _as_botocore(credentials: Credentials | IssuedCredentials) -> Credentials:
    """Accept store-issued credentials wherever botocore ones are expected."""
    if isinstance(credentials, Credentials):
        return credentials
    return Credentials(credentials.access_key_id, credentials.secret_access_key, credentials.session_token)


def _sign(
    method: str,
    url: str,
    credentials: Credentials | IssuedCredentials,
    *,
    region: str = LocalCloud.region,
    service: str = "execute-api",
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Headers botocore's SigV4Auth adds for ``method url``: the client side of the contract."""
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    SigV4Auth(_as_botocore(credentials), service, region).add_auth(request)
    return dict(request.headers)


@pytest.fixture
def sign() -> Callable[..., dict[str, str]]:
    """``sign(method, url, credentials, region=..., service=..., headers=...)`` -> headers."""
    return _sign


SignedGet = Callable[..., httpx.Response]


@pytest.fixture
def signed_get(http: httpx.Client, aws_credentials: Credentials) -> SignedGet:
    """``signed_get(url, params=None, credentials=..., headers=...)`` -> response."""

    def get(
        url: str,
        params: Mapping[str, str] | None = None,
        credentials: Credentials | IssuedCredentials = aws_credentials,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        full_url = str(httpx.URL(url, params=params)) if params else url
        return http.get(full_url, headers=_sign("GET", full_url, credentials, headers=headers))

    return get
