"""One request over the pooled client's connections, without httpx.Client's per-request layers.

`httpx.Client.send` passes every response through a cookie jar (two urllib shims and a URL parse,
even when no cookie is set), a redirect loop, an elapsed-time stream wrapper and an INFO log
line carrying the full URL. A signed page client needs none of them: it never follows a
redirect (a 3xx is an error), and a cookie the API sets is unsigned state it must not replay.
At zero latency that is about 0.25 ms of CPU a page, a tenth of its wall time (bench/RESULTS.md).
What stays httpx's own: the connection pool, proxies and mounts (the request goes to the
transport the client would pick for its URL), the client's event hooks, timeouts (the
request's extensions) and the exception mapping; the Auth flow is driven as httpx.Client
drives it.

`with_query` builds a page's URL from the endpoint's, parsed once: httpx.URL(str) re-validates
every character of the URL, about a third of building a page request.
"""

from __future__ import annotations

import httpx


def send(http: httpx.Client, request: httpx.Request, auth: httpx.Auth | None) -> httpx.Response:
    """Send `request` through `auth`'s flow; the last response comes back unread (a stream)."""
    # httpx 0.28's routing by mounts and proxies (pinned; tests/shared/gateway/test_send.py).
    transport = http._transport_for_url(request.url)
    if auth is None:
        return _exchange(http, transport, request)
    flow = auth.sync_auth_flow(request)
    try:
        request = next(flow)
        while True:
            response = _exchange(http, transport, request)
            try:
                request = flow.send(response)
            except StopIteration:
                return response
            except BaseException:
                response.close()
                raise
            # The flow asked to resend. The refused answer goes unread, its connection with it:
            # httpx would decode its body whole, any stack of codings (a 5 KB `gzip, gzip` bomb
            # is gigabytes), with no cap and no deadline; a renewal is rare, a reconnect cheap.
            response.close()
    finally:
        flow.close()


def with_query(endpoint: httpx.URL, query: str) -> httpx.URL:
    """`endpoint` (no query of its own) with `query`, as urlencode wrote it, for its query.

    What httpx.URL(f"{endpoint}?{query}") gives, without re-parsing: urlencode's output holds
    only unreserved characters, %XX escapes and `+=&`, which httpx keeps as they are
    (httpx 0.28's ParseResult, pinned; tests/shared/gateway/test_send.py holds the two equal).
    """
    url = httpx.URL.__new__(httpx.URL)
    url._uri_reference = endpoint._uri_reference._replace(query=query)
    return url


def _exchange(http: httpx.Client, transport: httpx.BaseTransport, request: httpx.Request) -> httpx.Response:
    hooks = http.event_hooks
    for hook in hooks["request"]:
        hook(request)
    response = transport.handle_request(request)
    response.request = request
    try:
        for hook in hooks["response"]:
            hook(response)
    except BaseException:
        response.close()
        raise
    return response
