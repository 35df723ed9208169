"""Secrets the app reads at run time (API keys): Azure Key Vault in Azure, the environment locally.

Values are cached for a few minutes, so a rotated secret is picked up without a restart, and
`renew` re-reads one at once when an API refused the cached value. The catalog only *names*
secrets; their values never come from it, and nothing here logs or repeats a value: errors
name the secret and the store.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.keyvault.secrets import SecretClient

from shared.config.settings import Settings
from shared.errors import ConfigError, SecretError
from shared.observability.redaction import register_secret

#: How long a read secret is used before it is read again.
SECRET_TTL_SECONDS = 300.0
ENV_PREFIX = "SECRET_"
# Key Vault answers these when busy or failing; anything else will not get better by itself.
_TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504}


class SecretStore(Protocol):
    """Where secret values live; `read` fetches the current value, uncached."""

    def read(self, name: str) -> str: ...


class SecretProvider(Protocol):
    """What the app asks for secrets."""

    def get(self, name: str) -> str:
        """The secret's value, cached for a short while."""
        ...

    def renew(self, name: str, stale: str) -> str:
        """The secret's value after `stale` was refused: read again unless that already happened."""
        ...


class CachedSecrets:
    """A SecretProvider over a store: a TTL cache, and one store read per refusal however many saw it."""

    def __init__(
        self,
        store: SecretStore,
        ttl_seconds: float = SECRET_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[str, float]] = {}
        self._name_locks: dict[str, threading.Lock] = {}

    def get(self, name: str) -> str:
        with self._lock_for(name):
            value = self._fresh(name)
            return value if value is not None else self._read(name)

    def renew(self, name: str, stale: str) -> str:
        with self._lock_for(name):
            cached = self._fresh(name)
            if cached is not None and cached != stale:
                return cached  # another request met the refusal first and read the new value
            return self._read(name)

    def _fresh(self, name: str) -> str | None:
        with self._lock:
            entry = self._values.get(name)
        if entry is None or self._clock() - entry[1] >= self._ttl:
            return None
        return entry[0]

    def _read(self, name: str) -> str:
        value = self._store.read(name)
        # Scrubbed by value from here on: an API that quotes the key it refused cannot leak it.
        register_secret(value)
        with self._lock:
            self._values[name] = (value, self._clock())
        return value

    def _lock_for(self, name: str) -> threading.Lock:
        # Per name, so a slow read of one secret never holds up another.
        with self._lock:
            return self._name_locks.setdefault(name, threading.Lock())


class KeyVaultSecrets:
    """Secrets from Azure Key Vault, read with the app's Entra identity (needs 'get' on secrets)."""

    def __init__(self, vault_url: str, credential: TokenCredential) -> None:
        self.vault_url = vault_url.rstrip("/")
        self._client = SecretClient(
            self.vault_url,
            credential,
            # The SDK checks that the vault's auth challenge names a resource the vault's host
            # belongs to (*.vault.azure.net). A loopback vault (an emulator) can never pass that,
            # and a loopback URL cannot send the token off the machine, so only there it is off.
            verify_challenge_resource=not _is_loopback(self.vault_url),
            # Bounded: an unreachable vault must fail an activity in seconds, for Durable to retry.
            retry_total=2,
            connection_timeout=5,
            read_timeout=10,
        )

    def read(self, name: str) -> str:
        where = f"secret {name!r} in Key Vault {self.vault_url}"
        try:
            value = self._client.get_secret(name).value
        except ResourceNotFoundError:
            raise SecretError(
                f"{where} does not exist: create it, or correct auth.api_key_secret in the catalog",
                secret=name,
            ) from None
        except ClientAuthenticationError as exc:
            raise SecretError(
                f"could not authenticate to read {where} ({_status(exc)}): check the Function App's "
                "managed identity and that the vault is in its tenant",
                secret=name,
            ) from None
        except HttpResponseError as exc:
            if exc.status_code == 403:
                raise SecretError(
                    f"the app's identity may not read {where}: grant it the 'Key Vault Secrets User' "
                    "role on the vault (or a 'get' secrets access policy)",
                    secret=name,
                ) from None
            raise SecretError(
                f"Key Vault failed reading {where} ({_status(exc)})",
                secret=name,
                retryable=exc.status_code in _TRANSIENT_STATUSES,
            ) from None
        except ServiceRequestError as exc:
            raise SecretError(
                f"could not reach Key Vault to read {where}: {type(exc).__name__}; check KEY_VAULT_URL "
                "and outbound network access",
                secret=name,
                retryable=True,
            ) from None
        if not value:
            raise SecretError(f"{where} has no value", secret=name)
        return value


class EnvSecrets:
    """Secrets from environment variables, for local runs: secret `orders-api-key` is read from
    `SECRET_ORDERS_API_KEY` (local.settings.json values become environment variables)."""

    def read(self, name: str) -> str:
        variable = env_variable_for(name)
        value = os.environ.get(variable)
        if not value:
            raise SecretError(
                f"secret {name!r} is not set: define the environment variable {variable} "
                "(SECRETS_PROVIDER=env)",
                secret=name,
            )
        return value


def env_variable_for(name: str) -> str:
    """The environment variable EnvSecrets reads secret `name` from."""
    return ENV_PREFIX + name.upper().replace("-", "_")


def secrets_from_settings(settings: Settings, credential: TokenCredential) -> SecretProvider:
    """The provider SECRETS_PROVIDER selects, cached."""
    if settings.secrets_provider == "env":
        return CachedSecrets(EnvSecrets())
    if not settings.key_vault_url:
        raise ConfigError(
            "a source reads a secret (auth.api_key_secret) but KEY_VAULT_URL is not set; "
            "for local runs set SECRETS_PROVIDER=env to read SECRET_<NAME> variables instead"
        )
    return CachedSecrets(KeyVaultSecrets(settings.key_vault_url, credential))


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _status(exc: HttpResponseError) -> str:
    if exc.status_code is None:  # failed before any answer, e.g. while getting a token
        return type(exc).__name__
    code = exc.error.code if exc.error is not None else None
    return f"HTTP {exc.status_code}{f' {code}' if code else ''}"
