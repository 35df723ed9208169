"""Pagination strategies: where records sit in a page, and what the next request is.

A cursor is a plain string (None for the first page): a token, an absolute URL, an offset, a
page number or the last record's id. It is small and secret-free, so it is checkpointed in
durable history between parts. Each strategy also knows when a window is exhausted: no next
link, a short page, or the total the API reported.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urljoin

from shared.config.catalog import Source
from shared.config.pagination import (
    CursorPagination,
    LinkHeaderPagination,
    NextTokenPagination,
    NextUrlPagination,
    OffsetPagination,
    PageNumberPagination,
    PaginationStyle,
    SinglePage,
)


class MalformedPage(ValueError):
    """A page is not what the catalog says it should be; the client names the page and request id."""


@dataclass(frozen=True)
class PageRequest:
    """What to send for one page, beyond the window and the source's static params."""

    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    url: str | None = None  # an absolute URL the API handed out; sent as-is


@dataclass(frozen=True)
class PageContext:
    """What a strategy may look at to find the next page."""

    body: Any
    links: dict[str, dict[str, str]]  # the Link header as httpx parses it (httpx.Response.links)
    url: str
    cursor: str | None


class Paginator(Protocol):
    """One pagination style."""

    def request(self, cursor: str | None) -> PageRequest: ...

    def parse(self, page: PageContext) -> tuple[list[Any], str | None]:
        """Records of the page and the cursor of the next one (None when this was the last)."""
        ...


def lookup(body: Any, path: str, what: str, *, required: bool = True) -> Any:
    """Follow a dotted path into a JSON document; an empty path is the document itself."""
    node = body
    for key in filter(None, path.split(".")):
        if not isinstance(node, dict) or key not in node:
            if not required:
                return None
            raise MalformedPage(f"page has no {what} at {path!r}")
        node = node[key]
    return node


ConfigT = TypeVar("ConfigT", bound=PaginationStyle)


class _Strategy(ABC, Generic[ConfigT]):
    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @abstractmethod
    def request(self, cursor: str | None) -> PageRequest: ...

    @abstractmethod
    def parse(self, page: PageContext) -> tuple[list[Any], str | None]: ...

    def _sized(self, params: dict[str, str] | None = None) -> dict[str, str]:
        sized = dict(params or {})
        if self.config.page_size_param:
            sized[self.config.page_size_param] = str(self.config.page_size)
        return sized

    def _records(self, body: Any) -> list[Any]:
        records = lookup(body, self.config.records_path, "record list")
        if not isinstance(records, list):
            where = self.config.records_path or "page body"
            raise MalformedPage(f"{where} is a {type(records).__name__}, expected a list")
        return records

    def _short(self, records: list[Any]) -> bool:
        """A page shorter than asked for is the last one (only meaningful when we set the size)."""
        return bool(self.config.page_size_param) and len(records) < self.config.page_size

    def _int_at(self, body: Any, path: str, what: str) -> int | None:
        if not path:
            return None
        value = lookup(body, path, what, required=False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedPage(f"{what} at {path!r} is not an integer")
        return value


class NextTokenPaginator(_Strategy[NextTokenPagination]):
    """The body carries an opaque token; it goes back as a query parameter or a header."""

    def request(self, cursor: str | None) -> PageRequest:
        if cursor is None:
            return PageRequest(self._sized())
        if self.config.token_in == "header":  # noqa: S105 - a location, not a secret
            return PageRequest(self._sized(), headers={self.config.token_param: cursor})
        return PageRequest(self._sized({self.config.token_param: cursor}))

    def parse(self, page: PageContext) -> tuple[list[Any], str | None]:
        records = self._records(page.body)
        token = lookup(page.body, self.config.token_path, "next token", required=False)
        if token is None or token == "":
            return records, None
        if isinstance(token, bool) or not isinstance(token, str | int):
            raise MalformedPage(f"next token at {self.config.token_path!r} is not a string")
        return records, str(token)


class NextUrlPaginator(_Strategy[NextUrlPagination]):
    """The body carries the absolute (or relative) URL of the next page."""

    def request(self, cursor: str | None) -> PageRequest:
        return PageRequest(self._sized()) if cursor is None else PageRequest(url=cursor)

    def parse(self, page: PageContext) -> tuple[list[Any], str | None]:
        records = self._records(page.body)
        link = lookup(page.body, self.config.next_url_path, "next link", required=False)
        if not link:
            return records, None
        if not isinstance(link, str):
            raise MalformedPage(f"next link at {self.config.next_url_path!r} is not a string")
        return records, urljoin(page.url, link)


class LinkHeaderPaginator(_Strategy[LinkHeaderPagination]):
    """RFC 8288: `Link: <url>; rel="next"` while more pages exist."""

    def request(self, cursor: str | None) -> PageRequest:
        return PageRequest(self._sized()) if cursor is None else PageRequest(url=cursor)

    def parse(self, page: PageContext) -> tuple[list[Any], str | None]:
        records = self._records(page.body)
        for link in page.links.values():
            if "next" in link.get("rel", "").lower().split():
                return records, urljoin(page.url, link.get("url", "").strip())
        return records, None


class OffsetPaginator(_Strategy[OffsetPagination]):
    """Client-driven offset/limit; stops when the reported total is reached or, when the API
    reports none, on a short page.

    A reported total wins over a short page: most APIs clamp a page size larger than theirs
    (asked for 500, they send 100), and stopping there would end the window at its first page.
    """

    def request(self, cursor: str | None) -> PageRequest:
        return PageRequest(self._sized({self.config.offset_param: cursor or "0"}))

    def parse(self, page: PageContext) -> tuple[list[Any], str | None]:
        records = self._records(page.body)
        offset = int(page.cursor or 0) + len(records)
        total = self._int_at(page.body, self.config.total_path, "total")
        end = offset >= total if total is not None else self._short(records)
        return records, None if not records or end else str(offset)


class PageNumberPaginator(_Strategy[PageNumberPagination]):
    """Client-driven page numbers; stops at the reported page count (counted from first_page) or,
    when the API reports none, on a short page (a reported count wins, as OffsetPaginator's total)."""

    def request(self, cursor: str | None) -> PageRequest:
        return PageRequest(self._sized({self.config.page_param: cursor or str(self.config.first_page)}))

    def parse(self, page: PageContext) -> tuple[list[Any], str | None]:
        records = self._records(page.body)
        number = int(page.cursor or self.config.first_page)
        pages = self._int_at(page.body, self.config.total_pages_path, "page count")
        last = number >= self.config.first_page + pages - 1 if pages is not None else self._short(records)
        return records, None if not records or last else str(number + 1)


class CursorPaginator(_Strategy[CursorPagination]):
    """The next page starts after the last record seen (`after=<id>`)."""

    def request(self, cursor: str | None) -> PageRequest:
        return PageRequest(
            self._sized() if cursor is None else self._sized({self.config.cursor_param: cursor})
        )

    def parse(self, page: PageContext) -> tuple[list[Any], str | None]:
        records = self._records(page.body)
        more = (
            lookup(page.body, self.config.has_more_path, "has-more flag", required=False)
            if self.config.has_more_path
            else None
        )
        if not records or more is False or (more is None and self._short(records)):
            return records, None
        last = records[-1]
        if not isinstance(last, dict) or last.get(self.config.cursor_field) in (None, ""):
            raise MalformedPage(f"last record has no {self.config.cursor_field!r} to continue from")
        return records, str(last[self.config.cursor_field])


class SinglePagePaginator(_Strategy[SinglePage]):
    """The whole window comes back in one response."""

    def request(self, cursor: str | None) -> PageRequest:
        return PageRequest()

    def parse(self, page: PageContext) -> tuple[list[Any], str | None]:
        return self._records(page.body), None


_STYLES: dict[str, type[_Strategy[Any]]] = {
    "next_token": NextTokenPaginator,
    "next_url": NextUrlPaginator,
    "link_header": LinkHeaderPaginator,
    "offset": OffsetPaginator,
    "page_number": PageNumberPaginator,
    "cursor": CursorPaginator,
    "none": SinglePagePaginator,
}


def paginator_for(source: Source) -> Paginator:
    """The strategy the catalog selects for the source."""
    strategy: Paginator = _STYLES[source.pagination.type](source.pagination)
    return strategy
