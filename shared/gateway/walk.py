"""A window's walk: pages from a cursor with the loop guards, and the cycle detector it carries.

The guards: the page cap (pagination.max_pages), a cursor this part already saw, and a cycle
across parts (Brent's algorithm, whose bounded state travels with the durable checkpoint).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from shared.config.catalog import Source
from shared.errors import PaginationError
from shared.gateway.pages import Page


class _Fetcher(Protocol):
    @property
    def source(self) -> Source: ...

    def fetch(self, cursor: str | None, number: int) -> Page: ...


@dataclass
class CursorTrail:
    """Brent's cycle detection over a window's next cursors, carried from part to part.

    Bounded memory (one saved cursor digest), so a cursor sequence that cycles with any period
    is caught within about twice (lead-in + period) pages, however the window is cut into parts.
    """

    power: int = 1
    steps: int = 1
    saved: str | None = None
    saved_page: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> CursorTrail:
        return cls(**data) if data else cls()

    def to_json(self) -> dict[str, Any]:
        return {"power": self.power, "steps": self.steps, "saved": self.saved, "saved_page": self.saved_page}

    def step(self, cursor: str, page: int) -> int | None:
        """Record the next cursor page `page` returned; the earlier page that returned it, if any."""
        digest = hashlib.sha256(cursor.encode()).hexdigest()[:32]
        if digest == self.saved:
            return self.saved_page
        if self.steps == self.power:
            self.saved, self.saved_page = digest, page
            self.power, self.steps = self.power * 2, 0
        self.steps += 1
        return None


class PageWalk:
    """Pages from a cursor until the window is exhausted, `max_pages` are fetched or `enough()`
    (asked from the second page on).

    Iterate it; afterwards `next_cursor`, `done`, `last_page` (the window-wide number of the last
    page fetched) and `fetched` say where the walk stands, for the next part to go on from.
    """

    def __init__(
        self,
        client: _Fetcher,
        cursor: str | None,
        *,
        after_page: int,
        max_pages: int,
        enough: Callable[[], bool],
        trail: dict[str, Any] | None = None,
    ) -> None:
        self._client = client
        self._max_pages = max_pages
        self._enough = enough
        self._trail = CursorTrail.from_json(trail)
        self.next_cursor = cursor
        self.last_page = after_page
        self.fetched = 0
        self.done = False

    def __iter__(self) -> Iterator[Page]:
        source = self._client.source
        seen = {self.next_cursor}
        # At least one page, whatever `enough()` says: every walk makes progress.
        while self.fetched < self._max_pages and not (self.fetched and self._enough()):
            number = self.last_page + 1
            if number > source.pagination.max_pages:
                raise PaginationError(
                    f"window needs more than {source.pagination.max_pages} pages (pagination.max_pages); "
                    "a looping API or a window that should be split",
                    source=source.name,
                    page=number,
                )
            page = self._client.fetch(self.next_cursor, number)
            self.last_page, self.fetched = number, self.fetched + 1
            yield page
            if page.next_cursor is None or (not page.records and source.pagination.stop_on_empty_page):
                self.done, self.next_cursor = True, None
                return
            if page.next_cursor in seen:
                raise PaginationError(
                    "the API returned a next cursor it already returned; refusing to loop",
                    source=source.name,
                    page=number,
                    request_id=page.request_id,
                )
            earlier = self._trail.step(page.next_cursor, number)
            if earlier is not None:
                raise PaginationError(
                    f"page {number} returned the same next cursor as page {earlier}: the API's cursors "
                    "cycle; refusing to loop",
                    source=source.name,
                    page=number,
                    request_id=page.request_id,
                )
            seen.add(page.next_cursor)
            self.next_cursor = page.next_cursor

    @property
    def trail(self) -> dict[str, Any]:
        """The cycle detector's state, for the next part's walk to go on with."""
        return self._trail.to_json()
