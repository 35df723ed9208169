"""The pagination strategies and the origin check on their own: no server, microseconds each."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from shared.config.catalog import Source
from shared.config.pagination import Pagination
from shared.errors import UnsafeUrlError
from shared.gateway.pagination import MalformedPage, PageContext, paginator_for

from fixtures import catalog_source, gateway_client

URL = "https://api.example.com/dev/orders?limit=2"


def source(**pagination: Any) -> Source:
    return catalog_source("https://api.example.com", pagination=pagination)


def page(body: Any, cursor: str | None = None, link: str | None = None) -> PageContext:
    headers = {"link": link} if link else {}
    links = {str(k): v for k, v in httpx.Response(200, headers=headers).links.items()}
    return PageContext(body, links, URL, cursor)


def test_next_token_goes_back_as_a_query_parameter_or_a_header() -> None:
    query = paginator_for(source(type="next_token", page_size=2))
    assert query.request(None).params == {"limit": "2"}
    assert query.request("t2").params == {"limit": "2", "next_token": "t2"}
    header = paginator_for(source(type="next_token", token_in="header", token_param="x-next"))
    assert header.request("t2").headers == {"x-next": "t2"}
    assert query.parse(page({"items": [1, 2], "next_token": "t3"})) == ([1, 2], "t3")
    assert query.parse(page({"items": [1], "next_token": ""})) == ([1], None)
    assert query.parse(page({"items": [1], "next_token": 42})) == ([1], "42")
    with pytest.raises(MalformedPage, match="not a string"):
        query.parse(page({"items": [], "next_token": {"a": 1}}))


def test_next_url_is_resolved_against_the_page_url() -> None:
    style = paginator_for(source(type="next_url", records_path="data"))
    assert style.parse(page({"data": [1], "links": {"next": "/dev/orders?p=2"}})) == (
        [1],
        "https://api.example.com/dev/orders?p=2",
    )
    assert style.parse(page({"data": [1], "links": {}})) == ([1], None)
    assert style.request("https://api.example.com/x").url == "https://api.example.com/x"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://api.example.com/dev/orders?p=2>; rel="next"', "https://api.example.com/dev/orders?p=2"),
        ('<?p=3>; rel="next last", <?p=1>; rel=prev', "https://api.example.com/dev/orders?p=3"),
        ('<https://api.example.com/x?p=1>; rel="prev"', None),
        (None, None),
    ],
)
def test_link_header_follows_rel_next_only(header: str | None, expected: str | None) -> None:
    style = paginator_for(source(type="link_header", records_path=""))
    assert style.parse(page([1, 2], link=header)) == ([1, 2], expected)


def test_offset_stops_at_the_total_or_without_one_on_a_short_page() -> None:
    style = paginator_for(source(type="offset", page_size=2, total_path="total"))
    assert style.request(None).params == {"limit": "2", "offset": "0"}
    assert style.parse(page({"items": [1, 2], "total": 5}, cursor="0")) == ([1, 2], "2")
    assert style.parse(page({"items": [1, 2], "total": 4}, cursor="2")) == ([1, 2], None)
    assert style.parse(page({"items": [1]}, cursor="4")) == ([1], None)
    # Short, but the total says more: the API clamped the page size.
    assert style.parse(page({"items": [1], "total": 5}, cursor="2")) == ([1], "3")
    with pytest.raises(MalformedPage, match="not an integer"):
        style.parse(page({"items": [1, 2], "total": "many"}, cursor="0"))


def test_page_number_counts_from_first_page_and_stops_at_the_page_count() -> None:
    style = paginator_for(source(type="page_number", page_size=2, first_page=0, total_pages_path="pages"))
    assert style.request(None).params == {"limit": "2", "page": "0"}
    assert style.parse(page({"items": [1, 2], "pages": 3}, cursor="1")) == ([1, 2], "2")
    assert style.parse(page({"items": [1, 2], "pages": 3}, cursor="2")) == ([1, 2], None)  # 0, 1, 2
    assert style.parse(page({"items": [1]}, cursor="1")) == ([1], None)  # no count: a short page ends
    assert style.parse(page({"items": [1], "pages": 3}, cursor="0")) == ([1], "1")  # clamped, not the end


def test_cursor_continues_after_the_last_record_and_needs_its_key() -> None:
    style = paginator_for(source(type="cursor", page_size=2, has_more_path="more"))
    assert style.parse(page({"items": [{"id": "a"}, {"id": "b"}], "more": True})) == (
        [{"id": "a"}, {"id": "b"}],
        "b",
    )
    assert style.parse(page({"items": [{"id": "a"}], "more": False}))[1] is None
    with pytest.raises(MalformedPage, match="no 'id'"):
        style.parse(page({"items": [{"id": "a"}, {"x": 1}], "more": True}))


def test_a_single_page_style_never_asks_for_more() -> None:
    style = paginator_for(source(type="none", records_path="", page_size_param=""))
    assert style.request(None).params == {}
    assert style.parse(page([1, 2, 3])) == ([1, 2, 3], None)


def test_records_that_are_not_a_list_are_named() -> None:
    style = paginator_for(source(type="next_token"))
    with pytest.raises(MalformedPage, match="items is a dict"):
        style.parse(page({"items": {"a": 1}}))
    with pytest.raises(MalformedPage, match="no record list at 'items'"):
        style.parse(page({"data": []}))


def test_a_field_of_another_style_is_refused_naming_the_style_it_belongs_to() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(Pagination)
    assert adapter.validate_python({}).type == "next_token"
    with pytest.raises(ValidationError, match="token_path belongs to pagination type next_token, not offset"):
        adapter.validate_python({"type": "offset", "token_path": "next"})
    with pytest.raises(ValidationError, match="cursor_field belongs to pagination type cursor, not next_tok"):
        adapter.validate_python({"cursor_field": "id"})


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example.com/dev/orders?p=2", True),
        ("https://API.EXAMPLE.COM:443/dev/orders", True),
        ("http://api.example.com/dev/orders", False),  # downgraded scheme
        ("https://api.example.com:8443/dev/orders", False),
        ("https://api.example.com.evil.test/dev/orders", False),
        ("https://evil.test/?h=api.example.com", False),
    ],
)
def test_the_origin_check_allows_only_the_catalog_s_scheme_host_and_port(url: str, allowed: bool) -> None:
    client = gateway_client(source(type="next_url"))
    if allowed:
        client._check_origin(url)
    else:
        with pytest.raises(UnsafeUrlError, match="refusing to follow"):
            client._check_origin(url, 3, "req-1")
