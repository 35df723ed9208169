"""JSON Lines out, fast where that is exact and exact everywhere.

orjson serialises records about four times faster than the standard library (bench/RESULTS.md,
Profile), which is what a page's own cost is mostly made of. It is only used where its output
is exactly what was received: it refuses integers beyond 64 bits and lone surrogates (we then
fall back). It would turn NaN/Infinity into null, but pages holding those are refused when
parsed (shared.gateway.pages), so they never reach here. When the page's reading already holds
each record's text as the API sent it (compact pages, read exactly), those bytes land as they are.

Lines are gzipped a batch at a time on the part's stage (shared.landing.stage) while the next
pages are fetched, and the blocks they fill are staged there too: deflate and the upload
release the GIL, and on the fetching thread they cost more than serialising did
(bench/RESULTS.md, issue 14).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from shared.landing.stage import Stage

# ASCII-escaped, so a lone surrogate a page carried survives as its \\uXXXX escape.
_exact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


def encode_lines(records: list[Any]) -> bytes:
    """Each record as one JSON document on its own line."""
    try:
        return b"\n".join(map(orjson.dumps, records)) + b"\n"
    except TypeError:  # an integer beyond 64 bits or a lone surrogate: orjson refuses
        pass
    return "".join(_exact(record) + "\n" for record in records).encode("ascii")


class JsonlEncoder:
    """Pages in, one gzip JSON Lines file out through `sink` (the part writer's block buffer)."""

    extension = "jsonl.gz"
    content_type = "application/gzip"
    # Measured on the emulator's records (bench/RESULTS.md): level 3 compresses 7.5x at 145 MB/s,
    # level 6 8.5x at 73 MB/s; the page path is CPU-bound, storage is cheap.
    level = 3
    #: Uncompressed bytes per hand-over to the stage: about 20 pages of 100 records.
    batch_bytes = 256 * 1024
    # Blocks are staged on the stage as they fill, so what commit still waits for (the last
    # block) is small; a 50,000-record part (0.8 MB gzipped) was one 30 ms block at commit.
    block_bytes = 256 * 1024

    def __init__(self, sink: Callable[[bytes], None], name: str = "part") -> None:
        self._sink = sink
        self._compressor = zlib.compressobj(self.level, zlib.DEFLATED, 31)  # 31: gzip container
        self._batch = bytearray()
        self._stage = Stage(name)

    @property
    def schema(self) -> dict[str, str] | None:
        return None  # JSON Lines carries no schema

    def write(self, records: list[Any], *, page: int | None, texts: list[bytes] | None = None) -> int:
        """Queue a page's lines for compression; returns their uncompressed size. `texts`, each
        record's JSON as the API sent it (shared.gateway.pages), are landed as they are."""
        raw = encode_lines(records) if texts is None else b"\n".join(texts) + b"\n"
        self._batch += raw
        if len(self._batch) >= self.batch_bytes:
            self._hand_over()
        return len(raw)

    def finish(self) -> None:
        """Compress what is left, wait for the stage, end the gzip stream."""
        if self._stage.started:
            if self._batch:
                self._hand_over()
            self._stage.drain()
        elif self._batch:  # a part smaller than a batch (a one-page window): no thread for it
            self._compress(bytes(self._batch))
            self._batch.clear()
        self._sink(self._compressor.flush())

    def close(self) -> None:
        self._stage.close()

    def _hand_over(self) -> None:
        self._stage.submit(self._compress, bytes(self._batch))
        self._batch.clear()

    def _compress(self, raw: bytes) -> None:
        self._sink(self._compressor.compress(raw))
