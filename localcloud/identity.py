"""Managed identity token endpoint, App Service flavour (``api-version=2019-08-01``).

azure-identity's ``ManagedIdentityCredential`` (through msal) uses this flavour whenever
``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set, which is how Azure Functions runs.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from typing import Any

from localcloud.server import LocalServer, Request, Response, json_response
from localcloud.tokens import SigningKey

__all__ = ["TOKEN_PATH", "IdentityServer"]

TOKEN_PATH = "/msi/token"
_API_VERSION = "2019-08-01"


class IdentityServer(LocalServer):
    """Issues RS256 access tokens for one managed identity, like the App Service MSI endpoint.

    Set ``IDENTITY_ENDPOINT`` to :attr:`endpoint` and ``IDENTITY_HEADER`` to
    :attr:`identity_header`.  Test knobs are plain attributes, read on every request:

    * ``token_lifetime`` -- seconds until ``exp``; negative mints already-expired tokens.
    * ``audience_override`` / ``issuer_override`` -- put a wrong ``aud`` / ``iss`` in tokens.
    * ``sign_with_untrusted_key`` -- sign with a key nobody trusts (same ``kid``, so only a
      real signature check catches it).
    """

    def __init__(
        self,
        *,
        tenant_id: str = "11111111-2222-3333-4444-555555555555",
        object_id: str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        client_id: str = "99999999-8888-7777-6666-555555555555",
        identity_header: str | None = None,
        token_lifetime: int = 3600,
    ) -> None:
        super().__init__()
        self.tenant_id = tenant_id
        self.object_id = object_id
        self.client_id = client_id
        self.identity_header = identity_header or secrets.token_urlsafe(24)
        self.signing_key = SigningKey.generate()
        # Same kid as the trusted key: a verifier that only looks the kid up is caught out.
        self.untrusted_key = SigningKey.generate(kid=self.signing_key.kid)
        self.token_lifetime = token_lifetime
        self.audience_override: str | None = None
        self.issuer_override: str | None = None
        self.sign_with_untrusted_key = False
        self._lock = threading.Lock()
        self._tokens_issued = 0

    @property
    def issuer(self) -> str:
        """The ``iss`` claim Entra puts in v1 tokens: ``https://sts.windows.net/<tenant>/``."""
        return f"https://sts.windows.net/{self.tenant_id}/"

    @property
    def endpoint(self) -> str:
        """Value for ``IDENTITY_ENDPOINT``."""
        return self.url + TOKEN_PATH

    @property
    def jwks(self) -> dict[str, Any]:
        """The JWKS document a relying party would fetch for :attr:`issuer`."""
        return {"keys": [self.signing_key.jwk()]}

    @property
    def tokens_issued(self) -> int:
        """How many tokens were minted (over HTTP or with :meth:`issue_token`)."""
        with self._lock:
            return self._tokens_issued

    def issue_token(self, resource: str, **claim_overrides: Any) -> tuple[str, int]:
        """Mint a token for ``resource`` honouring the knobs; returns ``(jwt, expires_on)``.

        ``claim_overrides`` replace or add claims (``None`` removes one), for tests that
        need a token the HTTP endpoint would never produce.
        """
        now = int(time.time())
        expires_on = now + self.token_lifetime
        claims: dict[str, Any] = {
            "aud": self.audience_override or resource,
            "iss": self.issuer_override or self.issuer,
            "iat": now,
            "nbf": now,
            "exp": expires_on,
            "sub": self.object_id,
            "oid": self.object_id,
            "appid": self.client_id,
            "appidacr": "2",
            "idtyp": "app",
            "tid": self.tenant_id,
            "ver": "1.0",
            "uti": secrets.token_urlsafe(16),
        }
        claims.update(claim_overrides)
        key = self.untrusted_key if self.sign_with_untrusted_key else self.signing_key
        token = key.sign({name: value for name, value in claims.items() if value is not None})
        with self._lock:
            self._tokens_issued += 1
        return token, expires_on

    def handle(self, request: Request) -> Response:
        """Serve ``GET /msi/token`` with App Service's validation and response shape."""
        if request.method != "GET" or request.path != TOKEN_PATH:
            return _msi_error(404, "Not found.")
        if request.header("X-IDENTITY-HEADER") != self.identity_header:
            return _msi_error(401, "Unauthorized: missing or invalid X-IDENTITY-HEADER.")
        params = request.params()
        if params.get("api-version") != _API_VERSION:
            return _msi_error(400, f"Unsupported api-version; expected {_API_VERSION}.")
        resource = params.get("resource")
        if not resource:
            return _msi_error(400, "Required query parameter 'resource' is missing.")
        if not self._selects_this_identity(params):
            return _msi_error(400, "Unable to load the proper Managed Identity.")
        token, expires_on = self.issue_token(resource)
        return json_response(
            200,
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": self.client_id,
            },
        )

    def _selects_this_identity(self, params: dict[str, str]) -> bool:
        # Asking for a user-assigned identity the app does not have is an error, not a
        # silent fallback to the system-assigned one.
        if "mi_res_id" in params:
            return False
        return (
            params.get("client_id", self.client_id) == self.client_id
            and params.get("object_id", self.object_id) == self.object_id
        )


def _msi_error(status: int, message: str) -> Response:
    # App Service's MSI endpoint answers errors in this shape; msal surfaces statusCode and
    # message in the CredentialUnavailableError text.
    return json_response(
        status, {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}
    )
