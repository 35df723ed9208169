"""Records land exactly as the API sent them, whichever encoder wrote them."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from shared.gateway.pages import parse_page
from shared.landing.jsonl import encode_lines

PAGES = {
    "plain": b'{"items": [{"id": "a", "n": 1, "f": 0.1, "s": "caf\\u00e9 \\u2028", "ok": true, "x": null}]}',
    "big integer": b'{"items": [{"id": 123456789012345678901234567890, "n": -18446744073709551617}]}',
    "lone surrogate": b'{"items": [{"s": "\\ud800x"}]}',
    "floats": b'{"items": [{"a": 1e16, "b": 5e-324, "c": 1.7976931348623157e308, "d": -0.0}]}',
}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("name", list(PAGES))
def test_every_record_reads_back_identical(name: str) -> None:
    # NaN/Infinity never get here: parse_page refuses them (tests/shared/gateway/test_pages.py).
    document = parse_page(PAGES[name])
    lines = encode_lines(document["items"]).splitlines()
    assert len(lines) == len(document["items"])
    for line, record in zip(lines, document["items"], strict=True):
        assert same(json.loads(line), record), line
