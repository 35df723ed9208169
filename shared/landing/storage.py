"""The Blob Storage client, and the one place storage failures become LandingErrors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient

from shared.errors import LandingError


def blob_service(
    connection_string: str | None, account_url: str | None, credential: TokenCredential | None = None
) -> BlobServiceClient:
    """A Blob client from a connection string (local) or account URL + the app's Entra identity (Azure).

    Pass the process's one Entra credential, so Blob Storage, STS and Key Vault share its token cache.
    """
    # Short, bounded retries: a storage outage should fail an activity for Durable to retry,
    # not hang it for the SDK's default of minutes.
    options: dict[str, Any] = {"retry_total": 3, "connection_timeout": 10, "read_timeout": 60}
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string, **options)
    if credential is None:
        from shared.identity.entra import entra_credential

        credential = entra_credential()
    return BlobServiceClient(account_url or "", credential=credential, **options)


@contextmanager
def storage_errors(action: str, *, missing_ok: bool = False) -> Iterator[None]:
    """Turn a storage failure while doing `action` ("write x.json") into a retryable LandingError.

    Lost write conditions pass through untouched, and with `missing_ok` a missing blob or
    container: the caller decides what they mean.
    """
    passed: tuple[type[AzureError], ...] = (ResourceModifiedError, ResourceExistsError)
    if missing_ok:
        passed += (ResourceNotFoundError,)
    try:
        yield
    except passed:
        raise
    except AzureError as exc:
        raise LandingError(f"could not {action}: {reason(exc)}") from None


def reason(exc: AzureError) -> str:
    """The storage error's code and first line, without the SDK's multi-line dump."""
    code = getattr(exc, "error_code", None)
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return f"{code + ': ' if code else ''}{text[0] if text else type(exc).__name__}"
