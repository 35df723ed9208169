"""JSON Lines out, fast where that is exact and exact everywhere.

orjson serialises records about four times faster than the standard library (bench/RESULTS.md,
Profile), which is what a page's own cost is mostly made of. It is only used where its output
is exactly what was received: it refuses integers beyond 64 bits and lone surrogates (we then
fall back), and it would turn NaN/Infinity into null, so pages that carried those constants
are written by the standard library instead (pages are parsed by shared.gateway.pages).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# ASCII-escaped, so a lone surrogate a page carried survives as its \\uXXXX escape.
_exact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=True).encode


def encode_lines(records: list[Any], *, nonstandard: bool = False) -> bytes:
    """Each record as one JSON document on its own line."""
    if not nonstandard:
        try:
            return b"\n".join(map(orjson.dumps, records)) + b"\n"
        except TypeError:  # an integer beyond 64 bits or a lone surrogate: orjson refuses
            pass
    return "".join(_exact(record) + "\n" for record in records).encode("ascii")
