"""Landing in Blob Storage: gzip JSONL parts, then `_manifest.json`, then `_SUCCESS`, last.

Layout: <container>/<env>/<source>/<from>_<to>/part-00000.jsonl.gz. Part names come from the
part index alone, so a retried activity overwrites its own part. Parts stream into staged
blocks and are committed once, so memory is bounded by the block size, not the window, and
a part is either wholly there or absent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import zlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient, ContentSettings

from shared.errors import LandingError
from shared.landing.jsonl import encode_lines

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
BLOCK_SIZE = 4 * 1024 * 1024
# Measured on the emulator's records (bench/RESULTS.md): level 3 compresses 7.5x at 145 MB/s,
# level 6 8.5x at 73 MB/s; the page path is CPU-bound, storage is cheap.
GZIP_LEVEL = 3


@dataclass(frozen=True)
class PartInfo:
    """What the manifest records about one committed part."""

    name: str
    records: int
    bytes: int
    uncompressed_bytes: int
    sha256: str
    first_request_id: str | None
    last_request_id: str | None
    started_at: str
    finished_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def part_name(index: int, segment: int | None = None) -> str:
    """part-00000.jsonl.gz, or part-0003-00000.jsonl.gz for segment 3 of a segmented window."""
    return f"part-{index:05d}.jsonl.gz" if segment is None else f"part-{segment:04d}-{index:05d}.jsonl.gz"


def generation_folder(generation: int) -> str:
    """Where a generation's parts live, relative to the window folder: the first at its root."""
    return "" if generation <= 1 else f"gen-{generation:04d}/"


def encode_checkpoint(document: dict[str, Any]) -> str:
    """A JSON document as a blob metadata value (ASCII only)."""
    return base64.urlsafe_b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def decode_checkpoint(value: str) -> dict[str, Any] | None:
    try:
        document = json.loads(base64.urlsafe_b64decode(value.encode()))
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


class PartWriter:
    """Streams records into one gzip JSONL part as staged blocks; `commit` makes it visible."""

    def __init__(self, container: ContainerClient, prefix: str, name: str, metadata: dict[str, str]) -> None:
        self._blob = container.get_blob_client(f"{prefix}/{name}")
        self.name = name
        self._metadata = metadata
        self._started = _now()
        self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip container
        self._buffer = bytearray()
        self._blocks: list[BlobBlock] = []
        self._sha = hashlib.sha256()
        self.records = 0
        self.uncompressed = 0
        self.compressed = 0
        self.first_request_id: str | None = None
        self.last_request_id: str | None = None

    def write(self, records: list[Any], request_id: str | None, *, nonstandard_json: bool = False) -> None:
        """Append a page's records."""
        if not records:
            return
        raw = encode_lines(records, nonstandard=nonstandard_json)
        self.records += len(records)
        self.uncompressed += len(raw)
        self._buffer += self._compressor.compress(raw)
        if self.first_request_id is None:
            self.first_request_id = request_id
        self.last_request_id = request_id
        if len(self._buffer) >= BLOCK_SIZE:
            self._stage(bytes(self._buffer))
            self._buffer.clear()

    def commit(self, checkpoint: dict[str, Any]) -> PartInfo:
        """Flush, stage the last block and commit the block list in one call.

        The part's own manifest entry and `checkpoint` (where the walk goes on after it) ride
        along as metadata, so a later run can resume from what was landed.
        """
        self._buffer += self._compressor.flush()
        if self._buffer:
            self._stage(bytes(self._buffer))
            self._buffer.clear()
        info = PartInfo(
            name=self.name,
            records=self.records,
            bytes=self.compressed,
            uncompressed_bytes=self.uncompressed,
            sha256=self._sha.hexdigest(),
            first_request_id=self.first_request_id,
            last_request_id=self.last_request_id,
            started_at=self._started,
            finished_at=_now(),
        )
        metadata = {**self._metadata, "checkpoint": encode_checkpoint({**checkpoint, "part": info.to_json()})}
        try:
            self._blob.commit_block_list(
                self._blocks,
                content_settings=ContentSettings(content_type="application/gzip"),
                metadata=metadata,
            )
        except AzureError as exc:
            raise LandingError(f"could not commit {self._blob.blob_name}: {_reason(exc)}") from None
        return info

    def _stage(self, data: bytes) -> None:
        block_id = base64.b64encode(f"{len(self._blocks):08d}".encode()).decode()
        try:
            self._blob.stage_block(block_id, data)
        except AzureError as exc:
            raise LandingError(f"could not stage a block of {self._blob.blob_name}: {_reason(exc)}") from None
        self._blocks.append(BlobBlock(block_id=block_id))
        self._sha.update(data)
        self.compressed += len(data)


class Landing:
    """One container's view of landed windows."""

    def __init__(self, service: BlobServiceClient, container: str, *, create_container: bool = False) -> None:
        self._container = service.get_container_client(container)
        self._create = create_container
        self._checked = False

    @property
    def container_name(self) -> str:
        return str(self._container.container_name)

    def ensure_container(self) -> None:
        """Fail clearly (or create it, when allowed) if the landing container is missing."""
        if self._checked:
            return
        try:
            exists = self._container.exists()
            if not exists:
                if not self._create:
                    raise LandingError(
                        f"landing container {self.container_name!r} does not exist; create it or set "
                        "LANDING_CREATE_CONTAINER=true"
                    )
                with contextlib.suppress(ResourceExistsError):  # another worker won the race
                    self._container.create_container()
        except AzureError as exc:
            raise LandingError(
                f"cannot reach landing container {self.container_name!r}: {_reason(exc)}"
            ) from None
        self._checked = True

    def part_writer(self, prefix: str, name: str, metadata: dict[str, str]) -> PartWriter:
        self.ensure_container()
        return PartWriter(self._container, prefix, name, metadata)

    def landed_parts(self, prefix: str, folder: str) -> list[tuple[str, dict[str, Any] | None]]:
        """Committed parts directly in a generation folder, by name, with their checkpoints."""
        start = f"{prefix}/{folder}"
        try:
            blobs = list(self._container.list_blobs(name_starts_with=start + "part-", include=["metadata"]))
        except AzureError as exc:
            raise LandingError(f"could not list {start}: {_reason(exc)}") from None
        parts = []
        for blob in sorted(blobs, key=lambda b: b.name):
            relative = blob.name[len(prefix) + 1 :]
            if relative.count("/") != folder.count("/"):
                continue
            raw = (blob.metadata or {}).get("checkpoint")
            parts.append((relative, decode_checkpoint(raw) if raw else None))
        return parts

    def write_json(
        self, path: str, document: dict[str, Any], *, etag: str | None = None, new: bool = False
    ) -> str:
        """Write a JSON blob; with `etag` only over that version, with `new` only if absent.

        Returns the new ETag. A lost condition means another writer got there first.
        """
        condition: dict[str, Any] = {}
        if etag is not None:
            condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        elif new:
            condition = {"match_condition": MatchConditions.IfMissing}
        try:
            return self._upload(
                path, json.dumps(document, indent=2, sort_keys=True).encode(), "application/json", **condition
            )
        except ResourceModifiedError:
            raise LandingError(
                f"{path} was changed by another writer meanwhile; not overwriting it", retryable=False
            ) from None
        except ResourceExistsError:
            raise LandingError(
                f"{path} was created by another writer meanwhile; not overwriting it", retryable=False
            ) from None

    def read_json_versioned(self, path: str) -> tuple[dict[str, Any] | None, str | None]:
        """A JSON blob and its ETag, or (None, None) if absent."""
        try:
            downloader = self._container.get_blob_client(path).download_blob()
            data = downloader.readall()
        except ResourceNotFoundError:
            return None, None
        except AzureError as exc:
            raise LandingError(f"could not read {path}: {_reason(exc)}") from None
        document = json.loads(data)
        return (document if isinstance(document, dict) else None), downloader.properties.etag

    def write_success(self, prefix: str, document: dict[str, Any]) -> None:
        """The success marker; written after the manifest, it is what downstream steps wait for."""
        self._upload(f"{prefix}/{SUCCESS}", json.dumps(document, sort_keys=True).encode(), "application/json")

    def read_json(self, path: str) -> dict[str, Any] | None:
        return self.read_json_versioned(path)[0]

    def exists(self, path: str) -> bool:
        try:
            return bool(self._container.get_blob_client(path).exists())
        except AzureError as exc:
            raise LandingError(f"could not check {path}: {_reason(exc)}") from None

    def list_names(self, prefix: str) -> list[str]:
        try:
            return [
                blob.name for blob in self._container.list_blobs(name_starts_with=prefix.rstrip("/") + "/")
            ]
        except ResourceNotFoundError:  # no container yet: nothing landed
            return []
        except AzureError as exc:
            raise LandingError(f"could not list {prefix}: {_reason(exc)}") from None

    def read_bytes(self, path: str) -> bytes:
        try:
            return bytes(self._container.get_blob_client(path).download_blob().readall())
        except AzureError as exc:
            raise LandingError(f"could not read {path}: {_reason(exc)}") from None

    def delete(self, path: str) -> None:
        try:
            self._container.get_blob_client(path).delete_blob()
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise LandingError(f"could not delete {path}: {_reason(exc)}") from None

    def _upload(self, path: str, data: bytes, content_type: str, **condition: Any) -> str:
        self.ensure_container()
        try:
            result = self._container.get_blob_client(path).upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type), **condition
            )
        except (ResourceModifiedError, ResourceExistsError):
            raise
        except AzureError as exc:
            raise LandingError(f"could not write {path}: {_reason(exc)}") from None
        return str(result.get("etag", ""))


def blob_service(connection_string: str | None, account_url: str | None) -> BlobServiceClient:
    """A Blob client from a connection string (local) or account URL + managed identity (Azure)."""
    # Short, bounded retries: a storage outage should fail an activity for Durable to retry,
    # not hang it for the SDK's default of minutes.
    options: dict[str, Any] = {"retry_total": 3, "connection_timeout": 10, "read_timeout": 60}
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string, **options)
    from shared.identity.sts import entra_credential

    return BlobServiceClient(account_url or "", credential=entra_credential(), **options)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _reason(exc: AzureError) -> str:
    code = getattr(exc, "error_code", None)
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return f"{code + ': ' if code else ''}{text[0] if text else type(exc).__name__}"
