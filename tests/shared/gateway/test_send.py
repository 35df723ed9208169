"""Sending below httpx.Client: what the client still decides (routing, headers) and what it no longer does."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from urllib.parse import urlencode

import httpx
from hypothesis import given
from hypothesis import strategies as st

from shared.gateway.send import send, with_query

from fixtures import catalog_source, gateway_client

PAGE = {"items": [{"id": 1}], "next_token": None}


def test_a_mount_for_the_gateways_url_is_where_the_request_goes() -> None:
    # A proxy or a mount configured on the pooled client (HTTPS_PROXY, mounts=) must still route
    # the page requests: this fails if httpx stops routing by _transport_for_url.
    default_seen: list[str] = []
    mounted_seen: list[str] = []
    default = httpx.MockTransport(lambda r: default_seen.append(str(r.url)) or httpx.Response(500))
    mounted = httpx.MockTransport(lambda r: mounted_seen.append(str(r.url)) or httpx.Response(200, json=PAGE))
    http = httpx.Client(transport=default, mounts={"https://api.example.com": mounted})
    response = send(http, httpx.Request("GET", "https://api.example.com/dev/orders"), None)
    assert response.status_code == 200
    assert mounted_seen == ["https://api.example.com/dev/orders"] and default_seen == []


def test_a_cookie_the_api_sets_is_never_sent_back() -> None:
    # A cookie is state outside the signature; httpx.Client would replay it on every later page.
    cookies_sent: list[str | None] = []

    def api(request: httpx.Request) -> httpx.Response:
        cookies_sent.append(request.headers.get("cookie"))
        token = "t" if len(cookies_sent) == 1 else None
        return httpx.Response(
            200,
            json={"items": [{"id": 1}], "next_token": token},
            headers={"set-cookie": "AWSALB=abc; Path=/"},
        )

    client = gateway_client(catalog_source("https://api.example.com"), httpx.MockTransport(api))
    pages = list(client.pages(None, max_pages=10))
    assert len(pages) == 2
    assert cookies_sent == [None, None]


def test_the_client_defaults_and_our_headers_both_reach_the_api() -> None:
    seen: list[httpx.Headers] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json=PAGE)

    client = gateway_client(catalog_source("https://api.example.com"), httpx.MockTransport(api))
    client.fetch(None, 1)
    (headers,) = seen
    # accept-encoding: API Gateway compresses only for clients that ask (the body is decoded by us).
    assert headers["accept-encoding"] == "gzip, deflate"
    assert headers["user-agent"].startswith("python-httpx/")
    assert headers["accept"] == "application/json"
    assert headers["x-correlation-id"] == "run"


class _ResendOnce(httpx.Auth):
    def __init__(self) -> None:
        self.answers: list[httpx.Response] = []

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-attempt"] = "1"
        response = yield request
        self.answers.append(response)
        if response.status_code == 403:
            request.headers["x-attempt"] = "2"
            self.answers.append((yield request))


def _never_read() -> Iterator[bytes]:
    raise AssertionError("the refused answer's body was read")
    yield b""  # a generator


def test_an_auth_flow_that_resends_gets_the_second_answer_and_the_first_is_closed_unread() -> None:
    """The refused body is not read: httpx would decode it whole (a gzip bomb, uncapped)."""

    def api(request: httpx.Request) -> httpx.Response:
        if request.headers["x-attempt"] == "1":
            headers = {"content-encoding": "gzip, gzip", "x-amzn-errortype": "ExpiredTokenException"}
            return httpx.Response(403, headers=headers, content=_never_read())
        return httpx.Response(200, json=PAGE)

    auth = _ResendOnce()
    http = httpx.Client(transport=httpx.MockTransport(api))
    response = send(http, httpx.Request("GET", "https://api.example.com/dev/orders"), auth)
    refused, final = auth.answers
    assert response is final and response.status_code == 200
    assert response.request.headers["x-attempt"] == "2"
    assert refused.status_code == 403 and refused.is_closed


def test_the_clients_event_hooks_see_every_request_and_response() -> None:
    seen: list[str] = []
    http = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=PAGE)),
        event_hooks={
            "request": [lambda r: seen.append(f"request {r.url.path}")],
            "response": [lambda r: seen.append(f"response {r.status_code}")],
        },
    )
    send(http, httpx.Request("GET", "https://api.example.com/dev/orders"), None)
    assert seen == ["request /dev/orders", "response 200"]


@given(
    st.sampled_from(
        ["https://abc.execute-api.eu-west-1.amazonaws.com/dev/orders", "http://127.0.0.1:8080/v1/a%20b/"]
    ),
    st.dictionaries(st.text(min_size=1), st.text(), max_size=6),
)
def test_a_page_url_built_from_the_parsed_endpoint_is_the_url_httpx_parses(
    endpoint: str, params: dict[str, str]
) -> None:
    # with_query skips httpx's parse of the whole URL: it must give exactly what the parse gives
    # (the signature covers the path and query as sent), whatever the params hold.
    query = urlencode(params)
    built, parsed = with_query(httpx.URL(endpoint), query), httpx.URL(f"{endpoint}?{query}")
    assert (str(built), built.raw_path, built.host, built.port) == (
        str(parsed),
        parsed.raw_path,
        parsed.host,
        parsed.port,
    )
    assert built == parsed
