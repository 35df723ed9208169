"""How requests to API Gateway prove who sends them: SigV4 (IAM), `x-api-key`, Entra bearer tokens.

`GatewayAuth` is an httpx.Auth flow. httpx runs it for every send, so each retry attempt is
signed afresh with the current (possibly just refreshed) credentials and a new timestamp. When
API Gateway answers that one of the credentials was refused -- AWS credentials revoked before
their expiry, an API key rotated since it was read -- the flow renews that credential once and
resends; a second refusal reaches the caller, and `explain()` says what to check.

`x-api-key` is one of the signed headers (shared.gateway.sigv4): the key is set before the
request is signed, and a renewed key means a new signature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any, ClassVar, Protocol

import httpx
from botocore.credentials import ReadOnlyCredentials

from shared.gateway.sigv4 import sign
from shared.identity.secrets import SecretProvider

log = logging.getLogger(__name__)

_AUTH_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")
# Statuses API Gateway uses for authentication and authorisation failures.
_REFUSAL_STATUSES = (401, 403)


class RenewableAwsCredentials(Protocol):
    """AWS credentials of one role session that can be replaced when the API refuses them."""

    @property
    def role_arn(self) -> str: ...

    def current(self) -> ReadOnlyCredentials: ...

    def renew(self, refused: ReadOnlyCredentials) -> None: ...


class Credential(Protocol):
    """One way of authenticating a request. `apply` returns what it used, so `renew` knows
    which value was refused (another request may already have renewed it)."""

    #: x-amzn-ErrorType values meaning "this credential was refused; a new one may work".
    renew_on: ClassVar[frozenset[str]]
    #: What the credential is, for log lines.
    name: ClassVar[str]

    def apply(self, request: httpx.Request) -> Any: ...

    def renew(self, used: Any) -> bool:
        """Replace `used`; False when there is nothing different to retry with."""
        ...

    def advice(self, error_type: str) -> str | None:
        """What to check when API Gateway refused a request with `error_type`."""
        ...


_REFUSED_AFTER_RENEWAL = (
    "API Gateway refused the credentials of role {role} even after they were renewed through STS: "
    "check whether the role's sessions are being revoked, and the worker's clock"
)
_BAD_SIGNATURE = (
    "API Gateway did not accept the SigV4 signature: check that auth.region ({region}) is the API's "
    "region and that nothing on the way rewrites the request"
)
_SIGV4_ADVICE = {
    "ExpiredTokenException": _REFUSED_AFTER_RENEWAL,
    "UnrecognizedClientException": _REFUSED_AFTER_RENEWAL,
    "InvalidSignatureException": _BAD_SIGNATURE,
    "IncompleteSignatureException": _BAD_SIGNATURE,
    "AccessDeniedException": (
        "role {role} may not invoke this API: check the role's execute-api:Invoke permission and the "
        "API's resource policy"
    ),
    "MissingAuthenticationTokenException": (
        "API Gateway found no such resource or no credentials it expects: check base_url, path and "
        "method, and that the route uses IAM authorisation"
    ),
}


class SigV4:
    """IAM authorisation: SigV4 for `execute-api` with the role session's credentials."""

    renew_on: ClassVar[frozenset[str]] = frozenset({"ExpiredTokenException", "UnrecognizedClientException"})
    name: ClassVar[str] = "AWS credentials"

    def __init__(
        self, credentials: RenewableAwsCredentials, region: str, service: str = "execute-api"
    ) -> None:
        self._credentials = credentials
        self._region = region
        self._service = service

    def apply(self, request: httpx.Request) -> ReadOnlyCredentials:
        frozen = self._credentials.current()
        sign(request, frozen, self._region, self._service)
        return frozen

    def renew(self, used: ReadOnlyCredentials) -> bool:
        self._credentials.renew(used)
        return True

    def advice(self, error_type: str) -> str | None:
        template = _SIGV4_ADVICE.get(error_type)
        return template.format(role=self._credentials.role_arn, region=self._region) if template else None


class ApiKey:
    """An `x-api-key` header (API Gateway usage plans) whose value lives in a secret store."""

    renew_on: ClassVar[frozenset[str]] = frozenset({"ForbiddenException"})
    name: ClassVar[str] = "API key"

    def __init__(self, secrets: SecretProvider, secret_name: str) -> None:
        self._secrets = secrets
        self._secret_name = secret_name

    def apply(self, request: httpx.Request) -> str:
        key = self._secrets.get(self._secret_name)
        request.headers["x-api-key"] = key
        return key

    def renew(self, used: str) -> bool:
        # An unchanged secret would only be refused again: no point resending.
        return self._secrets.renew(self._secret_name, used) != used

    def advice(self, error_type: str) -> str | None:
        if error_type not in self.renew_on:
            return None
        return (
            f"API Gateway refused the API key from secret {self._secret_name!r}, also after the secret "
            "was read again: check that the secret holds a key of the API's usage plan"
        )


class BearerToken:
    """The app's Entra access token for `audience`, for HTTP API JWT authorizers.

    azure-identity caches the token and renews it ahead of expiry, so there is nothing to renew
    here: a refused token means the authorizer does not trust it.
    """

    renew_on: ClassVar[frozenset[str]] = frozenset()
    name: ClassVar[str] = "Entra token"

    def __init__(self, token_for: Callable[[str], str], audience: str) -> None:
        self._token_for = token_for
        self._audience = audience

    def apply(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {self._token_for(self._audience)}"

    def renew(self, used: None) -> bool:
        return False

    def advice(self, error_type: str) -> str | None:
        if error_type != "UnauthorizedException":
            return None
        return (
            f"the API's JWT authorizer refused the Entra token for audience {self._audience!r}: check "
            f"that its issuer is https://sts.windows.net/<tenant-id>/ and its audience list holds "
            f"{self._audience!r}"
        )


class GatewayAuth(httpx.Auth):
    """The source's credentials applied to each request, with one renewal when one is refused.

    The resend happens inside one send, past the client-side rate limiter; it is rare (once per
    revocation or rotation) and answers a request the gateway refused before doing any work.
    """

    requires_request_body = True  # SigV4 hashes the body

    def __init__(
        self, *, sigv4: SigV4 | None = None, api_key: ApiKey | None = None, bearer: BearerToken | None = None
    ) -> None:
        # SigV4 goes last: it signs the headers the others set.
        self._credentials: list[Credential] = [c for c in (api_key, bearer, sigv4) if c is not None]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        used = self._apply(request)
        response = yield request
        refused = self._refused(response)
        if refused is None or not self._credentials[refused].renew(used[refused]):
            return
        log.warning(
            "API Gateway refused the %s (HTTP %d %s, request id %s); resending once with a renewed one",
            self._credentials[refused].name,
            response.status_code,
            _error_type(response),
            response.headers.get("x-amzn-requestid"),
        )
        self._apply(request)
        yield request

    def explain(self, error_type: str | None) -> str | None:
        """What to check after API Gateway refused a request with this x-amzn-ErrorType."""
        if not error_type:
            return None
        return next((a for c in self._credentials if (a := c.advice(error_type)) is not None), None)

    def _apply(self, request: httpx.Request) -> list[Any]:
        return [credential.apply(request) for credential in self._credentials]

    def _refused(self, response: httpx.Response) -> int | None:
        """Index of the credential the response says was refused, if it says so."""
        if response.status_code not in _REFUSAL_STATUSES:
            return None
        error_type = _error_type(response)
        return next((i for i, c in enumerate(self._credentials) if error_type in c.renew_on), None)


def _error_type(response: httpx.Response) -> str:
    """API Gateway's x-amzn-ErrorType, without the ':http://...' suffix it sometimes carries."""
    return (response.headers.get("x-amzn-errortype") or "").split(":")[0]
