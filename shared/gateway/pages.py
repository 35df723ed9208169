"""JSON pages in, exactly: what a page may hold is decided here, once (README, "What lands").

Two parsers, one result. orjson parses a page about 3x faster than the standard library but keeps
the last of two equal keys and turns integers past 64 bits into floats, so its result is used only
when serialising it gives back the page byte for byte: then every key, string and number was read
exactly as written, with no key twice. A page that is not in that compact form (pretty-printed,
ASCII-escaped, `": "`-spaced, a huge integer, a duplicate) goes to the standard library, which keeps
integers of any size exact and checks the policies below.

That check serialises each record on its own and the rest of the page around them, so when it
passes, each record's JSON text as the API sent it is known (`ReadPage.texts`): JSON Lines lands
those bytes instead of serialising every record a second time.

* NaN, Infinity and -Infinity are not JSON (RFC 8259): a page carrying one is refused with a
  PageFormatError naming the page and the constant, not landed as a token no reader parses.
* An object with the same key twice is refused naming the key: which value a reader keeps is
  undefined (RFC 8259, 4), and silently keeping the last would drop data.
* Every record must be a JSON object: a page whose records include a string, number, array or
  null is refused naming the page and the record's index.
* A number too large for a double (1e400) is refused: it would land as null, or as "Infinity"
  no JSON reader accepts.
* HTTP 204 (No Content) is an empty last page: zero records, the window is complete
  (shared.gateway.client).
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from shared.gateway.pagination import lookup
from shared.observability.redaction import redact


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
        key = redact(duplicate)[:100]  # redacted before it is cut: a cut secret is not one any more
        raise PagePolicyError(
            f"page has an object with the key {key!r} twice; which value counts is undefined"
        )
    return document


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise PagePolicyError(
            f"page holds the number {text[:40]}, too large for a double; refusing to land it"
        )
    return value


@dataclass(frozen=True)
class ReadPage:
    """A page's JSON document and, when orjson read it exactly, its records' JSON texts."""

    document: Any
    #: The record list at the records path, and each record's text (compact, as the API sent it).
    records: list[Any] | None = None
    texts: list[bytes] | None = None


def parse_page(body: bytes) -> Any:
    """The page's JSON document, refused by the policies above."""
    return read_page(body).document


def read_page(body: bytes, records_path: str = "", *, with_texts: bool = True) -> ReadPage:
    """The page's JSON document, refused by the policies above; with the texts of the records at
    `records_path` (dotted, as pagination.records_path) when the fast, exact reading applies and
    `with_texts` asks for them (Parquet parts are built from the records: the whole page is checked
    in one serialisation instead, about half the work)."""
    exact = body.strip()
    # A `": ` near the start says the page is spaced (Python's json.dumps default): orjson's
    # output would not match it, so skip the attempt.
    if exact.find(b'": ', 0, 512) < 0:
        try:
            document = orjson.loads(exact)
        except orjson.JSONDecodeError:
            pass  # the standard library says what is wrong, in its words
        else:
            records = lookup(document, records_path, "record list", required=False) if with_texts else None
            if not isinstance(records, list):
                if orjson.dumps(document) == exact:
                    return ReadPage(document)
            else:
                texts = list(map(orjson.dumps, records))
                keys = [key for key in records_path.split(".") if key]
                if _reassembles(document, keys, texts, exact):
                    return ReadPage(document, records, texts)
    return ReadPage(json.loads(body, parse_constant=_constant, parse_float=_float, object_pairs_hook=_unique))


# Stands in for the record list while the rest of the page is serialised; random per process, so
# a page cannot carry it on purpose (and one that holds it anyway only loses the fast reading).
_PLACEHOLDER = f"\x00records {secrets.token_hex(16)}"
_PLACEHOLDER_JSON = orjson.dumps(_PLACEHOLDER)


def _reassembles(document: Any, keys: list[str], texts: list[bytes], exact: bytes) -> bool:
    """Whether orjson's serialisation of `document` is `exact`, byte for byte, built from the
    records' texts and the page around them (orjson writes a list as `[` texts joined by `,` `]`)."""
    shell = orjson.dumps(_replaced(document, keys)) if keys else _PLACEHOLDER_JSON
    if shell.count(_PLACEHOLDER_JSON) != 1:
        return False
    head, _, tail = shell.partition(_PLACEHOLDER_JSON)
    return exact == b"".join((head, b"[", b",".join(texts), b"]", tail))


def _replaced(node: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """A copy of the path's dicts (order kept) with the list at its end replaced by the placeholder."""
    key, rest = keys[0], keys[1:]
    return {**node, key: _replaced(node[key], rest) if rest else _PLACEHOLDER}


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
    #: Each record's JSON text exactly as the API sent it, when the page was read exactly by
    #: orjson (ReadPage.texts); None otherwise. JSON Lines lands these bytes.
    texts: list[bytes] | None = None
