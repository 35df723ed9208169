"""What crosses durable history: orchestrator inputs and activity inputs and results.

Everything here is small and secret-free by construction: these values are persisted in the
durable task hub's history and returned to ADF.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.ingest.requests import Mode
from shared.landing.parts import PartInfo


class _Edge(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class Correlated(_Edge):
    """Who a payload works for: logged and traced with every activity, sent on every request."""

    pipeline_run_id: str | None = None
    pipeline_name: str | None = None
    instance_id: str | None = None


class ActivityRetry(_Edge):
    """Durable RetryOptions for the activities of one run, fixed at start from the catalog."""

    attempts: int = 3
    first_retry_ms: int = 5000


class Segment(_Edge):
    """A sub-window walked on its own, with its own cursor and parts (one when not segmenting)."""

    index: int
    window: dict[str, str]
    cursor: str | None = None
    next_part: int = 0
    pages: int = 0
    fetched: bool = False
    # Cycle detection across parts (shared.gateway.client.CursorTrail), bounded in size.
    trail: dict[str, Any] | None = None


class Placement(_Edge):
    """Where a window lands, as plan_window decides it and the run then carries it."""

    generation: int = 1
    folder: str = ""
    previous_folder: str | None = None
    manifest_etag: str | None = None
    claimed: bool = False
    segments: list[Segment] = Field(default_factory=list)


class IngestState(Placement):
    """The ingest orchestrator's input, carried across continue_as_new."""

    source: str
    window: dict[str, str]
    pipeline_run_id: str
    pipeline_name: str | None = None
    mode: Mode = "skip-if-complete"
    dry_run: bool = False
    role_arn: str | None = None
    session_name: str | None = None
    retry: ActivityRetry = Field(default_factory=ActivityRetry)
    parts_per_execution: int = 20
    #: Which journal drives this instance (the CLI's RUN_STATE_DIR); None under the Durable host,
    #: whose task hub already keeps one execution per instance id.
    owner: str | None = None
    # Progress, checkpointed in history:
    planned: bool = False
    prefix: str | None = None
    max_parallel_segments: int = 1
    #: Counted, not listed: each part's manifest entry lives in its checkpoint (blob metadata),
    #: and finalize reads them back, so the state stays small however many parts a window has.
    part_count: int = 0
    records: int = 0
    #: Filled by finalize from the checkpoints; empty across history.
    parts: list[PartInfo] = Field(default_factory=list)
    started_at: str | None = None
    executions: int = 1

    def correlation(self, instance_id: str) -> dict[str, Any]:
        """The Correlated fields of this run, for the activities it schedules."""
        return {
            "pipeline_run_id": self.pipeline_run_id,
            "pipeline_name": self.pipeline_name,
            "instance_id": instance_id,
        }


class FetchPartInput(Correlated):
    pipeline_run_id: str
    instance_id: str
    source: str
    window: dict[str, str]
    prefix: str
    folder: str = ""
    segment: int | None = None
    part_index: int
    cursor: str | None
    pages_before: int
    role_arn: str | None
    session_name: str | None
    max_pages: int | None = None
    trail: dict[str, Any] | None = None


class FetchPartResult(_Edge):
    #: The last part landed (None when none had records), and how many were (parts_per_activity).
    part: PartInfo | None
    parts: int
    next_cursor: str | None
    done: bool
    pages: int
    records: int
    trail: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_part_before_parts_were_counted(cls, data: Any) -> Any:
        # Results in the history of a run started before `parts` existed landed one part at most.
        if isinstance(data, dict) and "parts" not in data:
            return {**data, "parts": int(data.get("part") is not None)}
        return data


class PlanInput(Correlated):
    source: str
    window: dict[str, str]
    mode: Mode
    dry_run: bool
    owner: str | None = None


class PlanResult(Placement):
    prefix: str
    complete: bool
    summary: dict[str, Any] | None = None
    #: How many parts (and records) earlier attempts committed: counts, the entries stay in blobs.
    resumed_parts: int = 0
    resumed_records: int = 0


class BackfillFailure(_Edge):
    """A window that failed: kept in the backfill's state for the first MAX_LISTED_FAILURES."""

    index: int
    window: dict[str, str]
    error: str


class BackfillCounts(_Edge):
    """How many windows a backfill finished, by outcome, and the records they landed."""

    done: int = 0
    landed: int = 0
    skipped: int = 0
    failed: int = 0
    records: int = 0

    def add(self, status: str, records: int) -> None:
        """Count one finished window."""
        self.done += 1
        if status == "failed":
            self.failed += 1
        elif status == "skipped-already-landed":
            self.skipped += 1
        else:
            self.landed += 1
        self.records += records


class BackfillState(_Edge):
    """The backfill orchestrator's input, carried across continue_as_new: bounded whatever the range.

    Windows are not listed: window i is derived from (start, every, i), so the state is the same
    size for 10 windows or 100,000. Per-window outcomes go to the manifest blobs, not here.
    """

    template: IngestState
    environment: str
    start: str
    end: str
    every: str  # ISO 8601: PT1H, P1D, P1M
    count: int
    max_parallel: int
    #: Windows finished per execution before continue_as_new: bounds the history a replay reads.
    batch_size: int = 50
    #: Folder (in the source's container) of the per-window outcome blobs, one per batch.
    manifest: str
    # Progress, checkpointed across executions:
    next_index: int = 0
    batch: int = 0
    counts: BackfillCounts = Field(default_factory=BackfillCounts)
    failures: list[BackfillFailure] = Field(default_factory=list)
    started_at: str | None = None


class BackfillRecordInput(_Edge):
    """One batch of per-window outcomes for the backfill manifest."""

    source: str
    path: str
    backfill: str
    batch: int
    windows: list[dict[str, Any]]


class FinalizeInput(_Edge):
    state: IngestState
    instance_id: str
