"""Request authorisation as API Gateway performs it: IAM (SigV4), API keys, JWT authorizers.

Every check raises :class:`~localcloud.errors.ApiGatewayError` with the status, error type
and message API Gateway uses, so clients can be tested against the real failure shapes.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from localcloud import sigv4
from localcloud.credstore import CredentialStore, IssuedCredentials
from localcloud.errors import ApiGatewayError
from localcloud.server import Request
from localcloud.tokens import TokenError, decode_verified

__all__ = ["ApiKeys", "AuthMode", "IamVerifier", "JwtSettings", "missing_authentication_token", "verify_jwt"]

AuthMode = Literal["aws_iam", "api_key", "aws_iam+api_key", "jwt", "none"]

_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_MAX_CLOCK_SKEW = timedelta(minutes=5)
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)


def missing_authentication_token() -> ApiGatewayError:
    """What API Gateway answers for no credentials *and* for unknown resources or methods."""
    return ApiGatewayError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")


def _invalid_signature(message: str) -> ApiGatewayError:
    return ApiGatewayError(403, "InvalidSignatureException", message)


def _incomplete_signature(message: str) -> ApiGatewayError:
    return ApiGatewayError(403, "IncompleteSignatureException", message)


def _unrecognized_client() -> ApiGatewayError:
    return ApiGatewayError(
        403, "UnrecognizedClientException", "The security token included in the request is invalid."
    )


class IamVerifier:
    """Recomputes the SigV4 signature of a received request and checks its credentials."""

    def __init__(self, credentials: CredentialStore, region: str, service: str = "execute-api") -> None:
        self.credentials = credentials
        self.region = region
        self.service = service

    def verify(self, request: Request) -> IssuedCredentials:
        """Return the caller's credentials, or raise the error API Gateway would."""
        header = request.header("Authorization")
        if not header:
            raise missing_authentication_token()
        try:
            auth = sigv4.parse_authorization(header)
        except sigv4.SigV4FormatError as error:
            raise _incomplete_signature(f"{error} Authorization={header}") from None
        amz_date = self._check_scope_and_date(request, auth)
        credentials = self.credentials.get(auth.access_key_id)
        if credentials is None or request.header("X-Amz-Security-Token") != credentials.session_token:
            raise _unrecognized_client()
        if not credentials.is_valid():
            raise ApiGatewayError(
                403, "ExpiredTokenException", "The security token included in the request is expired"
            )
        self._check_signature(request, auth, amz_date, credentials.secret_access_key)
        return credentials

    def _check_scope_and_date(self, request: Request, auth: sigv4.Authorization) -> str:
        if "host" not in auth.signed_headers:
            raise _incomplete_signature(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            )
        amz_date = request.header("X-Amz-Date")
        if amz_date is None or "x-amz-date" not in auth.signed_headers:
            raise _incomplete_signature(
                "Authorization header requires existence of a signed 'X-Amz-Date' header. "
                f"Authorization={request.header('Authorization')}"
            )
        try:
            signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise _incomplete_signature(
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
            ) from None
        if auth.terminator != "aws4_request":
            raise _invalid_signature(
                "Credential should be scoped with a valid terminator: 'aws4_request', "
                f"not '{auth.terminator}'. "
            )
        if auth.service != self.service:
            raise _invalid_signature(f"Credential should be scoped to correct service: '{self.service}'. ")
        if auth.region != self.region:
            raise _invalid_signature(f"Credential should be scoped to a valid region, not '{auth.region}'. ")
        if auth.date != amz_date[:8]:
            raise _invalid_signature(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{auth.date}' != '{amz_date[:8]}', from '{amz_date}'."
            )
        _check_clock_skew(signed_at, amz_date)
        return amz_date

    def _check_signature(
        self, request: Request, auth: sigv4.Authorization, amz_date: str, secret_access_key: str
    ) -> None:
        payload_hash = hashlib.sha256(request.body).hexdigest()
        declared_hash = request.header("X-Amz-Content-SHA256")
        if declared_hash is not None and declared_hash != payload_hash:
            raise _invalid_signature(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
        try:
            expected = sigv4.expected_signature(
                method=request.method,
                raw_path=request.path,
                raw_query=request.query,
                headers=request.headers,
                payload_hash=payload_hash,
                auth=auth,
                amz_date=amz_date,
                secret_access_key=secret_access_key,
            )
        except KeyError as missing:
            raise _invalid_signature(f"{_MISMATCH} Signed header {missing} is not in the request.") from None
        if not hmac.compare_digest(expected.signature, auth.signature):
            # API Gateway spells out what it computed; invaluable when debugging a signer.
            raise _invalid_signature(
                f"{_MISMATCH}\n\nThe Canonical String for this request should have been\n"
                f"'{expected.canonical_request}'\n\n"
                f"The String-to-Sign should have been\n'{expected.string_to_sign}'\n"
            )


def _check_clock_skew(signed_at: datetime, amz_date: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = now.strftime(_AMZ_DATE_FORMAT)
    if signed_at < now - _MAX_CLOCK_SKEW:
        limit = (now - _MAX_CLOCK_SKEW).strftime(_AMZ_DATE_FORMAT)
        raise _invalid_signature(
            f"Signature expired: {amz_date} is now earlier than {limit} ({stamp} - 5 min.)"
        )
    if signed_at > now + _MAX_CLOCK_SKEW:
        limit = (now + _MAX_CLOCK_SKEW).strftime(_AMZ_DATE_FORMAT)
        raise _invalid_signature(
            f"Signature not yet current: {amz_date} is still later than {limit} ({stamp} + 5 min.)"
        )


class ApiKeys:
    """The set of valid ``x-api-key`` values; replaceable at runtime (key rotation)."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._keys = frozenset(keys)

    def replace(self, keys: Iterable[str]) -> None:
        """Make exactly ``keys`` valid."""
        with self._lock:
            self._keys = frozenset(keys)

    def rotate(self, old: str, new: str) -> None:
        """Invalidate ``old`` and validate ``new`` in one step."""
        with self._lock:
            self._keys = (self._keys - {old}) | {new}

    def verify(self, request: Request) -> None:
        """Raise 403 ``ForbiddenException`` unless the request carries a valid key."""
        with self._lock:
            keys = self._keys
        if request.header("x-api-key") not in keys:
            raise ApiGatewayError(403, "ForbiddenException", "Forbidden")


@dataclass(frozen=True)
class JwtSettings:
    """A JWT authorizer: trusted ``{kid: public key}``, required issuer and audience."""

    public_keys: Mapping[str, RSAPublicKey]
    issuer: str
    audience: str


def verify_jwt(request: Request, settings: JwtSettings | None) -> dict[str, Any]:
    """Validate ``Authorization: Bearer <jwt>`` like an HTTP API JWT authorizer (401 on failure)."""
    scheme, _, token = (request.header("Authorization") or "").partition(" ")
    try:
        if settings is None:
            raise TokenError("no JWT authorizer configured")
        if scheme.lower() != "bearer" or not token:
            raise TokenError("missing bearer token")
        return decode_verified(
            token.strip(), settings.public_keys, issuer=settings.issuer, audience=settings.audience
        )
    except TokenError as error:
        challenge = f'Bearer scope="" error="invalid_token" error_description="{error}"'
        raise ApiGatewayError(
            401, "UnauthorizedException", "Unauthorized", [("www-authenticate", challenge)]
        ) from None
