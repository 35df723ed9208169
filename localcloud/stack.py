"""The whole local stack for tests and the demo: the AWS/Entra stand-ins plus Azurite.

`Stack.app_env()` is the environment the app runs with, exactly the settings it reads in
Azure; `catalog_toml()` writes a catalog whose sources point at the local gateway.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Self

from localcloud.azurite import Azurite
from localcloud.cloud import LocalCloud
from localcloud.server import Service

# Variables that would let boto3 or azure-identity find credentials some other way than the
# federated path under test; they are removed from the app's environment.
FOREIGN_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    # Not a credential, but a shell that exports it would send test telemetry to a real resource.
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
)


def orders_source(base_url: str, **overrides: Any) -> dict[str, Any]:
    """A catalog entry for the gateway's default `orders` dataset (IAM auth, next_token)."""
    source: dict[str, Any] = {
        "environment": "dev",
        "base_url": f"{base_url}/dev",
        "path": "/orders",
        "auth": {
            "type": "aws_iam",
            "role_arn": LocalCloud.role_arn,
            "region": LocalCloud.region,
            "audience": LocalCloud.audience,
            "pipeline_roles": {"pl_orders_daily": LocalCloud.orders_role_arn},
        },
        "pagination": {"type": "next_token", "page_size": 100},
        "rate_limit": {"requests_per_second": 1000, "burst": 100},
        "retry": {
            "backoff_initial_seconds": 0.05,
            "backoff_max_seconds": 1.0,
            "activity_first_retry_seconds": 0.1,
        },
        "output": {"pages_per_part": 10},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(source.get(key), dict):
            source[key] = {**source[key], **value}
        else:
            source[key] = value
    return source


def catalog_toml(sources: dict[str, dict[str, Any]]) -> str:
    """Render catalog sources as TOML (tables of scalars and inline tables)."""
    lines: list[str] = []
    for name, body in sources.items():
        lines.append(f"[sources.{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in body.items())
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # TOML basic strings share JSON's escapes for what we write
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


class Stack(Service):
    """LocalCloud (identity, STS, gateway) and Azurite, started and stopped together."""

    def __init__(self, workdir: Path | None = None, *, azurite_services: tuple[str, ...] = ("blob",)) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="apigw-adf-bridge-"))
        self.cloud = LocalCloud()
        self.azurite = Azurite(self.workdir / "azurite", services=azurite_services)

    def start(self) -> Self:
        (self.workdir / "azurite").mkdir(parents=True, exist_ok=True)
        try:
            self.cloud.start()
            self.azurite.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.cloud.stop()
        self.azurite.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def write_catalog(self, sources: dict[str, dict[str, Any]], path: Path | None = None) -> Path:
        path = path or self.workdir / "catalog.toml"
        path.write_text(catalog_toml(sources))
        return path

    def app_env(
        self, catalog: Path, *, container: str = "landing", state_dir: Path | None = None
    ) -> dict[str, str]:
        """The app settings for this stack, as a Function App would have them."""
        return {
            **self.cloud.env(),
            **self.cloud.keyvault_env(),
            "APP_ENVIRONMENT": "dev",
            "SOURCE_CATALOG_PATH": str(catalog),
            "LANDING_CONNECTION_STRING": self.azurite.connection_string,
            "LANDING_CONTAINER": container,
            "LANDING_CREATE_CONTAINER": "true",
            "RUN_STATE_DIR": str(state_dir or self.workdir / "state"),
        }
