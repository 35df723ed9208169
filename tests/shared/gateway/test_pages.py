"""Page policies (issue 17, finding 11): what a page may hold, decided once and named when broken."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import GatewayError, PageFormatError, UnsafeUrlError
from shared.gateway.client import GatewayClient
from shared.gateway.pages import PagePolicyError, check_records, parse_page, read_page
from shared.gateway.pagination import lookup
from shared.observability.redaction import register_secret

from fixtures import catalog_source, gateway_client


def client(
    handler: Callable[[httpx.Request], httpx.Response], pagination: str = "next_token", **fields: Any
) -> GatewayClient:
    source = catalog_source(
        "https://api.example.com", pagination={"type": pagination}, retry={"max_attempts": 3}, **fields
    )
    return gateway_client(source, httpx.MockTransport(handler))


def answering(body: bytes, status: int = 200, calls: list[int] | None = None, **fields: Any) -> GatewayClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if calls is not None:
            calls.append(1)
        return httpx.Response(status, content=body, headers={"x-amzn-requestid": "req-7"})

    return client(handler, **fields)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_refused_naming_page_and_constant(constant: str) -> None:
    calls: list[int] = []
    body = b'{"items": [{"id": "a", "x": ' + constant.encode() + b"}]}"
    with pytest.raises(PageFormatError) as failed:
        answering(body, calls=calls).fetch(None, 4)
    message = str(failed.value)
    assert constant in message and "page=4" in message and "request_id=req-7" in message
    assert calls == [1], "the same page comes back the same way: not retried"


def test_a_duplicate_key_is_refused_naming_the_key() -> None:
    body = b'{"items": [{"id": "a", "amount": 1, "amount": 2}]}'
    with pytest.raises(PageFormatError) as failed:
        answering(body).fetch(None, 2)
    assert "'amount' twice" in str(failed.value) and "page=2" in str(failed.value)


@pytest.mark.parametrize(
    ("record", "kind"), [(b'"a"', "str"), (b"7", "int"), (b"[1]", "list"), (b"null", "null")]
)
def test_a_record_that_is_not_an_object_is_refused_naming_page_and_index(record: bytes, kind: str) -> None:
    body = b'{"items": [{"id": "a"}, ' + record + b"]}"
    with pytest.raises(PageFormatError) as failed:
        answering(body).fetch(None, 3)
    assert f"record 1 of the page is a JSON {kind}" in str(failed.value) and "page=3" in str(failed.value)


def test_http_204_is_an_empty_last_page_not_a_retried_parse_error() -> None:
    calls: list[int] = []
    page = answering(b"", status=204, calls=calls).fetch("cursor", 9)
    assert (page.records, page.next_cursor, page.request_id) == ([], None, "req-7")
    assert calls == [1]


def test_well_formed_pages_parse_as_before() -> None:
    assert parse_page(b'{"items": [{"id": 12345678901234567890123, "nested": {"a": 1}}]}') == {
        "items": [{"id": 12345678901234567890123, "nested": {"a": 1}}]
    }
    check_records([{"id": 1}, {}])
    with pytest.raises(PagePolicyError):
        check_records([{"id": 1}, "x"])


def test_an_off_origin_next_link_names_page_and_request_id_but_never_its_userinfo() -> None:
    body = b'{"items": [{"id": "a"}], "next": "https://alice:hunter2-password@evil.example.net/steal"}'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"x-amzn-requestid": "req-8"})

    source = catalog_source(
        "https://api.example.com", pagination={"type": "next_url", "next_url_path": "next"}
    )
    gateway = gateway_client(source, httpx.MockTransport(handler))
    with pytest.raises(UnsafeUrlError) as failed:
        gateway.fetch(None, 5)
    message = str(failed.value)
    assert "evil.example.net" in message and "page=5" in message and "request_id=req-8" in message
    assert "alice" not in message and "hunter2" not in message


# JSON values as APIs send them: integers past 64 bits, -0.0, non-ASCII and control characters.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
_records = st.lists(st.dictionaries(st.text(max_size=6), _values, max_size=6), max_size=5)


def _compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# How servers write pages: compact as Node's JSON.stringify (orjson's form but for some floats),
# Python's json.dumps (spaced, ASCII-escaped), pretty-printed, with a trailing newline.
_styles: dict[str, Callable[[Any], bytes]] = {
    "compact": _compact,
    "python default": lambda doc: json.dumps(doc).encode(),
    "indented": lambda doc: json.dumps(doc, indent=2, ensure_ascii=False).encode(),
    "newline": lambda doc: _compact(doc) + b"\n",
}


@given(records=_records, style=st.sampled_from(sorted(_styles)))
def test_every_page_parses_exactly_as_the_standard_library_reads_it(records: list[Any], style: str) -> None:
    body = _styles[style]({"items": records, "next_token": "abc"})
    # repr, not ==: 1 == 1.0 == True, but a page's 1 must not land as 1.0 or true.
    assert repr(parse_page(body)) == repr(json.loads(body))


def _nested(records: list[Any], path: str) -> Any:
    """A page holding `records` at the dotted `path` (the body itself for ""), among other fields."""
    if not path:
        return records
    outer, _, inner = path.partition(".")
    return {"count": len(records), outer: _nested(records, inner) if inner else records, "next_token": "abc"}


@given(
    records=_records,
    style=st.sampled_from(sorted(_styles)),
    path=st.sampled_from(["items", "data.rows", ""]),
)
def test_record_texts_kept_from_a_page_are_its_records_as_sent(
    records: list[Any], style: str, path: str
) -> None:
    body = _styles[style](_nested(records, path))
    read = read_page(body, path)
    assert repr(read.document) == repr(json.loads(body))
    # Without texts (Parquet) the page reads the same, checked whole.
    assert repr(read_page(body, path, with_texts=False)) == repr(type(read)(read.document))
    if read.texts is not None:
        assert read.records is lookup(read.document, path, "records")
        assert [repr(json.loads(text)) for text in read.texts] == [repr(record) for record in read.records]
        assert b",".join(read.texts) in body  # the page's own bytes, not a re-serialisation


@pytest.mark.parametrize("path", ["items", "data.rows", ""])
def test_a_compact_page_keeps_each_records_text_as_sent(path: str) -> None:
    texts = [b'{"id":"a","n":1,"f":0.1,"s":"caf\xc3\xa9"}', b'{"id":"b","x":[1,{"k":null}]}', b"{}"]
    records = b"[" + b",".join(texts) + b"]"
    body = {
        "items": b'{"items":' + records + b',"next_token":"t"}',
        "data.rows": b'{"count":3,"data":{"rows":' + records + b',"more":true},"next_token":"t"}',
        "": records,
    }[path]
    read = read_page(body, path)
    assert read.texts == texts and read.records == [json.loads(text) for text in texts]


@pytest.mark.parametrize(
    "body",
    [
        b'{"items":[{"id":"a"}],"next_token":"t","next_token":"u"}',  # beside the records
        b'{"items":[{"id":"a"}],"items":[{"id":"b"}]}',  # the records' own key
        b'{"data":{"rows":[{"id":"a"}],"rows":[]}}',  # on the path to them
    ],
)
def test_a_compact_page_with_a_key_written_twice_around_its_records_is_refused(body: bytes) -> None:
    with pytest.raises(PagePolicyError, match="twice"):
        read_page(body, "data.rows" if b"data" in body else "items")


def test_a_page_whose_records_path_holds_no_list_keeps_no_texts_and_reads_as_before() -> None:
    read = read_page(b'{"items":{"id":"a"},"next_token":"t"}', "items")
    assert read.document == {"items": {"id": "a"}, "next_token": "t"} and read.texts is None


def test_a_fetched_page_carries_its_records_texts_only_when_read_exactly() -> None:
    compact = answering(b'{"items":[{"id":"a","n":1},{"id":"b"}],"next_token":"t"}').fetch(None, 1)
    assert compact.texts == [b'{"id":"a","n":1}', b'{"id":"b"}']
    spaced = answering(b'{"items": [{"id": "a", "n": 1}], "next_token": "t"}').fetch(None, 1)
    assert spaced.texts is None and spaced.records == [{"id": "a", "n": 1}]
    huge = answering(b'{"items":[{"id":123456789012345678901234567890}],"next_token":"t"}').fetch(None, 1)
    assert huge.texts is None and huge.records == [{"id": 123456789012345678901234567890}]


def test_a_page_for_parquet_parts_keeps_no_texts_and_is_refused_alike() -> None:
    parquet = {"output": {"format": "parquet"}}
    page = answering(b'{"items":[{"id":"a","n":1}],"next_token":"t"}', **parquet).fetch(None, 1)
    assert page.texts is None and page.records == [{"id": "a", "n": 1}] and page.next_cursor == "t"
    with pytest.raises(PageFormatError, match="'id' twice"):
        answering(b'{"items":[{"id":"a","id":"b"}],"next_token":"t"}', **parquet).fetch(None, 1)


@given(
    record=st.dictionaries(st.text(max_size=6), _values, min_size=1, max_size=5),
    style=st.sampled_from(["compact", "python default"]),
)
def test_a_key_written_twice_is_refused_however_the_page_is_written(
    record: dict[str, Any], style: str
) -> None:
    key = next(iter(record))
    pairs = [(k, _styles[style](v).decode()) for k, v in [*record.items(), (key, record[key])]]
    colon, comma = (":", ",") if style == "compact" else (": ", ", ")
    obj = "{" + comma.join(f"{json.dumps(k)}{colon}{v}" for k, v in pairs) + "}"
    with pytest.raises(PagePolicyError, match="twice"):
        parse_page(f'{{"items"{colon}[{obj}]}}'.encode())


@pytest.mark.parametrize("number", ["1e400", "-1E999"])
def test_a_number_too_large_for_a_double_is_refused_not_landed_as_null(number: str) -> None:
    with pytest.raises(PageFormatError) as failed:
        answering(b'{"items":[{"id":"a","amount":' + number.encode() + b"}]}").fetch(None, 6)
    assert number in str(failed.value) and "too large for a double" in str(failed.value)
    assert "page=6" in str(failed.value)


# A value the process holds as a secret (as it registers every key, token and credential).
HELD = "zK3q9vLmT2xPaB7cRw1sYu8NdE4hJ6fG0oXiQ5lV" * 4


def _hostile(status: int, body: bytes, request_id: str = "req-7") -> GatewayClient:
    register_secret(HELD)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"x-amzn-requestid": request_id})

    return client(handler)


def _leaks(text: str) -> bool:
    """Whether any 12 characters of the held secret are in `text`."""
    return any(HELD[i : i + 12] in text for i in range(len(HELD) - 12))


def test_a_request_id_quoting_a_secret_reaches_no_error_and_no_page() -> None:
    with pytest.raises(GatewayError) as failed:
        _hostile(403, b"denied", request_id=f"rid-{HELD}").fetch(None, 1)
    assert not _leaks(str(failed.value)) and not _leaks(json.dumps(failed.value.to_dict()))
    page = _hostile(200, b'{"items":[{"id":"a"}]}', request_id=f"rid-{HELD}").fetch(None, 1)
    assert page.request_id is not None and not _leaks(page.request_id)


@pytest.mark.parametrize("at", [4096, 64 * 1024], ids=["4 KiB", "64 KiB"])
def test_an_error_body_cut_inside_a_secret_keeps_none_of_it(at: int) -> None:
    # Spaces, then the secret across byte `at`: collapsed, the secret would come next in the message.
    body = b"access denied" + b" " * (at - 43) + HELD.encode()
    with pytest.raises(GatewayError) as failed:
        _hostile(403, body).fetch(None, 1)
    assert not _leaks(str(failed.value)) and "HTTP 403: access denied" in str(failed.value)


def test_an_error_raised_with_a_request_id_quoting_a_secret_does_not_repeat_it() -> None:
    register_secret(HELD)
    error = GatewayError("HTTP 403", source="orders", page=2, request_id=f"rid-{HELD}")
    assert not _leaks(str(error)) and not _leaks(json.dumps(error.to_dict()))


def test_a_key_written_twice_that_is_a_secret_is_not_quoted_in_part() -> None:
    body = f'{{"items": [{{"{HELD}": 1, "{HELD}": 2}}]}}'.encode()
    with pytest.raises(PageFormatError, match="twice") as failed:
        _hostile(200, body).fetch(None, 1)
    assert not _leaks(str(failed.value))


def test_a_next_cursor_quoting_a_secret_is_refused_not_kept_in_checkpoints() -> None:
    body = f'{{"items":[{{"id":"a"}}],"next_token":"page2-{HELD}"}}'.encode()
    with pytest.raises(PageFormatError, match="next cursor holds a secret") as failed:
        _hostile(200, body).fetch(None, 1)
    assert not _leaks(str(failed.value))
    assert _hostile(200, b'{"items":[{"id":"a"}],"next_token":"page2"}').fetch(None, 1).next_cursor == "page2"
