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
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from shared.config.auth import Auth
from shared.config.model import Model as _Model
from shared.config.pagination import NextTokenPagination, Pagination
from shared.config.settings import Environment
from shared.errors import ConfigError, RequestError

SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


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


class RateLimit(_Model):
    """Client-side token bucket per source and worker process."""

    requests_per_second: float = Field(10.0, gt=0, description="Sustained requests/s per worker process.")
    burst: int = Field(10, ge=1, description="Requests that may go at once after a quiet spell.")
    max_concurrent_runs: int = Field(
        4, ge=1, description="Admission control: running ingests of this source; beyond it starts get 429."
    )


class RetryPolicy(_Model):
    """Retries of one request (tenacity) and of one activity (Durable RetryOptions)."""

    max_attempts: int = Field(6, ge=1, le=20, description="Attempts per page request, the first included.")
    max_elapsed_seconds: float = Field(
        120.0, gt=0, description="Time one page may take over all its attempts, enforced mid-attempt too."
    )
    backoff_initial_seconds: float = Field(
        0.5, gt=0, description="First backoff of the exponential, fully jittered wait between attempts."
    )
    backoff_max_seconds: float = Field(
        20.0, gt=0, description="Longest backoff; a server's Retry-After is honoured up to 3x this."
    )
    retry_on_500: bool = Field(False, description="Retry HTTP 500 too (429, 502, 503, 504 always are).")
    connect_timeout_seconds: float = Field(5.0, gt=0, description="Connecting to the API, per attempt.")
    read_timeout_seconds: float = Field(
        30.0, gt=0, description="Between bytes of an answer; an attempt ends after connect + read timeout."
    )
    activity_attempts: int = Field(
        3, ge=1, le=10, description="Durable RetryOptions: attempts of an activity that failed transiently."
    )
    activity_first_retry_seconds: float = Field(
        5.0, ge=0, description="Durable RetryOptions: the wait before an activity's second attempt."
    )


class Output(_Model):
    """Where and how records land."""

    container: str | None = Field(None, description="Overrides LANDING_CONTAINER for this source.")
    format: Literal["jsonl.gz", "parquet"] = Field(
        "jsonl.gz",
        description="File format of the parts: gzip JSON Lines (records exactly as received), or Parquet "
        "(typed columns inferred from the records; README \"Output formats\" has the schema policy). "
        "It is also the parts' file extension.",
    )
    parquet_compression: Literal["snappy", "zstd"] = Field(
        "snappy",
        description="Codec of Parquet parts: snappy is read by every Parquet reader (ADF's Copy included); "
        "zstd is about half the size, for readers known to take it (Spark, Fabric, DuckDB).",
    )
    pages_per_part: int = Field(500, ge=1, description="Pages per part; also the checkpoint interval.")
    max_part_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Uncompressed bytes per part (for Parquet: decoded Arrow bytes, also the size of "
        "the part's local spool file).",
    )
    parts_per_execution: int = Field(
        20, ge=1, description="continue_as_new after this many parts keeps durable history small."
    )
    parts_per_activity: int = Field(
        4,
        ge=1,
        le=100,
        description="Parts one fetch_part activity lands at most, each committed while the next is "
        "fetched: fewer activity hops and no wait for a commit between parts. A retried activity "
        "refetches the parts it had landed; activity_seconds bounds how long that is.",
    )
    activity_seconds: float = Field(
        120.0,
        gt=0,
        description="How long one fetch_part activity lands parts: past it, the part under way ends "
        "after the page in flight and no further part starts, so however slow the API an activity "
        "runs about this long plus one page. With retry.max_elapsed_seconds (one page's most) it must "
        "stay under host.json's functionTimeout less a minute: 540 s.",
    )
    keep_replaced_for: timedelta = Field(
        timedelta(hours=24),
        description="How long a replaced generation's parts stay after its replacement is published "
        "(ISO 8601, e.g. PT24H): a reader holding the old manifest may read it that long.",
    )


#: host.json's functionTimeout (tests/test_schemas.py holds the two equal): past it the host
#: kills an activity, and a retried one would be killed the same way.
FUNCTION_TIMEOUT_SECONDS = 600
#: What an activity needs beyond its time for parts and its last page: set-up (credentials) and
#: the commits it waits for at the end.
_ACTIVITY_MARGIN_SECONDS = 60


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
    pagination: Pagination = Field(default_factory=NextTokenPagination)
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
        if "@" in parts.netloc:
            # Never sent (requests go out with the host alone) and a secret in every error line.
            raise ValueError("must not carry user:password@; an API key goes in auth.api_key_secret")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _production_is_https(self) -> Source:
        if self.environment is Environment.prod and not self.base_url.startswith("https://"):
            raise ValueError("base_url must be https for a prod source")
        return self

    @model_validator(mode="after")
    def _activity_fits_the_function_timeout(self) -> Source:
        # The part under way ends after the page in flight, which may take its whole budget.
        longest = self.output.activity_seconds + self.retry.max_elapsed_seconds
        if longest > FUNCTION_TIMEOUT_SECONDS - _ACTIVITY_MARGIN_SECONDS:
            raise ValueError(
                f"output.activity_seconds ({self.output.activity_seconds:g}) + retry.max_elapsed_seconds "
                f"({self.retry.max_elapsed_seconds:g}) = {longest:g} s: an activity may run that long and "
                f"the host stops it at {FUNCTION_TIMEOUT_SECONDS} s (host.json functionTimeout); keep the "
                f"sum under {FUNCTION_TIMEOUT_SECONDS - _ACTIVITY_MARGIN_SECONDS} s"
            )
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
    except IsADirectoryError:
        raise ConfigError(
            f"source catalog {path} is a folder, not a TOML file (set SOURCE_CATALOG_PATH)"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"source catalog {path} is not UTF-8 text (set SOURCE_CATALOG_PATH)") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"source catalog {path} cannot be read: {reason} (SOURCE_CATALOG_PATH)") from None
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
