"""local.settings.json: written for a running local stack (`up --write-local-settings`), read by `serve`.

The file is the Core Tools' own format (`IsEncrypted`, `Values`, `Host.LocalHttpPort`), so one
file drives `func start` where the Core Tools can be installed and `python -m localcloud serve`
where they cannot. `Values` become environment variables, exactly as the Functions host
passes application settings to the Python worker.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcloud.azurite import REPO_ROOT

__all__ = [
    "DEFAULT_PATH",
    "EXAMPLE_PATH",
    "MARKER",
    "LocalSettings",
    "LocalSettingsError",
    "apply",
    "read",
    "stack_values",
    "write",
]

DEFAULT_PATH = REPO_ROOT / "local.settings.json"
EXAMPLE_PATH = REPO_ROOT / "local.settings.example.json"
#: func start's default port; `Host.LocalHttpPort` changes it for both hosts.
DEFAULT_PORT = 7071
#: A value only files written by `up` carry, so `up` may replace its own stale file (after a
#: crash) but never a file someone wrote by hand.
MARKER = "LOCALCLOUD_STACK"


class LocalSettingsError(Exception):
    """local.settings.json is unreadable or not in the Core Tools' format; names file and key."""


@dataclass(frozen=True)
class LocalSettings:
    path: Path
    values: dict[str, str]
    port: int | None

    @property
    def written_by_localcloud(self) -> bool:
        return MARKER in self.values


def example_values() -> dict[str, str]:
    """Every setting the app reads, with the example's safe local values."""
    return read(EXAMPLE_PATH).values


def stack_values(
    app_env: Mapping[str, str], storage_connection_string: str, *, written_by: str = "python -m localcloud up"
) -> dict[str, str]:
    """Settings pointing the app at a running local stack, for either host.

    Starts from the example (so every documented key is present), then the stack's own app
    settings; `AzureWebJobsStorage` gets a connection string naming blob, queue and table
    endpoints, which the Durable extension's Azure Storage backend needs all three of.
    """
    values = example_values()
    values.update(app_env)
    values["AzureWebJobsStorage"] = storage_connection_string
    # The stack runs the Key Vault stand-in; secrets come from it, as in Azure.
    values["SECRETS_PROVIDER"] = "keyvault"
    values[MARKER] = f"written by `{written_by}` (pid {os.getpid()}); removed when it stops"
    return values


def write(path: Path, values: Mapping[str, str], *, port: int = DEFAULT_PORT) -> bytes:
    """Write the file atomically, readable by its owner only; returns the bytes written."""
    document = {"IsEncrypted": False, "Values": dict(values), "Host": {"LocalHttpPort": port}}
    data = (json.dumps(document, indent=2) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    # IDENTITY_HEADER guards the local identity endpoint: not for other users of the machine.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".local.settings-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return data


def read(path: Path) -> LocalSettings:
    """Parse a local.settings.json as the Core Tools do: string values only, not encrypted."""
    try:
        document: Any = json.loads(path.read_text())
    except FileNotFoundError:
        raise LocalSettingsError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise LocalSettingsError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(document, dict):
        raise LocalSettingsError(f"{path}: must be a JSON object with a Values object")
    if document.get("IsEncrypted") is True:
        raise LocalSettingsError(f"{path}: IsEncrypted is true; decrypt it (func settings decrypt) first")
    values = document.get("Values", {})
    if not isinstance(values, dict):
        raise LocalSettingsError(f"{path}: Values must be an object of strings")
    for key, value in values.items():
        if not isinstance(value, str):
            raise LocalSettingsError(f"{path}: Values.{key} must be a string, not {type(value).__name__}")
    host = document.get("Host", {})
    port = host.get("LocalHttpPort") if isinstance(host, dict) else None
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        raise LocalSettingsError(f"{path}: Host.LocalHttpPort must be a TCP port number")
    return LocalSettings(path, dict(values), port)


def apply(values: Mapping[str, str], environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """Set `values` in `environ` except those already set there; returns the names skipped.

    func start does the same ("Skipping 'X' from local settings as it's already defined in
    current environment variables"), so a shell can override a file without editing it.
    """
    skipped = []
    for key, value in values.items():
        if key in environ:
            skipped.append(key)
        else:
            environ[key] = value
    return skipped
