"""How a source pages: one model per pagination style, selected by `type` (next_token by default).

Each style has the common fields (where the records are, page size, loop guards) and its own;
a field of another style is refused with a message naming the style it belongs to, so a catalog
that says `type = "offset"` and `token_path = ...` fails at start-up instead of being ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from shared.config.model import Model

DEFAULT_STYLE = "next_token"


class _Common(Model):
    """Fields every style has."""

    style: ClassVar[str]

    records_path: str = Field(
        "items", description="Dotted path to the record list; empty if the body is one."
    )
    page_size_param: str = Field("limit", description="Query parameter for the page size; empty for none.")
    page_size: int = Field(100, ge=1, le=10_000, description="Records asked for per page.")
    max_pages: int = Field(100_000, ge=1, description="Loop guard: a window needing more pages fails.")
    stop_on_empty_page: bool = Field(True, description="An empty page ends the window even if it has a next.")
    max_page_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="A larger page is an error, not an OOM."
    )

    @model_validator(mode="before")
    @classmethod
    def _fields_of_other_styles(cls, data: Any) -> Any:
        if isinstance(data, dict):
            own = set(cls.model_fields)
            for name in data:
                owner = _OWNERS.get(name)
                if name not in own and owner is not None:
                    raise ValueError(
                        f"{name} belongs to pagination type {' / '.join(owner)}, not {cls.style}"
                    )
        return data


class NextTokenPagination(_Common):
    """The body carries an opaque token; it goes back as a query parameter or a header."""

    style: ClassVar[str] = "next_token"
    type: Literal["next_token"] = Field("next_token", description="Pagination style (the default).")
    token_path: str = Field("next_token", description="Dotted path to the token in the body.")
    token_param: str = Field("next_token", description="Query parameter (or header) carrying it back.")
    token_in: Literal["query", "header"] = Field("query", description="Send the token as query or header.")


class NextUrlPagination(_Common):
    """The body carries the absolute (or relative) URL of the next page."""

    style: ClassVar[str] = "next_url"
    type: Literal["next_url"] = Field(description="Pagination style.")
    next_url_path: str = Field("links.next", description="Dotted path to the next page's URL.")


class LinkHeaderPagination(_Common):
    """RFC 8288: `Link: <url>; rel="next"` while more pages exist."""

    style: ClassVar[str] = "link_header"
    type: Literal["link_header"] = Field(description="Pagination style.")


class OffsetPagination(_Common):
    """Client-driven offset/limit; stops at the reported total, or without one on a short page."""

    style: ClassVar[str] = "offset"
    type: Literal["offset"] = Field(description="Pagination style.")
    offset_param: str = Field("offset", description="Query parameter of the record offset.")
    total_path: str = Field("", description="Dotted path to the total record count, if reported.")


class PageNumberPagination(_Common):
    """Client-driven page numbers; stops at the reported page count, or without one on a short page."""

    style: ClassVar[str] = "page_number"
    type: Literal["page_number"] = Field(description="Pagination style.")
    page_param: str = Field("page", description="Query parameter of the page number.")
    first_page: int = Field(1, ge=0, description="Number of the first page.")
    total_pages_path: str = Field("", description="Dotted path to the page count, if reported.")


class CursorPagination(_Common):
    """The next page starts after the last record seen (`after=<id>`)."""

    style: ClassVar[str] = "cursor"
    type: Literal["cursor"] = Field(description="Pagination style.")
    cursor_param: str = Field("after", description="Query parameter carrying the last record's key.")
    cursor_field: str = Field("id", description="Record field whose value continues the walk.")
    has_more_path: str = Field("", description="Dotted path to a has-more flag, if reported.")


class SinglePage(_Common):
    """The whole window comes back in one response."""

    style: ClassVar[str] = "none"
    type: Literal["none"] = Field(description="Pagination style.")


STYLES: tuple[type[_Common], ...] = (
    NextTokenPagination,
    NextUrlPagination,
    LinkHeaderPagination,
    OffsetPagination,
    PageNumberPagination,
    CursorPagination,
    SinglePage,
)
# Field name -> the styles that have it, for fields not every style has.
_OWNERS: dict[str, list[str]] = {}
for _style in STYLES:
    for _name in _style.model_fields.keys() - _Common.model_fields.keys() - {"type"}:
        _OWNERS.setdefault(_name, []).append(_style.style)


def _default_style(data: Any) -> Any:
    if isinstance(data, dict) and "type" not in data:
        return {**data, "type": DEFAULT_STYLE}
    return data


PaginationStyle = (
    NextTokenPagination
    | NextUrlPagination
    | LinkHeaderPagination
    | OffsetPagination
    | PageNumberPagination
    | CursorPagination
    | SinglePage
)
Pagination = Annotated[
    PaginationStyle,
    Field(discriminator="type"),
    BeforeValidator(_default_style),
]
