"""AWS STS ``AssumeRoleWithWebIdentity``, validated and answered as AWS does.

boto3 reaches it through ``AWS_ENDPOINT_URL_STS``.  Only this one action is implemented;
anything else gets ``InvalidAction`` like an unknown action on the real endpoint.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from localcloud.credstore import CredentialStore, IssuedCredentials
from localcloud.errors import STS_NAMESPACE, StsError, xml_response
from localcloud.server import LocalServer, Request, Response
from localcloud.tokens import ExpiredTokenError, InvalidTokenError, decode_verified, unverified_claims

__all__ = ["RoleTrust", "StsCall", "StsServer"]

_ACTION = "AssumeRoleWithWebIdentity"
_VERSION = "2011-06-15"
_SESSION_NAME = re.compile(r"[\w+=,.@-]*", re.ASCII)
_ROLE_ARN = re.compile(r"arn:aws:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})", re.ASCII)
_TAG_FIELD = re.compile(r"Tags\.member\.(\d+)\.(Key|Value)")
_MIN_DURATION = 900
_MAX_DURATION = 43200
# AWS's own default when DurationSeconds is omitted.
_DEFAULT_DURATION = 3600
# Claims AWS reads from an OIDC token for source identity and session tags.
_SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity"
_TAGS_CLAIM = "https://aws.amazon.com/tags"

_DEFAULT_MESSAGES = {
    "IDPCommunicationError": (
        "Couldn't retrieve verification key from your identity provider, please reference "
        "AssumeRoleWithWebIdentity documentation for requirements"
    ),
    "Throttling": "Rate exceeded",
}


@dataclass(frozen=True)
class RoleTrust:
    """The parts of a role's trust policy that ``AssumeRoleWithWebIdentity`` evaluates.

    ``audiences`` and ``subjects`` model ``StringEquals`` conditions on the provider's
    ``:aud`` and ``:sub`` keys (``subjects=None`` means no ``sub`` condition); ``issuer``
    models the federated principal (``None`` trusts every registered issuer).
    """

    audiences: frozenset[str]
    subjects: frozenset[str] | None = None
    issuer: str | None = None
    max_session_duration: int = 3600


@dataclass(frozen=True)
class StsCall:
    """One ``AssumeRoleWithWebIdentity`` call as STS saw it; ``outcome`` is ``"Success"``
    or the error code returned."""

    time: float
    role_arn: str
    session_name: str
    source_identity: str | None
    tags: dict[str, str]
    subject: str | None
    audience: str | None
    outcome: str
    access_key_id: str | None = None


@dataclass(frozen=True)
class _TrustedIssuer:
    public_keys: Mapping[str, RSAPublicKey]
    client_ids: frozenset[str] | None


@dataclass
class _CallFacts:
    """What is known about a call so far; filled in as validation proceeds."""

    role_arn: str = ""
    session_name: str = ""
    source_identity: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    subject: str | None = None
    audience: str | None = None
    issuer: str = ""


class StsServer(LocalServer):
    """Local STS that checks web identity tokens and role trust before issuing credentials.

    Knobs: ``credential_lifetime`` (seconds; overrides ``DurationSeconds`` for the issued
    credentials when set, may be tiny or negative) and :meth:`inject_error`.
    """

    def __init__(self, credentials: CredentialStore | None = None) -> None:
        super().__init__()
        self.credentials = credentials or CredentialStore()
        self.credential_lifetime: float | None = None
        self._issuers: dict[str, _TrustedIssuer] = {}
        self._roles: dict[str, RoleTrust] = {}
        self._lock = threading.Lock()
        self._injected: deque[StsError] = deque()
        self._calls: list[StsCall] = []

    # -- configuration -------------------------------------------------------------------

    def add_trusted_issuer(
        self,
        issuer: str,
        public_keys: Mapping[str, RSAPublicKey],
        client_ids: Iterable[str] | None = None,
    ) -> None:
        """Register an IAM OIDC provider: its ``iss`` URL and ``{kid: public key}``.

        ``client_ids`` is the provider's audience list; ``None`` accepts any ``aud`` here
        and leaves the decision to the role trust.
        """
        self._issuers[issuer] = _TrustedIssuer(
            dict(public_keys), None if client_ids is None else frozenset(client_ids)
        )

    def add_role(
        self,
        role_arn: str,
        *,
        audiences: Iterable[str],
        subjects: Iterable[str] | None = None,
        issuer: str | None = None,
        max_session_duration: int = 3600,
    ) -> None:
        """Create (or replace) a role whose trust policy allows these audiences/subjects."""
        if not _ROLE_ARN.fullmatch(role_arn):
            raise ValueError(f"not a role ARN: {role_arn!r}")
        self._roles[role_arn] = RoleTrust(
            frozenset(audiences),
            None if subjects is None else frozenset(subjects),
            issuer,
            max_session_duration,
        )

    def inject_error(self, code: str, times: int = 1, message: str | None = None, status: int = 400) -> None:
        """Fail the next ``times`` calls with ``code`` (e.g. ``IDPCommunicationError``,
        ``Throttling``) before any validation, as an overloaded STS does."""
        error = StsError(code, message or _DEFAULT_MESSAGES.get(code, code), status)
        with self._lock:
            self._injected.extend([error] * times)

    def revoke(self, access_key_id: str | None = None) -> int:
        """Revoke one issued credential set, or all of them; returns how many."""
        return self.credentials.revoke(access_key_id)

    # -- observations --------------------------------------------------------------------

    @property
    def calls(self) -> list[StsCall]:
        """A snapshot of every call so far, oldest first."""
        with self._lock:
            return list(self._calls)

    @property
    def call_count(self) -> int:
        """How many calls reached the action (successful or not)."""
        with self._lock:
            return len(self._calls)

    # -- request handling ----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one query-protocol POST."""
        request_id = str(uuid.uuid4())
        params = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        if request.method != "POST" or params.get("Action") != _ACTION or params.get("Version") != _VERSION:
            return StsError(
                "InvalidAction",
                f"Could not find operation {params.get('Action')} for version {params.get('Version')}",
            ).to_response(request_id)
        facts = _CallFacts(
            role_arn=params.get("RoleArn", ""),
            session_name=params.get("RoleSessionName", ""),
            source_identity=params.get("SourceIdentity"),
            tags=_form_tags(params),
        )
        try:
            credentials = self._assume_role(params, facts)
        except StsError as error:
            self._record(facts, error.code)
            return error.to_response(request_id)
        self._record(facts, "Success", credentials.access_key_id)
        return xml_response(200, _success_document(credentials, facts, request_id), request_id)

    def _assume_role(self, params: Mapping[str, str], facts: _CallFacts) -> IssuedCredentials:
        with self._lock:
            injected = self._injected.popleft() if self._injected else None
        if injected is not None:
            raise injected
        duration = _validate_parameters(params)
        claims = self._verified_claims(params["WebIdentityToken"])
        facts.issuer = claims["iss"]
        facts.subject, facts.audience = _claim_str(claims, "sub"), _audience(claims)
        facts.source_identity = facts.source_identity or _claim_str(claims, _SOURCE_IDENTITY_CLAIM)
        facts.tags = {**_claim_tags(claims), **facts.tags}
        trust = self._roles.get(facts.role_arn)
        if trust is None or not _trust_allows(trust, claims):
            raise StsError("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", 403)
        if duration > trust.max_session_duration:
            raise StsError(
                "ValidationError",
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            )
        lifetime = duration if self.credential_lifetime is None else self.credential_lifetime
        return self.credentials.issue(facts.role_arn, facts.session_name, lifetime)

    def _verified_claims(self, token: str) -> dict[str, Any]:
        try:
            issuer = str(unverified_claims(token).get("iss", ""))
            trusted = self._issuers.get(issuer)
            if trusted is None:
                raise InvalidTokenError(f"No OpenIDConnect provider found in your account for {issuer}")
            claims = decode_verified(token, trusted.public_keys, issuer=issuer)
        except ExpiredTokenError as error:
            raise StsError(
                "ExpiredTokenException",
                f"Token expired: current date/time {int(time.time())} must be before "
                f"the expiration date/time {error.expires_at}",
            ) from error
        except InvalidTokenError as error:
            raise StsError("InvalidIdentityToken", str(error)) from error
        if trusted.client_ids is not None and _audience(claims) not in trusted.client_ids:
            raise StsError("InvalidIdentityToken", "Incorrect token audience")
        return claims

    def _record(self, facts: _CallFacts, outcome: str, access_key_id: str | None = None) -> None:
        call = StsCall(
            time=time.time(),
            role_arn=facts.role_arn,
            session_name=facts.session_name,
            source_identity=facts.source_identity,
            tags=facts.tags,
            subject=facts.subject,
            audience=facts.audience,
            outcome=outcome,
            access_key_id=access_key_id,
        )
        with self._lock:
            self._calls.append(call)


def _validation_error(value: object, member: str, constraint: str) -> StsError:
    return StsError(
        "ValidationError",
        f"1 validation error detected: Value {value} at '{member}' "
        f"failed to satisfy constraint: {constraint}",
    )


def _validate_parameters(params: Mapping[str, str]) -> int:
    """Check what AWS validates before looking at the token; returns DurationSeconds."""
    required = (
        ("RoleArn", "roleArn"),
        ("RoleSessionName", "roleSessionName"),
        ("WebIdentityToken", "webIdentityToken"),
    )
    for name, member in required:
        if not params.get(name):
            raise _validation_error("null", member, "Member must not be null")
    session_name = params["RoleSessionName"]
    if not 2 <= len(session_name) <= 64:
        raise _validation_error(
            f"'{session_name}'", "roleSessionName", "Member must have length between 2 and 64"
        )
    if not _SESSION_NAME.fullmatch(session_name):
        raise _validation_error(
            f"'{session_name}'",
            "roleSessionName",
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        )
    raw_duration = params.get("DurationSeconds", str(_DEFAULT_DURATION))
    try:
        duration = int(raw_duration)
    except ValueError:
        raise _validation_error(f"'{raw_duration}'", "durationSeconds", "Member must be an integer") from None
    if not _MIN_DURATION <= duration <= _MAX_DURATION:
        raise _validation_error(
            f"'{duration}'",
            "durationSeconds",
            f"Member must have value between {_MIN_DURATION} and {_MAX_DURATION}",
        )
    return duration


def _trust_allows(trust: RoleTrust, claims: Mapping[str, Any]) -> bool:
    if trust.issuer is not None and claims.get("iss") != trust.issuer:
        return False
    if _audience(claims) not in trust.audiences:
        return False
    return trust.subjects is None or claims.get("sub") in trust.subjects


def _claim_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return None if value is None else str(value)


def _audience(claims: Mapping[str, Any]) -> str | None:
    # A token may carry a list of audiences; like AWS, only a single-valued aud is matched.
    audience = claims.get("aud")
    if isinstance(audience, list):
        return str(audience[0]) if len(audience) == 1 else None
    return _claim_str(claims, "aud")


def _form_tags(params: Mapping[str, str]) -> dict[str, str]:
    members: dict[str, dict[str, str]] = {}
    for name, value in params.items():
        match = _TAG_FIELD.fullmatch(name)
        if match:
            members.setdefault(match[1], {})[match[2]] = value
    return {member["Key"]: member.get("Value", "") for member in members.values() if "Key" in member}


def _claim_tags(claims: Mapping[str, Any]) -> dict[str, str]:
    tags = claims.get(_TAGS_CLAIM, {})
    principal_tags = tags.get("principal_tags", {}) if isinstance(tags, dict) else {}
    return {
        str(key): str(values[0] if isinstance(values, list) and values else values)
        for key, values in principal_tags.items()
    }


def _iso8601(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _success_document(credentials: IssuedCredentials, facts: _CallFacts, request_id: str) -> ET.Element:
    match = _ROLE_ARN.fullmatch(credentials.role_arn)
    if match is None:  # add_role() refuses such ARNs, so this cannot happen
        raise AssertionError(credentials.role_arn)
    account, role_name = match[1], match[2]
    root = ET.Element(f"{_ACTION}Response", xmlns=STS_NAMESPACE)
    result = ET.SubElement(root, f"{_ACTION}Result")
    _add_children(
        ET.SubElement(result, "Credentials"),
        AccessKeyId=credentials.access_key_id,
        SecretAccessKey=credentials.secret_access_key,
        SessionToken=credentials.session_token,
        Expiration=_iso8601(credentials.expires_at),
    )
    _add_children(result, SubjectFromWebIdentityToken=facts.subject)
    _add_children(
        ET.SubElement(result, "AssumedRoleUser"),
        Arn=f"arn:aws:sts::{account}:assumed-role/{role_name}/{credentials.session_name}",
        AssumedRoleId=f"AROA{_role_id(credentials.role_arn)}:{credentials.session_name}",
    )
    _add_children(
        result,
        Audience=facts.audience,
        # For OIDC tokens STS names the IAM OIDC provider resource, keyed by the issuer host/path.
        Provider=f"arn:aws:iam::{account}:oidc-provider/{facts.issuer.removeprefix('https://')}",
        SourceIdentity=facts.source_identity,
    )
    metadata = ET.SubElement(root, "ResponseMetadata")
    ET.SubElement(metadata, "RequestId").text = request_id
    return root


def _add_children(parent: ET.Element, **children: str | None) -> None:
    for tag, text in children.items():
        if text is not None:
            ET.SubElement(parent, tag).text = text


def _role_id(role_arn: str) -> str:
    # Stable per role, like the real unique id, so tests can compare AssumedRoleId values.
    return uuid.uuid5(uuid.NAMESPACE_URL, role_arn).hex[:17].upper()
