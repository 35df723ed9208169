"""RS256 JWT issuing and verification, shaped like Entra ID access tokens."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

__all__ = [
    "ExpiredTokenError",
    "InvalidTokenError",
    "SigningKey",
    "TokenError",
    "decode_verified",
    "unverified_claims",
]


class TokenError(Exception):
    """A token was rejected; the message says why, in words fit for an error body."""


class InvalidTokenError(TokenError):
    """Malformed token, bad signature, unknown key, wrong issuer/audience, not yet valid."""


class ExpiredTokenError(TokenError):
    """Well-formed and correctly signed, but past its ``exp``."""

    def __init__(self, message: str, expires_at: int) -> None:
        super().__init__(message)
        self.expires_at = expires_at


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair with a key id, as published in an OIDC JWKS document."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        """Create a fresh 2048-bit key; ``kid`` defaults to a random id."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(kid or secrets.token_urlsafe(16), key)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        """The verifying half of the pair."""
        return self.private_key.public_key()

    def jwk(self) -> dict[str, Any]:
        """Public JWK with ``kid``, ``use`` and ``alg`` as Entra publishes them."""
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.public_key))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """``{kid: public key}``, the shape :func:`decode_verified` trusts."""
        return {self.kid: self.public_key}

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Sign ``claims`` as an RS256 JWT carrying this key's ``kid`` in the header."""
        return jwt.encode(dict(claims), self.private_key, algorithm="RS256", headers={"kid": self.kid})


def unverified_claims(token: str) -> dict[str, Any]:
    """Read claims without checking anything: only to choose which keys to verify with."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise InvalidTokenError(f"Malformed token: {error}") from error
    return claims


def decode_verified(
    token: str,
    public_keys: Mapping[str, rsa.RSAPublicKey],
    *,
    issuer: str | None = None,
    audience: str | None = None,
    leeway_seconds: float = 0,
) -> dict[str, Any]:
    """Verify an RS256 token against trusted public keys (by ``kid``) and return its claims.

    ``exp`` and ``iss`` are always required; ``issuer`` and ``audience`` are compared only
    when given, because STS decides the acceptable audience per role, not per key.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise InvalidTokenError(f"Malformed token: {error}") from error
    public_key = public_keys.get(str(header.get("kid")))
    if public_key is None:
        raise InvalidTokenError("No signing key found for the token's kid")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            issuer=issuer,
            audience=audience,
            leeway=leeway_seconds,
            options={"require": ["exp", "iss"], "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError as error:
        expires_at = int(unverified_claims(token).get("exp", 0))
        raise ExpiredTokenError(str(error), expires_at) from error
    except jwt.PyJWTError as error:
        raise InvalidTokenError(str(error)) from error
    return claims
