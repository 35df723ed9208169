"""One part: records streamed through an encoder into a blob as staged blocks, committed once
(or, when the part never filled a block, put whole in one call).

The encoder decides the file format (gzip JSON Lines in shared.landing.jsonl, Parquet in
shared.landing.parquet); this writer owns the block buffer, the sha256 and the one commit, so
every format has the same guarantees. Memory is bounded by the block size plus what the encoder
holds (a Parquet row group), not the part, and a part is either wholly there or absent.
Each committed part carries its own manifest entry and where the walk goes on after it (a
`Checkpoint`) as blob metadata, so a later attempt resumes from what was landed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Literal, Protocol

from azure.storage.blob import BlobBlock, ContainerClient, ContentSettings
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import LandingError
from shared.landing.jsonl import JsonlEncoder
from shared.landing.storage import storage_errors
from shared.timestamps import utc_now_precise

#: The largest block staged. An encoder may ask for smaller ones (Encoder.block_bytes).
BLOCK_SIZE = 4 * 1024 * 1024
#: Azure allows 8 KiB of metadata per blob; the lineage keys and the checkpoint's cursor need
#: their share. A part's columns beyond this stay in its file only (Parquet footer).
CHECKPOINT_BUDGET = 6 * 1024
#: Azure's limit on a blob's metadata, names and values together.
METADATA_LIMIT = 8 * 1024

Format = Literal["jsonl.gz", "parquet"]


class Encoder(Protocol):
    """One file format: pages in, the file's bytes out through the sink it was made with."""

    extension: str
    content_type: str
    #: Stage a block once this many bytes are buffered (at most BLOCK_SIZE).
    block_bytes: int

    @property
    def schema(self) -> dict[str, str] | None: ...

    def write(self, records: list[Any], *, page: int | None, texts: list[bytes] | None = None) -> int:
        """Encode a page; returns its size before compression (what max_part_bytes counts).
        `texts`: each record's JSON text as received, when known (shared.gateway.pages.Page)."""
        ...

    def finish(self) -> None:
        """Emit whatever the file still needs (trailers, footers)."""
        ...

    def close(self) -> None:
        """Stop any background work of a file that will not be finished; idempotent."""
        ...


def encoder_for(
    output_format: Format, sink: Any, compression: str | None = None, name: str = "part"
) -> Encoder:
    if output_format == "parquet":
        from shared.landing.parquet import ParquetEncoder  # pyarrow is loaded only where used

        return ParquetEncoder(sink, compression or "snappy")
    return JsonlEncoder(sink, name)


class PartInfo(BaseModel):
    """What the manifest records about one committed part."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    records: int
    bytes: int
    uncompressed_bytes: int
    sha256: str
    #: None when the API sends no request id: a checkpoint leaves None out (exclude_none), so
    #: these need their default to be read back.
    first_request_id: str | None = None
    last_request_id: str | None = None
    started_at: str
    finished_at: str
    #: Column -> type for formats that carry a schema (Parquet); None for JSON Lines.
    columns: dict[str, str] | None = None


class Checkpoint(BaseModel):
    """Where a window's walk stands after a part: stored with the part, read back on resume."""

    model_config = ConfigDict(extra="ignore")

    window: dict[str, str]
    next_cursor: str | None = None
    pages_after: int = 0
    #: The window's page count when this part's walk began; None in parts landed before it was kept.
    pages_before: int | None = None
    done: bool = False
    part: PartInfo | None = None

    def encode(self) -> str:
        """As a blob metadata value (ASCII only)."""
        document = json.dumps(self.model_dump(exclude_none=True), separators=(",", ":"))
        return base64.urlsafe_b64encode(document.encode()).decode()

    @classmethod
    def decode(cls, value: str) -> Checkpoint | None:
        """The checkpoint a metadata value holds; None for anything unreadable (never trusted blindly)."""
        try:
            return cls.model_validate_json(base64.urlsafe_b64decode(value.encode()))
        except (ValueError, ValidationError):
            return None


class PartWriter:
    """Streams records through an encoder into one part as staged blocks; `commit` makes it visible.

    The encoder may land on a background thread (shared.landing.stage), so `_emit` and `_stage`
    may run there; `commit` reads their totals only after the encoder's `finish` has waited for
    it. Use as a context manager, so a part abandoned by an error stops that thread.
    """

    def __init__(
        self,
        container: ContainerClient,
        prefix: str,
        name: str,
        metadata: dict[str, str],
        output_format: Format = "jsonl.gz",
        compression: str | None = None,
    ) -> None:
        self._blob = container.get_blob_client(f"{prefix}/{name}")
        self.name = name
        self._metadata = metadata
        self._started = utc_now_precise()
        self._buffer = bytearray()
        self._encoder = encoder_for(output_format, self._emit, compression, name)
        self._blocks: list[BlobBlock] = []
        self._sha = hashlib.sha256()
        self.records = 0
        self.uncompressed = 0
        self.compressed = 0
        self.first_request_id: str | None = None
        self.last_request_id: str | None = None

    def write(
        self,
        records: list[Any],
        request_id: str | None,
        *,
        page: int | None = None,
        texts: list[bytes] | None = None,
    ) -> None:
        """Append a page's records (`page`: its window-wide number, for errors naming it; `texts`:
        each record's JSON text as received, when known)."""
        if not records:
            return
        self.uncompressed += self._encoder.write(records, page=page, texts=texts)
        self.records += len(records)
        if self.first_request_id is None:
            self.first_request_id = request_id
        self.last_request_id = request_id

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the encoder's background work without committing (after `commit`: nothing to do)."""
        self._encoder.close()

    def _emit(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= min(self._encoder.block_bytes, BLOCK_SIZE):
            self._stage(bytes(self._buffer))
            self._buffer.clear()

    def commit(self, checkpoint: Checkpoint) -> PartInfo:
        """Flush, stage the last block and commit the block list in one call (a part that never
        filled a block: put whole, in one call).

        The part's own manifest entry rides along in the checkpoint's metadata.
        """
        self._encoder.finish()
        # A part that never filled a block (a one-page window, most of a backfill's) goes up in
        # one Put Blob below, not a Put Block and a Put Block List: one storage round trip.
        whole = bytes(self._buffer) if not self._blocks else None
        if whole is not None:
            self._count(whole)
        elif self._buffer:
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
            finished_at=utc_now_precise(),
            columns=self._encoder.schema,
        )
        encoded = checkpoint.model_copy(update={"part": info}).encode()
        if len(encoded) > CHECKPOINT_BUDGET and info.columns:
            # A wide schema: resume reads the columns back from the file's footer instead.
            narrow = info.model_copy(update={"columns": None})
            encoded = checkpoint.model_copy(update={"part": narrow}).encode()
        metadata = {**self._metadata, "checkpoint": encoded}
        size = sum(len(key) + len(value) for key, value in metadata.items())
        if size > METADATA_LIMIT:
            # Storage would refuse the commit (400) on every attempt; say what makes it so long.
            raise LandingError(
                f"{self.name}: its checkpoint would be {size} bytes of blob metadata, over Azure's "
                f"{METADATA_LIMIT}; the API's next cursor is {len(checkpoint.next_cursor or '')} "
                "characters, too long to checkpoint a part with",
                retryable=False,
            )
        settings = ContentSettings(content_type=self._encoder.content_type)
        with storage_errors(f"commit {self._blob.blob_name}"):
            if whole is not None:
                self._blob.upload_blob(whole, overwrite=True, content_settings=settings, metadata=metadata)
            else:
                self._blob.commit_block_list(self._blocks, content_settings=settings, metadata=metadata)
        return info

    def _stage(self, data: bytes) -> None:
        block_id = base64.b64encode(f"{len(self._blocks):08d}".encode()).decode()
        with storage_errors(f"stage a block of {self._blob.blob_name}"):
            self._blob.stage_block(block_id, data)
        self._blocks.append(BlobBlock(block_id=block_id))
        self._count(data)

    def _count(self, data: bytes) -> None:
        """Add bytes that landed (a block, or the whole part) to the part's sha256 and size."""
        self._sha.update(data)
        self.compressed += len(data)
