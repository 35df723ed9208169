"""JSON Lines out, fast where that is exact and exact everywhere.

orjson serialises records about four times faster than the standard library (bench/RESULTS.md,
Profile), which is what a page's own cost is mostly made of. It is only used where its output
is exactly what was received: it refuses integers beyond 64 bits and lone surrogates (we then
fall back). It would turn NaN/Infinity into null, but pages holding those are refused when
parsed (shared.gateway.pages), so they never reach here.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

import orjson

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

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink
        self._compressor = zlib.compressobj(self.level, zlib.DEFLATED, 31)  # 31: gzip container

    @property
    def schema(self) -> dict[str, str] | None:
        return None  # JSON Lines carries no schema

    def write(self, records: list[Any], *, page: int | None) -> int:
        """Compress a page's lines on; returns their uncompressed size."""
        raw = encode_lines(records)
        self._sink(self._compressor.compress(raw))
        return len(raw)

    def finish(self) -> None:
        self._sink(self._compressor.flush())
