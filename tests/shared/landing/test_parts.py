"""A part's bytes, totals and failures when its blocks are compressed and staged in the background."""

from __future__ import annotations

import gzip
import hashlib
import threading
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from shared.errors import LandingError
from shared.landing.jsonl import encode_lines
from shared.landing.parts import Checkpoint, PartWriter

from fixtures import stage_threads


class FakeBlob:
    """Records what a BlobClient was asked to do; `fail_at`: the block number whose upload fails."""

    def __init__(self, name: str, fail_at: int | None) -> None:
        self.blob_name = name
        self.fail_at = fail_at
        self.staged: dict[str, bytes] = {}
        self.staged_on: set[str] = set()
        self.committed: list[str] | None = None
        self.put: bytes | None = None
        self.calls: list[str] = []

    def stage_block(self, block_id: str, data: bytes) -> None:
        self.calls.append("stage_block")
        if self.fail_at is not None and len(self.staged) == self.fail_at:
            raise HttpResponseError(message="The server is busy.")
        self.staged[block_id] = bytes(data)
        self.staged_on.add(threading.current_thread().name)

    def commit_block_list(self, blocks: list[Any], **_: Any) -> None:
        self.calls.append("commit_block_list")
        self.committed = [block.id for block in blocks]

    def upload_blob(self, data: bytes, **_: Any) -> None:
        self.calls.append("upload_blob")
        self.put = bytes(data)


class FakeContainer:
    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.blobs: dict[str, FakeBlob] = {}

    def get_blob_client(self, name: str) -> FakeBlob:
        return self.blobs.setdefault(name, FakeBlob(name, self.fail_at))


def pages(count: int) -> list[list[dict[str, Any]]]:
    """Pages of 100 records that gzip about 2:1 (hex digests), so 120 pages fill several blocks."""
    return [
        [
            {"id": f"{p}-{i}", "n": p * 1000 + i, "digest": hashlib.sha256(f"{p}/{i}".encode()).hexdigest()}
            for i in range(100)
        ]
        for p in range(count)
    ]


def writer_for(container: FakeContainer) -> PartWriter:
    return PartWriter(container, "dev/orders", "part-00000.jsonl.gz", {"source": "orders"})  # type: ignore[arg-type]


def test_a_part_of_many_batches_lands_every_line_in_order_and_its_totals_match_its_bytes() -> None:
    container = FakeContainer()
    written = pages(200)  # 2.5 MB of lines, about 1 MB gzipped: several batches and blocks
    with writer_for(container) as writer:
        for number, records in enumerate(written, start=1):
            writer.write(records, f"req-{number}", page=number)
        info = writer.commit(Checkpoint(window={"from": "a", "to": "b"}))
    blob = container.blobs["dev/orders/part-00000.jsonl.gz"]
    assert blob.committed is not None and len(blob.committed) > 2
    content = b"".join(blob.staged[block_id] for block_id in blob.committed)
    expected = b"".join(encode_lines(records) for records in written)
    assert gzip.decompress(content) == expected
    assert info.records == 20_000 and info.uncompressed_bytes == len(expected)
    assert info.bytes == len(content) and info.sha256 == hashlib.sha256(content).hexdigest()
    assert (info.first_request_id, info.last_request_id) == ("req-1", "req-200")
    # Blocks filled during the part were staged off the fetching thread.
    assert any(name.startswith("stage ") for name in blob.staged_on)
    assert stage_threads() == []


def test_a_block_upload_that_fails_in_the_background_fails_the_part_and_nothing_is_committed() -> None:
    container = FakeContainer(fail_at=1)
    refused = r"stage a block of dev/orders/part-00000.jsonl.gz.*busy"
    with pytest.raises(LandingError, match=refused), writer_for(container) as writer:
        for number, records in enumerate(pages(200), start=1):
            writer.write(records, None, page=number)
        writer.commit(Checkpoint(window={"from": "a", "to": "b"}))
    assert container.blobs["dev/orders/part-00000.jsonl.gz"].committed is None
    assert stage_threads() == []


def test_a_part_abandoned_mid_walk_stops_its_stage_and_commits_nothing() -> None:
    container = FakeContainer()
    with pytest.raises(RuntimeError, match="the walk failed"), writer_for(container) as writer:
        for number, records in enumerate(pages(60), start=1):
            writer.write(records, None, page=number)
        raise RuntimeError("the walk failed")
    assert container.blobs["dev/orders/part-00000.jsonl.gz"].committed is None
    assert stage_threads() == []


def test_a_part_smaller_than_a_block_lands_in_one_call_without_a_stage_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One-page windows (an hourly backfill) are most parts: no thread each, and one storage
    # round trip (Put Blob) rather than two (Put Block, Put Block List).
    started: list[str] = []
    original = threading.Thread.start

    def start(self: threading.Thread) -> None:
        started.append(self.name)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    container = FakeContainer()
    with writer_for(container) as writer:
        writer.write(pages(1)[0], "req-1", page=1)
        info = writer.commit(Checkpoint(window={"from": "a", "to": "b"}))
    blob = container.blobs["dev/orders/part-00000.jsonl.gz"]
    assert blob.calls == ["upload_blob"] and blob.put is not None
    assert gzip.decompress(blob.put) == encode_lines(pages(1)[0]) and info.records == 100
    assert info.bytes == len(blob.put) and info.sha256 == hashlib.sha256(blob.put).hexdigest()
    assert started == []


def test_records_whose_text_the_page_kept_land_as_those_bytes() -> None:
    # The texts the page reading kept (shared.gateway.pages.read_page): the API's own bytes, which
    # here differ from what serialising the records would give (1.0 vs 1, the key order), so the
    # part shows which of the two landed.
    records = [{"id": "a", "amount": 1}, {"id": "b"}]
    texts = [b'{"amount":1.0,"id":"a"}', b'{"id":"b"}']
    container = FakeContainer()
    with writer_for(container) as writer:
        writer.write(records, "req-1", page=1, texts=texts)
        writer.write(records, "req-2", page=2)
        info = writer.commit(Checkpoint(window={"from": "a", "to": "b"}))
    blob = container.blobs["dev/orders/part-00000.jsonl.gz"]
    assert blob.put is not None
    assert gzip.decompress(blob.put) == b"\n".join(texts) + b"\n" + encode_lines(records)
    assert info.records == 4 and info.uncompressed_bytes == len(gzip.decompress(blob.put))


def test_a_checkpoint_over_azures_8_kib_of_metadata_fails_naming_the_cursor_not_each_retry() -> None:
    container = FakeContainer()
    with writer_for(container) as writer:
        writer.write(pages(1)[0], "req-1", page=1)
        writer.commit(Checkpoint(window={"from": "a", "to": "b"}, next_cursor="c" * 4000))  # 5.5 KB: fits
    assert container.blobs["dev/orders/part-00000.jsonl.gz"].calls == ["upload_blob"]  # one page: put whole
    container = FakeContainer()
    with (
        pytest.raises(LandingError, match="next cursor is 7000 characters") as refused,
        writer_for(container) as writer,
    ):
        writer.write(pages(1)[0], "req-1", page=1)
        writer.commit(Checkpoint(window={"from": "a", "to": "b"}, next_cursor="c" * 7000))
    assert refused.value.retryable is False and "8192" in str(refused.value)
    assert container.blobs["dev/orders/part-00000.jsonl.gz"].calls == [], "nothing sent to be refused"
