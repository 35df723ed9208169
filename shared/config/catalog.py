"""The source catalog: which APIs exist, how to reach, page and land them.

A TOML file shipped with the app (path from SOURCE_CATALOG_PATH), validated at start-up.
A broken catalog fails with the file, the source and the field that is wrong.
"""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.config.settings import Environment
from shared.errors import ConfigError, RequestError

SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
# Key Vault's rule for secret names.
KEY_VAULT_NAME = r"^[0-9A-Za-z-]{1,127}$"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WindowMapping(_Model):
    """How a time window [from, to) becomes query parameters."""

    from_param: str = "from"
    to_param: str = "to"
    format: Literal["iso8601", "epoch_s", "epoch_ms", "date"] = "iso8601"
    max_span: timedelta = Field(timedelta(days=31), description="Longest window one run may ask for.")
    segment: timedelta | None = Field(
        None, description="Split each window into sub-windows this long, walked concurrently (e.g. PT1H)."
    )
    max_parallel_segments: int = Field(4, ge=1, le=32, description="Sub-windows fetched at once.")


class AwsIamAuth(_Model):
    """IAM authorisation: Entra token -> STS AssumeRoleWithWebIdentity -> SigV4 for execute-api.

    With `api_key_secret` the request also carries `x-api-key` (REST APIs with a usage plan),
    signed with the rest. SourceIdentity and session tags cannot be configured here:
    AssumeRoleWithWebIdentity takes them only from the Entra token's claims
    `https://aws.amazon.com/source_identity` and `https://aws.amazon.com/tags`.
    """

    type: Literal["aws_iam"]
    role_arn: str = Field(description="Default role assumed for this source.")
    pipeline_roles: dict[str, str] = Field(
        default_factory=dict, description="ADF pipeline name -> role ARN, so CloudTrail shows who did what."
    )
    require_pipeline_role: bool = Field(False, description="Refuse pipelines without their own role.")
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    audience: str = Field(min_length=1, description="Entra application ID URI the AWS OIDC provider trusts.")
    session_duration_seconds: int = Field(3600, ge=900, le=43200)
    api_key_secret: str | None = Field(
        None,
        pattern=KEY_VAULT_NAME,
        description="Secret (in the secret store) holding an x-api-key to send as well; none if unset.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_client_side_session_claims(cls, data: object) -> object:
        if isinstance(data, dict) and {"source_identity", "session_tags"} & data.keys():
            raise ValueError(
                "source_identity and session_tags cannot be set by the client: AssumeRoleWithWebIdentity "
                "takes them only from the Entra token's claims https://aws.amazon.com/source_identity "
                "and https://aws.amazon.com/tags"
            )
        return data

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str) -> str:
        if not ROLE_ARN.match(value):
            raise ValueError("must be an IAM role ARN like arn:aws:iam::123456789012:role/name")
        return value

    @field_validator("pipeline_roles")
    @classmethod
    def _pipeline_roles(cls, value: dict[str, str]) -> dict[str, str]:
        for pipeline, arn in value.items():
            if not ROLE_ARN.match(arn):
                raise ValueError(f"role for pipeline {pipeline!r} must be an IAM role ARN")
        return value

    def role_for(self, pipeline_name: str | None, source: str) -> str:
        """The role this pipeline runs as; refuses unmapped pipelines when the source requires it."""
        if pipeline_name and pipeline_name in self.pipeline_roles:
            return self.pipeline_roles[pipeline_name]
        if self.require_pipeline_role:
            raise RequestError(
                "pipelineName",
                f"pipeline {pipeline_name!r} has no role mapped for this source and it requires one",
                source=source,
            )
        return self.role_arn


class ApiKeyAuth(_Model):
    """An API key only: `x-api-key` from a secret. The catalog names the secret, never the key."""

    type: Literal["api_key"]
    api_key_secret: str = Field(
        pattern=KEY_VAULT_NAME, description="Secret (in the secret store) holding the x-api-key."
    )


class JwtAuth(_Model):
    """An HTTP API JWT authorizer: the app's Entra access token for `audience` as a bearer token."""

    type: Literal["jwt"]
    audience: str = Field(min_length=1, description="Entra application ID URI the JWT authorizer accepts.")


class NoAuth(_Model):
    """A public API (or one protected only by network rules)."""

    type: Literal["none"]


Auth = Annotated[AwsIamAuth | ApiKeyAuth | JwtAuth | NoAuth, Field(discriminator="type")]


class Pagination(_Model):
    """How to find records in a page and the request for the next one."""

    type: Literal["next_token", "next_url", "link_header", "offset", "page_number", "cursor", "none"] = Field(
        "next_token", description="Pagination style."
    )
    records_path: str = Field(
        "items", description="Dotted path to the record list; empty if the body is one."
    )
    page_size_param: str = Field("limit", description="Query parameter for the page size; empty for none.")
    page_size: int = Field(100, ge=1, le=10_000, description="Records asked for per page.")
    token_path: str = Field("next_token", description="next_token: dotted path to the token in the body.")
    token_param: str = Field(
        "next_token", description="next_token: query parameter (or header) carrying it back."
    )
    token_in: Literal["query", "header"] = Field(
        "query", description="next_token: send the token as query or header."
    )
    next_url_path: str = Field("links.next", description="next_url: dotted path to the next page's URL.")
    offset_param: str = Field("offset", description="offset: query parameter of the record offset.")
    total_path: str = Field("", description="offset: dotted path to the total record count, if reported.")
    page_param: str = Field("page", description="page_number: query parameter of the page number.")
    first_page: int = Field(1, ge=0, description="page_number: number of the first page.")
    total_pages_path: str = Field("", description="page_number: dotted path to the page count, if reported.")
    cursor_param: str = Field("after", description="cursor: query parameter carrying the last record's key.")
    cursor_field: str = Field("id", description="cursor: record field whose value continues the walk.")
    has_more_path: str = Field("", description="cursor: dotted path to a has-more flag, if reported.")
    max_pages: int = Field(100_000, ge=1, description="Loop guard: a window needing more pages fails.")
    stop_on_empty_page: bool = Field(True, description="An empty page ends the window even if it has a next.")
    max_page_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="A larger page is an error, not an OOM."
    )


class RateLimit(_Model):
    """Client-side token bucket per source and worker process."""

    requests_per_second: float = Field(10.0, gt=0, description="Sustained requests/s per worker process.")
    burst: int = Field(10, ge=1, description="Requests that may go at once after a quiet spell.")
    max_concurrent_runs: int = Field(
        4, ge=1, description="Admission control: running ingests of this source; beyond it starts get 429."
    )


class RetryPolicy(_Model):
    """Retries of one request (tenacity) and of one activity (Durable RetryOptions)."""

    max_attempts: int = Field(6, ge=1, le=20)
    max_elapsed_seconds: float = Field(120.0, gt=0)
    backoff_initial_seconds: float = Field(0.5, gt=0)
    backoff_max_seconds: float = Field(20.0, gt=0)
    retry_on_500: bool = False
    connect_timeout_seconds: float = Field(5.0, gt=0)
    read_timeout_seconds: float = Field(30.0, gt=0)
    activity_attempts: int = Field(3, ge=1, le=10)
    activity_first_retry_seconds: float = Field(5.0, ge=0)


class Output(_Model):
    """Where and how records land."""

    container: str | None = Field(None, description="Overrides LANDING_CONTAINER for this source.")
    pages_per_part: int = Field(500, ge=1, description="Pages per part; also the checkpoint interval.")
    max_part_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Uncompressed bytes per part.")
    parts_per_execution: int = Field(
        20, ge=1, description="continue_as_new after this many parts keeps durable history small."
    )


class Source(_Model):
    """One API Gateway resource and everything needed to land a window of it."""

    name: str
    environment: Environment
    base_url: str
    path: str = Field(pattern=r"^/[\w\-./~%]*$")
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, str] = Field(default_factory=dict)
    window: WindowMapping = Field(default_factory=WindowMapping)
    auth: Auth
    pagination: Pagination = Field(default_factory=Pagination)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    output: Output = Field(default_factory=Output)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SOURCE_NAME.match(value):
            raise ValueError("must be lowercase letters, digits, '-' or '_' (it becomes a blob path)")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment; use params")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _production_is_https(self) -> Source:
        if self.environment is Environment.prod and not self.base_url.startswith("https://"):
            raise ValueError("base_url must be https for a prod source")
        return self

    @cached_property
    def endpoint(self) -> str:
        """The full URL of the resource, without query."""
        return self.base_url + self.path

    @cached_property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, host, port) that signed requests may be sent to."""
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.scheme, (parts.hostname or "").lower(), port


class Catalog(_Model):
    """All sources, keyed by name."""

    sources: dict[str, Source]

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("sources"), dict):
            data = dict(data)
            data["sources"] = {
                name: {"name": name, **body} if isinstance(body, dict) else body
                for name, body in data["sources"].items()
            }
        return data

    def get(self, name: str, environment: Environment) -> Source:
        """The named source, refusing unknown names and sources labelled for another environment."""
        source = self.sources.get(name)
        if source is None:
            known = ", ".join(sorted(self.sources)) or "none"
            raise RequestError("source", f"unknown source {name!r} (known: {known})")
        if source.environment != environment:
            raise RequestError(
                "source",
                f"source {name!r} is labelled {source.environment.value!r} "
                f"but this app runs in {environment.value!r}",
                source=name,
            )
        return source


def load_catalog(path: Path) -> Catalog:
    """Parse and validate the catalog file; errors name the file, source and field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"source catalog {path} does not exist (set SOURCE_CATALOG_PATH)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"source catalog {path} is not valid TOML: {exc}") from None
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = [str(part) for part in err["loc"]]
            if len(loc) >= 2 and loc[0] == "sources":
                where = f"source {loc[1]!r} field {'.'.join(loc[2:]) or '(whole source)'}"
            else:
                where = f"field {'.'.join(loc) or '(top level)'}"
            problems.append(f"{where}: {err['msg']}")
        raise ConfigError(f"source catalog {path} is invalid: " + "; ".join(problems)) from None
