"""Pagination strategies: where records sit in a page, and what the next request is.

A cursor is a plain string (or None for the first page), small and secret-free, so it can be
checkpointed in durable history between parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from shared.catalog import Pagination, Source
from shared.errors import PageFormatError


@dataclass(frozen=True)
class PageRequest:
    """The query parameters (beyond the window and static params) of one page request."""

    params: dict[str, str]
    url: str | None = None  # an absolute URL given by the API, when it supplies one


class Paginator(Protocol):
    """One pagination style."""

    def request(self, cursor: str | None) -> PageRequest: ...

    def parse(self, body: Any, headers: dict[str, str]) -> tuple[list[Any], str | None]:
        """Records of the page and the cursor of the next one (None when this was the last)."""
        ...


def lookup(body: Any, path: str, what: str, *, required: bool = True) -> Any:
    """Follow a dotted path into a JSON document; an empty path is the document itself."""
    node = body
    for key in filter(None, path.split(".")):
        if not isinstance(node, dict) or key not in node:
            if not required:
                return None
            raise PageFormatError(f"page has no {what} at {path!r}", retryable=False)
        node = node[key]
    return node


def _records(body: Any, config: Pagination) -> list[Any]:
    records = lookup(body, config.records_path, "record list")
    if not isinstance(records, list):
        raise PageFormatError(
            f"{config.records_path or 'page body'} is a {type(records).__name__}, expected a list",
            retryable=False,
        )
    return records


class NextTokenPaginator:
    """The body carries an opaque token; it goes back as a query parameter."""

    def __init__(self, config: Pagination) -> None:
        self._config = config

    def request(self, cursor: str | None) -> PageRequest:
        params = {}
        if self._config.page_size_param:
            params[self._config.page_size_param] = str(self._config.page_size)
        if cursor is not None:
            params[self._config.token_param] = cursor
        return PageRequest(params)

    def parse(self, body: Any, headers: dict[str, str]) -> tuple[list[Any], str | None]:
        records = _records(body, self._config)
        token = lookup(body, self._config.token_path, "next token", required=False)
        if token is None or token == "":
            return records, None
        if not isinstance(token, str | int):
            raise PageFormatError(
                f"next token at {self._config.token_path!r} is not a string", retryable=False
            )
        return records, str(token)


class SinglePagePaginator:
    """The whole window comes back in one response."""

    def __init__(self, config: Pagination) -> None:
        self._config = config

    def request(self, cursor: str | None) -> PageRequest:
        return PageRequest({})

    def parse(self, body: Any, headers: dict[str, str]) -> tuple[list[Any], str | None]:
        return _records(body, self._config), None


def paginator_for(source: Source) -> Paginator:
    """The strategy the catalog selects for the source."""
    styles: dict[str, type[NextTokenPaginator] | type[SinglePagePaginator]] = {
        "next_token": NextTokenPaginator,
        "none": SinglePagePaginator,
    }
    return styles[source.pagination.type](source.pagination)
