"""Check a landed window against its manifest: every listed part present, sha256 and counts equal."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.landing.blobs import MANIFEST, SUCCESS, Landing


@dataclass
class Verification:
    """What `verify_window` found; `ok` only when nothing is missing or different."""

    prefix: str
    complete: bool = False
    parts: int = 0
    records: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.complete and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "ok": self.ok,
            "complete": self.complete,
            "parts": self.parts,
            "records": self.records,
            "problems": self.problems,
        }


def verify_window(landing: Landing, prefix: str) -> Verification:
    """Recompute each listed part's sha256, size and record count and compare with the manifest."""
    report = Verification(prefix)
    report.complete = landing.exists(f"{prefix}/{SUCCESS}")
    if not report.complete:
        report.problems.append(f"{prefix}/{SUCCESS} is missing: the window is not (or not yet) landed")
    manifest = landing.read_json(f"{prefix}/{MANIFEST}")
    if manifest is None:
        report.problems.append(f"{prefix}/{MANIFEST} is missing")
        return report
    listed = {part["name"] for part in manifest["parts"]}
    folder = manifest.get("generationFolder", "")
    for name, _ in landing.landed_parts(prefix, folder):
        if name not in listed:
            report.problems.append(f"{name} is in the generation folder but not in the manifest")
    for part in manifest["parts"]:
        path = f"{prefix}/{part['name']}"
        if not landing.exists(path):
            report.problems.append(f"{part['name']} is listed but missing")
            continue
        data = landing.read_bytes(path)
        digest = hashlib.sha256(data).hexdigest()
        if digest != part["sha256"]:
            report.problems.append(f"{part['name']} sha256 {digest} != manifest {part['sha256']}")
        if len(data) != part["bytes"]:
            report.problems.append(f"{part['name']} is {len(data)} bytes, manifest says {part['bytes']}")
        try:
            records = _count(part["name"], data)
        except (OSError, EOFError, zlib.error) as exc:
            kind = "Parquet" if _is_parquet(part["name"]) else "gzip"
            report.problems.append(f"{part['name']} is not readable {kind}: {exc}")
            records = 0
        if records != part["records"]:
            report.problems.append(f"{part['name']} holds {records} records, manifest says {part['records']}")
        report.parts += 1
        report.records += records
    totals = manifest["totals"]
    if report.records != totals["records"]:
        report.problems.append(
            f"parts hold {report.records} records, manifest totals say {totals['records']}"
        )
    if totals.get("parts") != len(manifest["parts"]):
        report.problems.append(
            f"the manifest lists {len(manifest['parts'])} parts, its totals say {totals.get('parts')}"
        )
    listed_bytes = sum(part["bytes"] for part in manifest["parts"])
    if totals.get("bytes") != listed_bytes:
        report.problems.append(
            f"the manifest's parts are {listed_bytes} bytes, its totals say {totals.get('bytes')}"
        )
    # The marker downstream steps read first: it must describe this manifest.
    if report.complete:
        try:
            marker = json.loads(landing.read_bytes(f"{prefix}/{SUCCESS}"))
        except ValueError:
            marker = None
        marked = marker.get("records") if isinstance(marker, dict) else "no readable"
        if marked != totals["records"]:
            report.problems.append(f"{SUCCESS} says {marked} records, the manifest {totals['records']}")
    return report


def read_records(landing: Landing, prefix: str) -> Iterator[Any]:
    """Every record of the parts the manifest lists, in part order (what a downstream reader sees)."""
    manifest = landing.read_json(f"{prefix}/{MANIFEST}") or {"parts": []}
    for part in manifest["parts"]:
        data = landing.read_bytes(f"{prefix}/{part['name']}")
        if _is_parquet(part["name"]):
            yield from _rows(data)
            continue
        for line in _lines(data):
            yield json.loads(line)


def _is_parquet(name: str) -> bool:
    return name.endswith(".parquet")


def _count(name: str, data: bytes) -> int:
    """Records in a part, by reading all of it (not just a footer that could lie)."""
    if not _is_parquet(name):
        return sum(1 for _ in _lines(data))
    import pyarrow as pa  # only where Parquet is read

    try:
        return sum(batch.num_rows for batch in _parquet(data).iter_batches())
    except pa.ArrowException as exc:  # ArrowInvalid is also an OSError; others are not
        raise OSError(str(exc).splitlines()[0]) from None


def _rows(data: bytes) -> Iterator[dict[str, Any]]:
    """A Parquet part's rows as a reader gets them (JSON columns stay JSON text)."""
    for batch in _parquet(data).iter_batches():
        yield from batch.to_pylist()


def _parquet(data: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.ParquetFile(pa.BufferReader(data))


def _lines(data: bytes) -> Iterator[bytes]:
    for line in gzip.decompress(data).splitlines():
        if line.strip():
            yield line
