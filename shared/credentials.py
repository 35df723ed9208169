"""Entra identity -> AWS STS AssumeRoleWithWebIdentity -> cached, refreshable AWS credentials.

No AWS key exists anywhere: the Function App's managed identity gets an Entra token for the
audience the AWS OIDC provider trusts, and STS exchanges it for short-lived credentials.
botocore's RefreshableCredentials refreshes them ahead of expiry and makes concurrent callers
share one refresh, so a process makes one STS call per role and session per credential lifetime.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
import botocore
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import IdentityError, StsError

log = logging.getLogger(__name__)

_SESSION_NAME_CHARS = re.compile(r"[^\w+=,.@-]")

# What the operator should check for each STS refusal; the codes are STS's own.
_STS_ADVICE = {
    "InvalidIdentityToken": (
        "STS rejected the Entra token: check that the IAM OIDC provider's issuer URL matches the "
        "tenant (https://sts.windows.net/<tenant-id>/), that its client id list contains the audience, "
        "and its thumbprint"
    ),
    "ExpiredTokenException": (
        "STS says the Entra token has expired: check the worker's clock; a fresh token is "
        "requested on the next attempt"
    ),
    "AccessDenied": (
        "the role's trust policy does not allow this identity: check its "
        "'<provider>:aud' condition equals the audience and '<provider>:sub' equals the managed "
        "identity's object id, and that the role exists"
    ),
    "IDPCommunicationError": "STS could not reach the Entra OIDC endpoints; transient, retried with backoff",
    "Throttling": "STS is throttling AssumeRoleWithWebIdentity; retried with backoff",
    "ValidationError": "STS refused the request parameters (role session name or duration)",
    "RegionDisabledException": "STS is not activated in this region for the account",
}
_RETRYABLE_STS_CODES = {"IDPCommunicationError", "Throttling", "ThrottlingException"}


class TokenSource(Protocol):
    """Anything that hands out Entra access tokens for a scope (azure-identity credentials do)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


def entra_credential() -> TokenSource:
    """The app's Entra identity: managed identity when the host provides one, else the default chain."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = os.environ.get("AZURE_CLIENT_ID") or None
    # Bounded retries: an unreachable identity endpoint must fail a run in seconds, not minutes.
    transport: dict[str, Any] = {
        "retry_total": 2,
        "retry_backoff_factor": 0.5,
        "connection_timeout": 5,
        "read_timeout": 10,
    }
    if os.environ.get("IDENTITY_ENDPOINT"):
        return ManagedIdentityCredential(client_id=client_id, **transport)
    return DefaultAzureCredential(
        managed_identity_client_id=client_id, exclude_interactive_browser_credential=True, **transport
    )


def session_name_for(run_id: str | None, fallback: str) -> str:
    """A RoleSessionName STS accepts ([\\w+=,.@-]{2,64}), derived deterministically from the run id."""
    name = _SESSION_NAME_CHARS.sub("-", run_id or "")[:64]
    if len(name) < 2:
        name = _SESSION_NAME_CHARS.sub("-", fallback)[:64]
    return name.ljust(2, "-")


@dataclass(frozen=True)
class RoleSession:
    """Which role to assume, as whom, for which audience; the cache key for credentials."""

    role_arn: str
    session_name: str
    audience: str
    region: str
    duration_seconds: int = 3600


class CredentialProvider:
    """Hands out refreshable AWS credentials per role session, assuming each role once per lifetime."""

    def __init__(self, token_source: TokenSource | None = None) -> None:
        self._token_source = token_source
        self._lock = threading.Lock()
        self._cache: dict[RoleSession, RefreshableCredentials] = {}
        self._sts_clients: dict[str, Any] = {}

    def credentials(self, session: RoleSession) -> RefreshableCredentials:
        """Cached credentials for the session; the first call per session assumes the role."""
        with self._lock:
            cached = self._cache.get(session)
        if cached is not None:
            return cached
        fetch = self._fetcher(session)
        fresh = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="assume-role-with-web-identity"
        )
        with self._lock:
            # Two threads may race on a cold cache; keep the first so both share one refresh path.
            return self._cache.setdefault(session, fresh)

    def invalidate(self, session: RoleSession) -> None:
        """Forget the session's credentials (they were revoked); the next call assumes the role again."""
        with self._lock:
            self._cache.pop(session, None)

    def entra_token(self, audience: str) -> str:
        """An Entra access token for the audience (the AWS OIDC provider's client id)."""
        if self._token_source is None:
            self._token_source = entra_credential()
        try:
            return str(self._token_source.get_token(f"{audience}/.default").token)
        except Exception as exc:  # azure-identity raises several unrelated types
            raise IdentityError(
                f"could not get an Entra token for audience {audience!r}: {_first_line(exc)}; check the "
                "Function App's managed identity (IDENTITY_ENDPOINT/IDENTITY_HEADER, AZURE_CLIENT_ID) "
                "and that the audience is an application ID URI in the tenant"
            ) from None

    def _sts(self, region: str) -> Any:
        with self._lock:
            client = self._sts_clients.get(region)
            if client is None:
                # AssumeRoleWithWebIdentity is unsigned: no AWS credentials are needed or looked up.
                # AWS_ENDPOINT_URL_STS, when set, is honoured by botocore itself.
                client = boto3.session.Session().client(
                    "sts",
                    region_name=region,
                    config=Config(
                        signature_version=botocore.UNSIGNED,
                        connect_timeout=5,
                        read_timeout=15,
                        retries={"mode": "standard", "max_attempts": 4},
                    ),
                )
                self._sts_clients[region] = client
            return client

    def _fetcher(self, session: RoleSession) -> Any:
        def fetch() -> dict[str, str]:
            token = self.entra_token(session.audience)
            try:
                answer = self._sts(session.region).assume_role_with_web_identity(
                    RoleArn=session.role_arn,
                    RoleSessionName=session.session_name,
                    WebIdentityToken=token,
                    DurationSeconds=session.duration_seconds,
                )
            except ClientError as exc:
                raise _sts_error(exc, session) from None
            except BotoCoreError as exc:
                raise StsError(
                    f"could not reach AWS STS to assume {session.role_arn}: {_first_line(exc)}; check "
                    "AWS_ENDPOINT_URL_STS / AWS_REGION and outbound network access",
                    code="EndpointUnreachable",
                    role_arn=session.role_arn,
                    retryable=True,
                ) from None
            creds = answer["Credentials"]
            log.info(
                "assumed role %s as session %s (expires %s)",
                session.role_arn,
                session.session_name,
                creds["Expiration"].isoformat(),
            )
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        return fetch


def _sts_error(exc: ClientError, session: RoleSession) -> StsError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    detail = _first_line(str(error.get("Message", "")))[:300]
    advice = _STS_ADVICE.get(code, "see the STS error code")
    return StsError(
        f"STS refused AssumeRoleWithWebIdentity for role {session.role_arn} (audience {session.audience!r}): "
        f"{code}: {detail} -- {advice}",
        code=code,
        role_arn=session.role_arn,
        retryable=code in _RETRYABLE_STS_CODES,
        request_id=exc.response.get("ResponseMetadata", {}).get("RequestId"),
    )


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
