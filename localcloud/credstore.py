"""Temporary AWS credentials issued by the local STS and checked by the local API Gateway."""

from __future__ import annotations

import base64
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

__all__ = ["CredentialStore", "IssuedCredentials"]

# AWS key ids are upper-case base32-ish; "ASIA" marks temporary (STS) credentials.
_KEY_ID_ALPHABET = string.ascii_uppercase + "234567"


@dataclass(frozen=True)
class IssuedCredentials:
    """One set of temporary credentials and what they were issued for."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    role_arn: str
    session_name: str
    expires_at: float
    issued_at: float
    revoked: bool = False

    def is_valid(self, now: float | None = None) -> bool:
        """Not revoked and not yet expired."""
        return not self.revoked and (time.time() if now is None else now) < self.expires_at


class CredentialStore:
    """Thread-safe registry of issued credentials, shared by STS and the gateway."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key_id: dict[str, IssuedCredentials] = {}

    def issue(self, role_arn: str, session_name: str, lifetime_seconds: float) -> IssuedCredentials:
        """Mint random credentials valid for ``lifetime_seconds`` (may be <= 0 for tests)."""
        now = time.time()
        credentials = IssuedCredentials(
            access_key_id="ASIA" + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16)),
            secret_access_key=base64.b64encode(secrets.token_bytes(30)).decode(),
            # Real session tokens are long opaque blobs; length matters for header-size bugs.
            session_token="IQoJb3JpZ2luX2Vj" + base64.b64encode(secrets.token_bytes(600)).decode(),
            role_arn=role_arn,
            session_name=session_name,
            expires_at=now + lifetime_seconds,
            issued_at=now,
        )
        with self._lock:
            self._by_key_id[credentials.access_key_id] = credentials
        return credentials

    def get(self, access_key_id: str) -> IssuedCredentials | None:
        """Look up credentials by key id, valid or not."""
        with self._lock:
            return self._by_key_id.get(access_key_id)

    def all(self) -> list[IssuedCredentials]:
        """Every credential set ever issued, oldest first."""
        with self._lock:
            return list(self._by_key_id.values())

    def revoke(self, access_key_id: str | None = None) -> int:
        """Revoke one credential set, or all when ``access_key_id`` is None; returns the count."""
        return self._update(access_key_id, lambda credentials: replace(credentials, revoked=True))

    def expire(self, access_key_id: str | None = None) -> int:
        """Move the expiry of one (or all) credential sets into the past; returns the count."""
        past = time.time() - 1
        return self._update(access_key_id, lambda credentials: replace(credentials, expires_at=past))

    def _update(
        self, access_key_id: str | None, change: Callable[[IssuedCredentials], IssuedCredentials]
    ) -> int:
        with self._lock:
            key_ids = list(self._by_key_id) if access_key_id is None else [access_key_id]
            targets = [key_id for key_id in key_ids if key_id in self._by_key_id]
            for key_id in targets:
                self._by_key_id[key_id] = change(self._by_key_id[key_id])
            return len(targets)
