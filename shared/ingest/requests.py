"""What callers send: bodies of POST /api/ingest, /api/backfill and /api/probe (the CLI builds them too)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from shared.errors import RequestError
from shared.ingest.window import Every, parse_every

Mode = Literal["skip-if-complete", "replace"]
ModelT = TypeVar("ModelT", bound=BaseModel)


class _Edge(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class WindowBody(_Edge):
    start: str = Field(alias="from")
    end: str = Field(alias="to")


def _every(value: object) -> Every:
    try:
        return parse_every(value)
    except RequestError as exc:
        # A custom error keeps pydantic's "Value error, " prefix out; parse_request names the field.
        raise PydanticCustomError("every", exc.reason) from None


# Months and years are calendar steps (P1M from Jan 1 lands Jan 1-Feb 1, Feb 1-Mar 1, ...), which a
# timedelta cannot hold: pydantic would read P1M as 30 days.
Step = Annotated[
    Every,
    BeforeValidator(_every),
    PlainSerializer(lambda every: every.text, return_type=str),
    WithJsonSchema({"type": "string", "format": "duration"}),
]


def run_text(value: str | None, info: ValidationInfo) -> str | None:
    """Pipeline run ids and names: printable; the run id ASCII, as it travels in a header."""
    if value is not None and (not value.strip() or not value.isprintable()):
        raise ValueError("must be non-blank printable text")
    if value is not None and info.field_name == "pipeline_run_id" and not value.isascii():
        raise ValueError("must be ASCII (it is sent as the x-correlation-id header)")
    return value


class IngestRequest(_Edge):
    """POST /api/ingest body (also built by the CLI)."""

    source: str = Field(min_length=1, max_length=63)
    window: WindowBody
    pipeline_run_id: str | None = Field(None, alias="pipelineRunId", max_length=200)
    pipeline_name: str | None = Field(None, alias="pipelineName", max_length=260)
    mode: Mode = "skip-if-complete"
    dry_run: bool = Field(False, alias="dryRun")

    _run_text = field_validator("pipeline_run_id", "pipeline_name")(lambda value, info: run_text(value, info))


class BackfillRequest(_Edge):
    """POST /api/backfill body (also built by the CLI)."""

    source: str = Field(min_length=1, max_length=63)
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    every: Step = Field(description="ISO8601 duration of each window, at least PT1M: PT1H, P1D, P1M, P1Y.")
    max_parallel: int = Field(4, alias="maxParallel", ge=1, le=32)
    pipeline_run_id: str | None = Field(None, alias="pipelineRunId", max_length=200)
    pipeline_name: str | None = Field(None, alias="pipelineName", max_length=260)
    mode: Mode = "skip-if-complete"

    _run_text = field_validator("pipeline_run_id", "pipeline_name")(lambda value, info: run_text(value, info))


class ProbeRequest(_Edge):
    """POST /api/probe body."""

    source: str = Field(min_length=1, max_length=63)


def parse_request(model: type[ModelT], body: Any) -> ModelT:
    """Validate a request body; the first problem becomes a RequestError naming the field."""
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in err["loc"]) or "body"
        reason = err["msg"]
        if err["type"] == "missing":
            reason = "is required"
        elif err["type"] == "extra_forbidden":
            reason = "is not a known field"
        elif err["type"] == "literal_error":
            reason = f"must be one of {err.get('ctx', {}).get('expected', 'the documented values')}"
        raise RequestError(field, reason) from None
