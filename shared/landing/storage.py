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
    ServiceRequestError,
)
from azure.storage.blob import BlobServiceClient, ExponentialRetry

from shared.errors import LandingError


def blob_service(
    connection_string: str | None, account_url: str | None, credential: TokenCredential | None = None
) -> BlobServiceClient:
    """A Blob client from a connection string (local) or account URL + the app's Entra identity (Azure).

    Pass the process's one Entra credential, so Blob Storage, STS and Key Vault share its token cache.
    """
    # Short, bounded retries: a storage outage fails an activity within seconds and Durable's
    # activity retries do the waiting. The SDK's default ExponentialRetry (15 s + 3^n, jittered by
    # 3 s) made an unreachable account take 244-274 s to fail an ingest (issue 17, finding 7);
    # this policy costs about 3 s of backoff over 3 tries, at most 3 x 5 s connecting.
    options: dict[str, Any] = {
        "retry_policy": ExponentialRetry(
            initial_backoff=1, increment_base=2, retry_total=2, random_jitter_range=1
        ),
        "connection_timeout": 5,
        "read_timeout": 30,
    }
    if connection_string:
        client = BlobServiceClient.from_connection_string(connection_string, **options)
        _TARGET[:] = [client.url, "LANDING_CONNECTION_STRING"]
        return client
    if credential is None:
        from shared.identity.entra import entra_credential

        credential = entra_credential()
    client = BlobServiceClient(account_url or "", credential=credential, **options)
    _TARGET[:] = [client.url, "LANDING_ACCOUNT_URL"]
    return client


# The account last configured and the setting that names it: an unreachable endpoint's error
# says where it tried and what to check (one account per process).
_TARGET: list[str] = []


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
    except ServiceRequestError as exc:  # never reached the service: connection refused, DNS, timeout
        where = f" at {_TARGET[0]}" if _TARGET else ""
        check = f"; check {_TARGET[1]} and that the account is reachable" if _TARGET else ""
        raise LandingError(
            f"could not {action}: Blob Storage{where} unreachable ({_transport(exc)}){check}"
        ) from None
    except AzureError as exc:
        raise LandingError(f"could not {action}: {reason(exc)}") from None


def _transport(exc: AzureError) -> str:
    text = str(getattr(exc, "message", None) or exc)
    for known in ("Connection refused", "timed out", "Name or service not known", "No route to host"):
        if known.lower() in text.lower():
            return known
    return type(exc).__name__


def reason(exc: AzureError) -> str:
    """The storage error's code and first line, without the SDK's multi-line dump."""
    code = getattr(exc, "error_code", None)
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return f"{code + ': ' if code else ''}{text[0] if text else type(exc).__name__}"
