"""JSON pages in: parsed by the standard library, which keeps integers of any size exact."""

from __future__ import annotations

import json
from typing import Any


def parse_page(body: bytes) -> tuple[Any, bool]:
    """The page's JSON document, and whether it held NaN or Infinity (non-standard constants)."""
    seen = False

    def constant(name: str) -> float:
        nonlocal seen
        seen = True
        return float(name)

    return json.loads(body, parse_constant=constant), seen
