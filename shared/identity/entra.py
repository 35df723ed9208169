"""The app's Entra identity: one credential per process, so every Entra token shares one cache."""

from __future__ import annotations

import os
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

from shared.observability.redaction import register_secret


class RegisteringCredential:
    """A TokenCredential that registers every token it hands out with the redaction scrubber,
    including the ones SDK clients (Key Vault, Blob Storage) ask for behind our back."""

    def __init__(self, inner: TokenCredential) -> None:
        self._inner = inner

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token = self._inner.get_token(*scopes, **kwargs)
        register_secret(token.token)
        return token

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


def entra_credential() -> TokenCredential:
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
        return RegisteringCredential(ManagedIdentityCredential(client_id=client_id, **transport))
    return RegisteringCredential(
        DefaultAzureCredential(
            managed_identity_client_id=client_id, exclude_interactive_browser_credential=True, **transport
        )
    )
