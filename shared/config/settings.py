"""App settings, read once from environment variables (Function App application settings).

Names are the ones documented in README.md and local.settings.example.json. Settings read by
our dependencies themselves (IDENTITY_ENDPOINT/IDENTITY_HEADER and AZURE_CLIENT_ID by
azure-identity, AWS_ENDPOINT_URL_STS and AWS_REGION by botocore) are listed there too but not
parsed here: passing them through untouched is what keeps local and cloud on one code path.
"""

from __future__ import annotations

import binascii
import os
from base64 import b64decode
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared.errors import ConfigError

APP_ROOT = Path(__file__).resolve().parents[2]


class Environment(StrEnum):
    """Deployment environment; prefixes landing paths and gates which sources may run."""

    dev = "dev"
    stage = "stage"
    prod = "prod"


class Settings(BaseModel):
    """Every setting the app reads itself."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    environment: Environment = Field(
        Environment.dev, alias="APP_ENVIRONMENT", description="dev, stage or prod."
    )
    catalog_path: Path = Field(
        APP_ROOT / "catalog.toml",
        alias="SOURCE_CATALOG_PATH",
        description="Path of the source catalog (TOML); relative paths are taken from the app root.",
    )
    landing_connection_string: str | None = Field(
        None,
        alias="LANDING_CONNECTION_STRING",
        description="Blob Storage connection string; for local runs against Azurite only.",
    )
    landing_account_url: str | None = Field(
        None,
        alias="LANDING_ACCOUNT_URL",
        description="Blob Storage account URL, used with the managed identity in Azure.",
    )
    landing_container: str = Field(
        "landing", alias="LANDING_CONTAINER", description="Container that receives landed windows."
    )
    landing_create_container: bool = Field(
        False,
        alias="LANDING_CREATE_CONTAINER",
        description="Create the landing container when it is missing instead of failing.",
    )
    state_dir: Path = Field(
        APP_ROOT / ".state",
        alias="RUN_STATE_DIR",
        description="Where the CLI keeps orchestration journals so a killed run resumes.",
    )
    key_vault_url: str | None = Field(
        None,
        alias="KEY_VAULT_URL",
        pattern=r"^(https://\S+)?$",
        description="Key Vault holding the secrets sources name (API keys), https://<vault>.vault.azure.net.",
    )
    secrets_provider: Literal["keyvault", "env"] = Field(
        "keyvault",
        alias="SECRETS_PROVIDER",
        description="Where secrets are read: keyvault, or env (SECRET_<NAME> variables, for local runs).",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        alias="LOG_FORMAT",
        description=(
            "Log lines of the command line on stderr: text, or json (one object a line, with the run id, "
            "instance id, source, window, page and API request id where known). In Azure the Functions "
            "host ships log records itself."
        ),
    )
    applicationinsights_connection_string: str | None = Field(
        None,
        alias="APPLICATIONINSIGHTS_CONNECTION_STRING",
        pattern=r"^(.*InstrumentationKey=[^;]+.*)?$",
        description=(
            "Application Insights connection string; when set, traces (activities, pages, STS calls) and "
            "metrics are exported there. Unset: nothing is exported."
        ),
    )
    probe_schedule: str | None = Field(
        None,
        alias="PROBE_SCHEDULE",
        description=(
            "When to probe the sources on a timer (NCRONTAB with seconds, e.g. 0 */15 * * * *), each "
            "result an Application Insights availability result. Unset or empty: no timer function."
        ),
    )
    probe_sources: tuple[str, ...] = Field(
        (),
        alias="PROBE_SOURCES",
        description=(
            "Comma-separated sources the timer probes; empty: every catalog source labelled for "
            "APP_ENVIRONMENT."
        ),
    )

    @field_validator("probe_schedule", mode="before")
    @classmethod
    def _probe_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip() or None
            # NCRONTAB has six fields, seconds first: a five-field cron would fire at the wrong times.
            if value is not None and len(value.split()) != 6:
                raise ValueError(
                    "must be an NCRONTAB expression of six fields, seconds first (e.g. 0 */15 * * * *)"
                )
        return value

    @field_validator("probe_sources", mode="before")
    @classmethod
    def _probe_sources(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("landing_connection_string")
    @classmethod
    def _connection_string(cls, value: str | None) -> str | None:
        if value:
            try:
                check_connection_string(value)
            except ValueError as exc:  # without pydantic's "Value error, " prefix
                raise PydanticCustomError("connection_string", str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_storage_target(self) -> Self:
        if not (self.landing_connection_string or self.landing_account_url):
            raise ValueError("set LANDING_CONNECTION_STRING (local) or LANDING_ACCOUNT_URL (Azure)")
        return self

    @model_validator(mode="after")
    def _production_uses_identities_only(self) -> Self:
        if self.environment is not Environment.prod:
            return self
        if self.landing_connection_string:
            raise ValueError(
                "LANDING_CONNECTION_STRING is for local runs (it carries an account key); "
                "in prod set LANDING_ACCOUNT_URL and use the managed identity"
            )
        if self.secrets_provider == "env":
            raise ValueError("SECRETS_PROVIDER=env is for local runs; prod reads secrets from Key Vault")
        if self.landing_account_url and not self.landing_account_url.startswith("https://"):
            raise ValueError("LANDING_ACCOUNT_URL must be https in prod")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; a bad value raises ConfigError naming the variable."""
        source = dict(os.environ if env is None else env)
        try:
            settings = cls.model_validate(source)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_alias(err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
            )
            raise ConfigError(f"invalid app settings: {problems}") from None
        sts_endpoint = source.get("AWS_ENDPOINT_URL_STS", "")
        if settings.environment is Environment.prod and sts_endpoint.startswith("http://"):
            raise ConfigError(
                f"invalid app settings: AWS_ENDPOINT_URL_STS must be https in prod, not {sts_endpoint}"
            )
        if not settings.catalog_path.is_absolute():
            settings = settings.model_copy(update={"catalog_path": APP_ROOT / settings.catalog_path})
        return settings


def check_connection_string(value: str) -> None:
    """Refuse a Blob Storage connection string the SDK would choke on later, mid-run.

    Checked as azure-storage-blob parses it (key=value pairs split on ';', keys case-insensitive);
    reasons name keys, never values, since the string carries the account key.
    """
    pairs = [part.split("=", 1) for part in value.rstrip(";").split(";")]
    if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
        raise ValueError("is malformed: expected Key=Value pairs separated by ';' (AccountName=…;…)")
    keys = {key.strip().upper(): val for key, val in pairs}
    if keys.get("USEDEVELOPMENTSTORAGE", "").lower() == "true":
        return
    if "BLOBENDPOINT" in keys:
        endpoint = urlsplit(keys["BLOBENDPOINT"])
        try:
            endpoint.port  # noqa: B018 - a port outside 0-65535 raises here
        except ValueError:
            raise ValueError("has a BlobEndpoint with an invalid port") from None
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            raise ValueError("has a BlobEndpoint that is not an http(s) URL with a host")
    elif "ACCOUNTNAME" not in keys:
        raise ValueError("names no account: add AccountName (and AccountKey) or BlobEndpoint")
    if "ACCOUNTKEY" in keys:
        if "ACCOUNTNAME" not in keys:
            raise ValueError("has an AccountKey but no AccountName")
        try:
            b64decode(keys["ACCOUNTKEY"], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("has an AccountKey that is not base64") from None
    elif "SHAREDACCESSSIGNATURE" not in keys:
        raise ValueError("has no credential: add AccountKey or SharedAccessSignature")


def _alias(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "settings"
    field = Settings.model_fields.get(str(loc[0]))
    return (field.alias if field and field.alias else str(loc[0])) or "settings"
