"""Entra identity -> AWS STS AssumeRoleWithWebIdentity -> cached, refreshable AWS credentials.

No AWS key exists anywhere: the Function App's managed identity gets an Entra token for the
audience the AWS OIDC provider trusts, and STS exchanges it for short-lived credentials.
botocore's RefreshableCredentials refreshes them ahead of expiry and makes concurrent callers
share one refresh, so a process makes one STS call per role and session per credential lifetime.
Its refresh windows (15 minutes, 10 mandatory) are scaled down for short sessions: a 900-second
session, the shortest STS grants, would otherwise be renewed on every request.
When API Gateway refuses credentials before they expire (revoked sessions), `SessionCredentials`
renews them once, and only once however many requests saw the refusal.

Session audit: the RoleSessionName is derived from the ADF pipeline run id, so CloudTrail shows
which run did what. `SourceIdentity` and session tags are *not* set here, because
AssumeRoleWithWebIdentity has no such request parameters: STS takes them only from the web
identity token's claims `https://aws.amazon.com/source_identity` and `https://aws.amazon.com/tags`,
which the identity provider (an Entra claims-mapping policy) must issue. Whatever STS reports
back as SourceIdentity is logged with the assumed role.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import boto3
import botocore
from azure.core.credentials import TokenCredential
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import IdentityError, StsError, first_line
from shared.identity.entra import entra_credential
from shared.observability import tracing
from shared.observability.redaction import redact, register_secret

log = logging.getLogger(__name__)

# STS's own pattern is ASCII: Python's Unicode \w would let "é" through to a ValidationError.
_SESSION_NAME_CHARS = re.compile(r"[^\w+=,.@-]", re.ASCII)
_SESSION_NAME_MAX = 64
_SESSION_DIGEST_CHARS = 8

# What the operator should check for each STS refusal; the codes are STS's own. The message
# around the advice already names the role ARN, the audience and the session.
_THROTTLED = (
    "STS is throttling AssumeRoleWithWebIdentity for the account; retried with backoff. If it "
    "persists, fewer concurrent runs (each run is its own session) or a higher STS quota"
)
_STS_ADVICE = {
    "InvalidIdentityToken": (
        "STS did not accept the Entra token: check that the account has an IAM OIDC provider for the "
        "token's issuer (https://sts.windows.net/<tenant-id>/), that the provider's audience list "
        "contains the audience above, and that its signing keys are Entra's current ones"
    ),
    "AccessDenied": (
        "the role's trust policy does not let this identity assume it: check that the role exists, "
        "trusts the OIDC provider as Federated principal, and that its '<provider>:aud' condition "
        "equals the audience above and '<provider>:sub' the managed identity's object id"
    ),
    "ExpiredTokenException": (
        "the Entra token had already expired when STS checked it: check the worker's clock and that "
        "the identity endpoint (IDENTITY_ENDPOINT) hands out current tokens"
    ),
    "IDPCommunicationError": (
        "STS could not reach Entra's OIDC endpoints to verify the token; transient, retried with backoff"
    ),
    "Throttling": _THROTTLED,
    "ThrottlingException": _THROTTLED,
    "ValidationError": (
        "STS refused the request parameters: check auth.session_duration_seconds (900-43200 and at "
        "most the role's MaxSessionDuration)"
    ),
    "RegionDisabledException": (
        "STS is not activated in this region for the account: activate it in the IAM account "
        "settings or set auth.region to an active one"
    ),
}
_RETRYABLE_STS_CODES = {"IDPCommunicationError", "Throttling", "ThrottlingException"}
# botocore's standard retry mode retries IDPCommunicationError and throttling with jittered
# exponential backoff; attempts include the first call.
STS_ATTEMPTS = 4


def session_name_for(run_id: str | None, fallback: str) -> str:
    """A RoleSessionName STS accepts ([\\w+=,.@-]{2,64}), derived deterministically from the run id.

    An ADF run id (a GUID) passes through unchanged, so CloudTrail can be searched by it. An id
    that had to be altered (characters STS refuses, too long or too short) keeps its readable
    start and gains a digest of the original, so two different ids never share a session name.
    """
    original = run_id if run_id and run_id.strip() else fallback
    name = _SESSION_NAME_CHARS.sub("-", original)
    if name != original or not 2 <= len(name) <= _SESSION_NAME_MAX:
        digest = hashlib.sha256(original.encode("utf-8")).hexdigest()[:_SESSION_DIGEST_CHARS]
        name = f"{name[: _SESSION_NAME_MAX - _SESSION_DIGEST_CHARS - 1]}-{digest}"
    return name


@dataclass(frozen=True)
class RoleSession:
    """Which role to assume, as whom, for which audience; the cache key for credentials."""

    role_arn: str
    session_name: str
    audience: str
    region: str
    duration_seconds: int = 3600


# botocore's own defaults, for sessions of an hour and more; a third and a sixth of shorter ones.
_ADVISORY_REFRESH_SECONDS = 15 * 60
_MANDATORY_REFRESH_SECONDS = 10 * 60
# How long a signer reuses the values it read: reading them checks the expiry in the local time
# zone (dateutil), about 3% of a page's CPU, while refreshes happen minutes ahead of expiry.
_REREAD_SECONDS = 1.0


class CredentialProvider:
    """Hands out refreshable AWS credentials per role session, assuming each role once per lifetime."""

    def __init__(
        self, token_source: TokenCredential | None = None, *, sts_attempts: int = STS_ATTEMPTS
    ) -> None:
        self._token_source = token_source
        self._sts_attempts = sts_attempts
        self._lock = threading.Lock()
        self._cache: dict[RoleSession, RefreshableCredentials] = {}
        # One lock per session serialises its STS calls, so threads meeting a cold cache or the
        # same refused credentials wait for one AssumeRoleWithWebIdentity instead of each making one.
        self._session_locks: dict[RoleSession, threading.Lock] = {}
        self._sts_clients: dict[str, Any] = {}

    @property
    def token_source(self) -> TokenCredential:
        """The app's Entra credential, shared with everything else that needs Entra tokens."""
        with self._lock:
            if self._token_source is None:
                self._token_source = entra_credential()
            return self._token_source

    def credentials(self, session: RoleSession) -> RefreshableCredentials:
        """Cached credentials for the session; the first call per session assumes the role."""
        cached = self._cached(session)
        if cached is not None:
            return cached
        with self._session_lock(session):
            # Another thread may have assumed the role while this one waited for the lock.
            return self._cached(session) or self._assume(session)

    def renew(self, session: RoleSession, refused: ReadOnlyCredentials) -> None:
        """Replace credentials the API refused before their expiry (revoked): assume the role again.

        Does nothing when the cache already holds other credentials, so many requests refused
        with the same credentials cost one STS call between them.
        """
        with self._session_lock(session):
            cached = self._cached(session)
            # Read outside self._lock: botocore may refresh here, which needs an Entra token.
            if cached is None or cached.get_frozen_credentials().access_key == refused.access_key:
                self._assume(session)

    def for_session(self, session: RoleSession) -> SessionCredentials:
        """The session's credentials as a request signer uses them.

        Assumes the role now if needed, so an STS refusal fails the caller before any request.
        """
        self.credentials(session)
        return SessionCredentials(self, session)

    def prepare(self, region: str) -> None:
        """Build what assuming a role in `region` needs that costs CPU but no network: the Entra
        credential (azure-identity's import) and the region's STS client (botocore's service
        model). About a quarter of a second, paid once per process, before any request."""
        self.token_source  # noqa: B018 - built on first read
        self._sts(region)

    def prepared(self, region: str) -> bool:
        """Whether `region`'s STS client and the Entra credential are built."""
        with self._lock:
            return self._token_source is not None and region in self._sts_clients

    def entra_token(self, audience: str) -> str:
        """An Entra access token for the audience (the AWS OIDC provider's client id)."""
        try:
            token = str(self.token_source.get_token(f"{audience}/.default").token)
        except Exception as exc:  # azure-identity raises several unrelated types
            raise IdentityError(
                f"could not get an Entra token for audience {audience!r}: {first_line(exc)}; check the "
                "Function App's managed identity (IDENTITY_ENDPOINT/IDENTITY_HEADER, AZURE_CLIENT_ID) "
                "and that the audience is an application ID URI in the tenant"
            ) from None
        register_secret(token)
        return token

    def _cached(self, session: RoleSession) -> RefreshableCredentials | None:
        with self._lock:
            return self._cache.get(session)

    def _session_lock(self, session: RoleSession) -> threading.Lock:
        with self._lock:
            return self._session_locks.setdefault(session, threading.Lock())

    def _assume(self, session: RoleSession) -> RefreshableCredentials:
        """Call STS and cache the result; the caller holds the session's lock."""
        fetch = self._fetcher(session)
        fresh = RefreshableCredentials.create_from_metadata(
            metadata=fetch(),
            refresh_using=fetch,
            method="assume-role-with-web-identity",
            advisory_timeout=min(_ADVISORY_REFRESH_SECONDS, session.duration_seconds // 3),
            mandatory_timeout=min(_MANDATORY_REFRESH_SECONDS, session.duration_seconds // 6),
        )
        with self._lock:
            self._cache[session] = fresh
        return fresh

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
                        retries={"mode": "standard", "total_max_attempts": self._sts_attempts},
                    ),
                )
                self._sts_clients[region] = client
            return client

    def _fetcher(self, session: RoleSession) -> Any:
        def fetch() -> dict[str, str]:
            token = self.entra_token(session.audience)
            with tracing.sts_call(session.role_arn, session.region, session.session_name) as call:
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
                        f"could not reach AWS STS to assume {session.role_arn}: {first_line(exc)}; check "
                        "AWS_ENDPOINT_URL_STS / AWS_REGION and outbound network access",
                        code="EndpointUnreachable",
                        role_arn=session.role_arn,
                        retryable=True,
                    ) from None
                call.answered(answer)
            creds = answer["Credentials"]
            for value in (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]):
                register_secret(value)
            log.info(
                "assumed role %s as %s (source identity %s, expires %s)",
                session.role_arn,
                answer.get("AssumedRoleUser", {}).get("Arn", session.session_name),
                answer.get("SourceIdentity") or "none",
                creds["Expiration"].isoformat(),
            )
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        return fetch


class SessionCredentials:
    """One role session's credentials as a SigV4 signer sees them: current values, renewable."""

    def __init__(self, provider: CredentialProvider, session: RoleSession) -> None:
        self._provider = provider
        self._session = session
        self._frozen: ReadOnlyCredentials | None = None
        self._read_at = 0.0

    @property
    def role_arn(self) -> str:
        return self._session.role_arn

    def current(self) -> ReadOnlyCredentials:
        """The values to sign with now (refreshed by botocore ahead of expiry)."""
        now = time.monotonic()
        if self._frozen is None or now - self._read_at >= _REREAD_SECONDS:
            self._frozen = self._provider.credentials(self._session).get_frozen_credentials()
            self._read_at = now
        return self._frozen

    def renew(self, refused: ReadOnlyCredentials) -> None:
        """The API refused `refused`: assume the role again unless someone already has."""
        self._frozen = None
        self._provider.renew(self._session, refused)


def _sts_error(exc: ClientError, session: RoleSession) -> StsError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    # Redacted before it is cut: STS quotes the token it refused, and half a token is no longer
    # one the scrubber knows.
    detail = redact(first_line(str(error.get("Message", ""))))[:300]
    advice = _STS_ADVICE.get(code, "see the STS error code")
    return StsError(
        f"STS refused AssumeRoleWithWebIdentity for role {session.role_arn} (audience "
        f"{session.audience!r}, session {session.session_name}): {code}: {detail} -- {advice}",
        code=code,
        role_arn=session.role_arn,
        retryable=code in _RETRYABLE_STS_CODES,
        request_id=exc.response.get("ResponseMetadata", {}).get("RequestId"),
    )
