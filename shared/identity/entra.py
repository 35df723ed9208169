"""The app's Entra identity: one credential per process, so every Entra token shares one cache."""

from __future__ import annotations

import os
from typing import Any

from azure.core.credentials import TokenCredential


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
        return ManagedIdentityCredential(client_id=client_id, **transport)
    return DefaultAzureCredential(
        managed_identity_client_id=client_id, exclude_interactive_browser_credential=True, **transport
    )
