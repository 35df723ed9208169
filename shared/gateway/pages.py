"""JSON pages in: parsed by the standard library, which keeps integers of any size exact.

What a page may hold is decided here, once (README, "What lands"):

* NaN, Infinity and -Infinity are not JSON (RFC 8259): a page carrying one is refused with a
  PageFormatError naming the page and the constant, not landed as a token no reader parses.
* An object with the same key twice is refused naming the key: which value a reader keeps is
  undefined (RFC 8259, 4), and silently keeping the last would drop data.
* Every record must be a JSON object: a page whose records include a string, number, array or
  null is refused naming the page and the record's index.
* HTTP 204 (No Content) is an empty last page: zero records, the window is complete
  (shared.gateway.client).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class PagePolicyError(Exception):
    """The page is well-formed JSON that breaks one of the policies above (not retried: the
    same page comes back the same way)."""


def _constant(name: str) -> float:
    raise PagePolicyError(f"page holds {name}, which is not JSON (RFC 8259); refusing to land it")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise PagePolicyError(
            f"page has an object with the key {duplicate[:100]!r} twice; which value counts is undefined"
        )
    return document


def parse_page(body: bytes) -> Any:
    """The page's JSON document, refused by the policies above."""
    return json.loads(body, parse_constant=_constant, object_pairs_hook=_unique)


def check_records(records: list[Any]) -> None:
    """Refuse a page whose records are not all JSON objects, naming the first that is not."""
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            kind = "null" if record is None else type(record).__name__
            raise PagePolicyError(f"record {index} of the page is a JSON {kind}, not an object")


@dataclass
class Page:
    """One fetched page."""

    number: int
    records: list[Any]
    next_cursor: str | None
    request_id: str | None
    size: int
    attempts: int = 1
