"""Pagination styles found in real HTTP APIs, one small strategy each.

A strategy turns request parameters into a :class:`PageRequest` (an offset into the
window's index range) and renders a :class:`Page` into a body and headers.  The gateway
does the slicing in between, so strategies never see more than one page of records.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from localcloud.datasets import Dataset, PaginationStyle

__all__ = ["Page", "PageRequest", "Paginator", "RenderedPage", "natural_next_offset", "paginator_for"]

TOKEN_PARAM = "next_token"


@dataclass(frozen=True)
class PageRequest:
    """Which slice of the window to serve: ``limit`` records from ``offset``."""

    offset: int
    limit: int

    @property
    def number(self) -> int:
        """1-based page number, assuming the walk keeps the same page size."""
        return self.offset // self.limit + 1


@dataclass(frozen=True)
class Page:
    """One page ready to render, plus what links need to point back at the gateway."""

    dataset: Dataset
    window: range
    request: PageRequest
    items: list[dict[str, Any]]
    next_offset: int | None
    url: str
    params: Mapping[str, str]


@dataclass(frozen=True)
class RenderedPage:
    """JSON-serialisable body and extra response headers."""

    payload: Any
    headers: list[tuple[str, str]]


def natural_next_offset(page: PageRequest, served: int, total: int, trailing_empty_page: bool) -> int | None:
    """Where the next page starts, or ``None`` when the walk is complete."""
    end = page.offset + served
    if end < total:
        return end
    if trailing_empty_page and served > 0:
        return total  # the next request returns an empty page and no continuation
    return None


class Paginator(ABC):
    """One pagination style."""

    @abstractmethod
    def parse(self, params: Mapping[str, str], dataset: Dataset, window: range) -> PageRequest:
        """Read the page position from query parameters; ``ValueError`` if invalid."""

    @abstractmethod
    def render(self, page: Page) -> RenderedPage:
        """Body and headers for ``page``."""

    def loop(self, request: PageRequest) -> tuple[PageRequest, int]:
        """A broken server's answer: the page to serve and a continuation that repeats.

        For server-issued continuations that is simply "this same position again".
        """
        return request, request.offset


class _TokenPaginator(Paginator, ABC):
    """Continuation is an opaque ``next_token`` bound to the window it was issued for."""

    def parse(self, params: Mapping[str, str], dataset: Dataset, window: range) -> PageRequest:
        limit = page_size(params, dataset, "limit")
        token = params.get(TOKEN_PARAM)
        offset = 0 if token is None else decode_token(token, dataset, window)
        return PageRequest(offset, limit)


class NextTokenPaginator(_TokenPaginator):
    """``{"items": [...], "next_token": "..."}``; the key is absent on the last page."""

    def render(self, page: Page) -> RenderedPage:
        payload: dict[str, Any] = {"items": page.items}
        if page.next_offset is not None:
            payload[TOKEN_PARAM] = encode_token(page.next_offset, page.dataset, page.window)
        return RenderedPage(payload, [])


class NextUrlPaginator(_TokenPaginator):
    """``{"data": [...], "links": {"next": "<absolute url>" | null}}``."""

    def render(self, page: Page) -> RenderedPage:
        return RenderedPage({"data": page.items, "links": {"next": next_link(page)}}, [])


class LinkHeaderPaginator(_TokenPaginator):
    """Bare JSON list; RFC 8288 ``Link: <url>; rel="next"`` while more pages exist."""

    def render(self, page: Page) -> RenderedPage:
        link = next_link(page)
        return RenderedPage(page.items, [] if link is None else [("Link", f'<{link}>; rel="next"')])


class OffsetPaginator(Paginator):
    """Client-driven ``offset``/``limit``; body ``{"items": [...], "total": N}``."""

    def parse(self, params: Mapping[str, str], dataset: Dataset, window: range) -> PageRequest:
        return PageRequest(non_negative_int(params, "offset", 0), page_size(params, dataset, "limit"))

    def render(self, page: Page) -> RenderedPage:
        return RenderedPage({"items": page.items, "total": len(page.window)}, [])


class PageNumberPaginator(Paginator):
    """Client-driven ``page`` (1-based) and ``per_page``; body has ``page`` and ``total_pages``."""

    def parse(self, params: Mapping[str, str], dataset: Dataset, window: range) -> PageRequest:
        number = non_negative_int(params, "page", 1)
        if number < 1:
            raise ValueError("'page' must be >= 1")
        per_page = page_size(params, dataset, "per_page")
        return PageRequest((number - 1) * per_page, per_page)

    def render(self, page: Page) -> RenderedPage:
        limit = page.request.limit
        total_pages = -(-len(page.window) // limit)
        return RenderedPage(
            {"results": page.items, "page": page.request.number, "total_pages": total_pages}, []
        )


class CursorLastRecordPaginator(Paginator):
    """``after=<id of the last record seen>``; body ``{"items": [...], "has_more": bool}``."""

    def parse(self, params: Mapping[str, str], dataset: Dataset, window: range) -> PageRequest:
        limit = page_size(params, dataset, "limit")
        after = params.get("after")
        if after is None:
            return PageRequest(0, limit)
        index = dataset.index_of(after)
        # The record just before the window is a legal cursor: it is where a walk starts.
        if index is None or not window.start - 1 <= index < window.stop:
            raise ValueError(f"Invalid cursor 'after={after}' for this window")
        return PageRequest(index - window.start + 1, limit)

    def render(self, page: Page) -> RenderedPage:
        return RenderedPage({"items": page.items, "has_more": page.next_offset is not None}, [])

    def loop(self, request: PageRequest) -> tuple[PageRequest, int]:
        # The continuation is derived from the last record, so a looping server re-serves
        # the page that ends at the client's cursor.
        return PageRequest(max(0, request.offset - request.limit), request.limit), request.offset


class NoPaginator(Paginator):
    """Everything in one bare JSON list."""

    def parse(self, params: Mapping[str, str], dataset: Dataset, window: range) -> PageRequest:
        return PageRequest(0, max(1, len(window)))

    def render(self, page: Page) -> RenderedPage:
        return RenderedPage(page.items, [])


_PAGINATORS: dict[PaginationStyle, Paginator] = {
    "next_token": NextTokenPaginator(),
    "next_url": NextUrlPaginator(),
    "link_header": LinkHeaderPaginator(),
    "offset": OffsetPaginator(),
    "page_number": PageNumberPaginator(),
    "cursor_last_record": CursorLastRecordPaginator(),
    "none": NoPaginator(),
}


def paginator_for(style: PaginationStyle) -> Paginator:
    """The (stateless, shared) strategy for ``style``."""
    return _PAGINATORS[style]


# -- helpers shared by the strategies ---------------------------------------------------------


def non_negative_int(params: Mapping[str, str], name: str, default: int) -> int:
    """Integer query parameter ``name`` (``default`` when absent); ``ValueError`` if bad."""
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ValueError(f"'{name}' must be a non-negative integer, got '{raw}'")
    return int(raw)


def page_size(params: Mapping[str, str], dataset: Dataset, name: str) -> int:
    """Requested page size, defaulted and clamped to the dataset's maximum."""
    size = non_negative_int(params, name, dataset.default_limit)
    if size < 1:
        raise ValueError(f"'{name}' must be >= 1")
    return min(size, dataset.max_limit)


def _window_fingerprint(dataset: Dataset, window: range) -> str:
    return hashlib.blake2b(f"{dataset.name}:{window.start}:{window.stop}".encode(), digest_size=6).hexdigest()


def encode_token(offset: int, dataset: Dataset, window: range) -> str:
    """Opaque continuation: url-safe base64 of the offset and a window fingerprint."""
    document = json.dumps({"o": offset, "w": _window_fingerprint(dataset, window)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def decode_token(token: str, dataset: Dataset, window: range) -> int:
    """Offset from a token; ``ValueError`` if it is garbage or was issued for another window."""
    try:
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset, fingerprint = document["o"], document["w"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise ValueError(f"Invalid {TOKEN_PARAM}") from None
    if fingerprint != _window_fingerprint(dataset, window) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"Invalid {TOKEN_PARAM}: it was issued for a different window")
    return offset


def next_link(page: Page) -> str | None:
    """Absolute URL of the next page (strict RFC 3986 query encoding), or ``None``."""
    if page.next_offset is None:
        return None
    if page.dataset.foreign_next_url is not None:
        return page.dataset.foreign_next_url
    query = [(key, value) for key, value in page.params.items() if key != TOKEN_PARAM]
    query.append((TOKEN_PARAM, encode_token(page.next_offset, page.dataset, page.window)))
    return f"{page.url}?{urlencode(query, quote_via=quote)}"
