"""Where a window lands and what of it a reader may see: the blob layout rules.

<container>/<env>/<source>/<from>_<to>/ holds `_manifest.json`, `_SUCCESS` and the parts of
generation 1; generation n lands in `gen-000n/` beside it. Every run claims its own generation
(`_generations/000n.json`, created only if absent), so a folder is written by one run only and
a part a published manifest lists is never rewritten. Part names come from the part index
alone, so a retried activity overwrites its own part and nobody else's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from shared.ingest.payloads import Segment
from shared.ingest.window import Window
from shared.landing.blobs import MANIFEST, SUCCESS
from shared.landing.parts import Checkpoint, PartInfo

log = logging.getLogger(__name__)


def window_prefix(environment: str, source: str, window: Window, *, dry_run: bool = False) -> str:
    """<env>/<source>/<from>_<to>, under _dryrun/ for dry runs."""
    path = f"{environment}/{source}/{window.folder}"
    return f"_dryrun/{path}" if dry_run else path


def part_name(index: int, segment: int | None = None, extension: str = "jsonl.gz") -> str:
    """part-00000.jsonl.gz, or part-0003-00000.jsonl.gz for segment 3 of a segmented window;
    `extension` is the output format's (part-00000.parquet)."""
    stem = f"part-{index:05d}" if segment is None else f"part-{segment:04d}-{index:05d}"
    return f"{stem}.{extension}"


def generation_folder(generation: int) -> str:
    """Where a generation's parts live, relative to the window folder: the first at its root."""
    return "" if generation <= 1 else f"gen-{generation:04d}/"


def resume(
    landed: list[tuple[str, Checkpoint | None]],
    segments: list[Segment],
    folder: str,
    extension: str = "jsonl.gz",
    *,
    chained: bool = True,
) -> list[PartInfo]:
    """Move each segment past the longest run of parts 0..n-1 an earlier attempt committed for it.

    `chained`: a part counts only if its walk began where the part before it ended. An activity
    that failed may leave parts past those its retry lands, cut elsewhere (by time, or by bytes
    when the pages changed): going on from one would skip or repeat pages. A run of empty pages
    between two parts also breaks the chain: those pages are fetched again (time, not data).
    Returns those parts' manifest entries; the segments are updated in place.
    """
    checkpoints = dict(landed)
    segmented = len(segments) > 1
    resumed: list[PartInfo] = []
    for seg in segments:
        while True:
            checkpoint = checkpoints.get(
                f"{folder}{part_name(seg.next_part, seg.index if segmented else None, extension)}"
            )
            if checkpoint is None or checkpoint.window != seg.window or checkpoint.part is None:
                break
            if chained and checkpoint.pages_before not in (None, seg.pages):
                log.info(
                    "part %d of segment %d began after page %d, not after page %d where the part "
                    "before it ended: fetching from there again",
                    seg.next_part,
                    seg.index,
                    checkpoint.pages_before,
                    seg.pages,
                )
                break
            resumed.append(checkpoint.part)
            seg.next_part += 1
            seg.cursor = checkpoint.next_cursor
            seg.pages = checkpoint.pages_after
            seg.fetched = checkpoint.done
    if resumed:
        log.info("resuming after %d landed parts", len(resumed))
    return resumed


def claim_path(prefix: str, generation: int) -> str:
    """The blob whose creation (if absent) makes a generation one run's own."""
    return f"{prefix}/_generations/{generation:04d}.json"


def folder_generation(folder: str) -> int:
    """The generation a folder (relative to the window folder) holds: 1 for the root."""
    return int(folder[4:-1]) if folder.startswith("gen-") else 1


def kept_generations(
    previous: dict[str, Any] | None, generation: int, now: datetime, grace: timedelta
) -> list[dict[str, Any]]:
    """The replaced generations the manifest being published keeps readable, with when each was replaced.

    The generation being replaced now joins them; one replaced longer ago than `grace` leaves.
    """
    if previous is None:
        return []
    kept = [
        entry
        for entry in previous.get("replaced", [])
        if now - datetime.fromisoformat(entry["replacedAt"]) <= grace
    ]
    if int(previous.get("generation", 1)) != generation:
        kept.append(
            {
                "generation": int(previous.get("generation", 1)),
                "folder": previous.get("generationFolder", ""),
                "replacedAt": now.isoformat(),
                "parts": [part["name"] for part in previous.get("parts", [])],
            }
        )
    return kept


def unlisted_parts(
    names: Iterable[str],
    prefix: str,
    listed: set[str],
    folder: str,
    kept: Iterable[str],
    *,
    only_strays: bool = False,
) -> list[str]:
    """Parts to remove: strays of this generation, and older generations no reader may still hold.

    Folders of later generations belong to runs still in flight (they lose at the manifest
    switch and clean up themselves), so they are never touched.
    """
    keep = set(kept)
    generation = folder_generation(folder)
    strays = []
    for name in names:
        relative = name[len(prefix) + 1 :]
        leaf = relative.rsplit("/", 1)[-1]
        if not leaf.startswith("part-"):
            continue
        part_folder = relative[: len(relative) - len(leaf)]
        if part_folder == folder:
            if relative not in listed:
                strays.append(name)
        elif not only_strays and part_folder not in keep and folder_generation(part_folder) < generation:
            strays.append(name)
    return strays


#: Part paths a run's summary lists; `partCount` counts them all and the manifest has every one.
MAX_LISTED_PARTS = 100


def summarize(manifest: dict[str, Any], *, skipped: bool) -> dict[str, Any]:
    """The run result ADF sees: where the data is, how much, and how to trace it."""
    prefix = manifest["prefix"]
    parts = manifest.get("parts", [])
    return {
        "status": "skipped-already-landed" if skipped else "landed",
        "source": manifest["source"],
        "window": manifest["window"],
        "container": manifest["container"],
        "prefix": prefix,
        "manifest": f"{prefix}/{MANIFEST}",
        "success": f"{prefix}/{SUCCESS}",
        # Bounded: a window of 10,000 parts must not make a 1 MB run output; the manifest lists all.
        "parts": [f"{prefix}/{p['name']}" for p in parts[:MAX_LISTED_PARTS]],
        "partCount": len(parts),
        "partsTruncated": len(parts) > MAX_LISTED_PARTS,
        "records": manifest["totals"]["records"],
        "bytes": manifest["totals"]["bytes"],
        "uncompressedBytes": manifest["totals"].get("uncompressedBytes"),
        "pages": manifest["totals"]["pages"],
        "instanceId": manifest["instanceId"],
        "pipelineRunId": manifest["pipelineRunId"],
        "firstRequestId": parts[0]["first_request_id"] if parts else None,
        "lastRequestId": parts[-1]["last_request_id"] if parts else None,
    }
