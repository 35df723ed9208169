"""Secrets: the TTL cache and its renewal, the Key Vault store through the real SecretClient,
the environment store for local runs, and which one the settings select."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.identity import ManagedIdentityCredential

from shared.config.settings import Settings
from shared.errors import ConfigError, SecretError
from shared.identity.secrets import (
    CachedSecrets,
    EnvSecrets,
    KeyVaultSecrets,
    env_variable_for,
    secrets_from_settings,
)

from fixtures import App


class CountingStore:
    """A store whose value the test sets, counting reads."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0
        self._lock = threading.Lock()

    def read(self, name: str) -> str:
        with self._lock:
            self.reads += 1
            return self.value


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_values_are_cached_for_the_ttl_then_read_again() -> None:
    store, clock = CountingStore("v1"), Clock()
    secrets = CachedSecrets(store, ttl_seconds=300, clock=clock)
    assert [secrets.get("k") for _ in range(50)] == ["v1"] * 50
    assert store.reads == 1
    store.value = "v2"  # rotated in the store
    clock.now += 299
    assert secrets.get("k") == "v1"
    clock.now += 1
    assert secrets.get("k") == "v2" and store.reads == 2


def test_renew_reads_again_only_if_the_refused_value_is_still_cached() -> None:
    store = CountingStore("v1")
    secrets = CachedSecrets(store, clock=Clock())
    assert secrets.get("k") == "v1"
    store.value = "v2"
    assert secrets.renew("k", "v1") == "v2" and store.reads == 2
    # A request that was refused with v1 a moment later gets v2 without another read.
    assert secrets.renew("k", "v1") == "v2" and store.reads == 2


def test_many_requests_refused_at_once_cost_one_read() -> None:
    store = CountingStore("v1")
    secrets = CachedSecrets(store, clock=Clock())
    secrets.get("k")
    store.value = "v2"
    start = threading.Barrier(8)

    def refused() -> str:
        start.wait()
        return secrets.renew("k", "v1")

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: refused(), range(8))) == {"v2"}
    assert store.reads == 2


def test_environment_store_names_the_variable_it_wants(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_variable_for("orders-api-key") == "SECRET_ORDERS_API_KEY"
    monkeypatch.delenv("SECRET_ORDERS_API_KEY", raising=False)
    with pytest.raises(SecretError, match="define the environment variable SECRET_ORDERS_API_KEY") as missing:
        EnvSecrets().read("orders-api-key")
    assert not missing.value.retryable
    monkeypatch.setenv("SECRET_ORDERS_API_KEY", "from-env")
    assert EnvSecrets().read("orders-api-key") == "from-env"


def settings(**values: str) -> Settings:
    return Settings.from_env({"LANDING_CONNECTION_STRING": "UseDevelopmentStorage=true", **values})


def test_settings_select_the_store() -> None:
    local = secrets_from_settings(settings(SECRETS_PROVIDER="env"), ManagedIdentityCredential())
    assert isinstance(local, CachedSecrets)
    with pytest.raises(
        ConfigError, match="KEY_VAULT_URL is not set; for local runs set SECRETS_PROVIDER=env"
    ):
        secrets_from_settings(settings(), ManagedIdentityCredential())
    with pytest.raises(ConfigError, match="KEY_VAULT_URL"):
        settings(KEY_VAULT_URL="http://vault.example")
    with pytest.raises(ConfigError, match="SECRETS_PROVIDER"):
        settings(SECRETS_PROVIDER="catalog")


@pytest.fixture
def vault(app: App) -> Iterator[KeyVaultSecrets]:
    """The real SecretClient against the Key Vault stand-in, as the app's managed identity."""
    with ManagedIdentityCredential() as credential:
        yield KeyVaultSecrets(app.env["KEY_VAULT_URL"], credential)


def test_key_vault_store_reads_the_current_version(app: App, vault: KeyVaultSecrets) -> None:
    keyvault = app.stack.cloud.keyvault
    keyvault.set_secret("kv-read", "first")
    assert vault.read("kv-read") == "first"
    keyvault.set_secret("kv-read", "second")
    assert vault.read("kv-read") == "second"


def test_key_vault_refusals_name_the_secret_vault_and_remedy(
    app: App, vault: KeyVaultSecrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyvault = app.stack.cloud.keyvault
    with pytest.raises(SecretError, match=f"secret 'kv-absent' in Key Vault {keyvault.url} does not exist"):
        vault.read("kv-absent")
    keyvault.set_secret("kv-guarded", "value-nobody-may-see")
    monkeypatch.setattr(keyvault, "allowed_object_ids", {"someone-else"})  # undone after the test
    with pytest.raises(SecretError, match="grant it the 'Key Vault Secrets User' role") as forbidden:
        vault.read("kv-guarded")
    assert not forbidden.value.retryable
    assert "value-nobody-may-see" not in str(forbidden.value)
