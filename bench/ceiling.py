"""The ceiling client: a minimal loop of signed GETs on the app's own HTTP path, nothing landed.

Started by bench/throughput.py as its own process (the emulator runs in the bench process,
so a client sharing that process's GIL would measure the GIL, not the client).  Its
environment is the stack's app env; credentials are obtained once, before the clock starts,
exactly as the app does (managed identity -> STS).  Per page it signs, sends, parses the JSON
for the next token and counts the records; it writes nothing.  With --pace/--burst it sends
on the gateway bucket's own schedule (an ideal client for a known limit) and resends a 429
after 1/rate s.

--via send (the ceiling): the app's signer (shared.gateway.sigv4) and sender
(shared.gateway.send, the pooled client's transport without httpx.Client's per-request
layers), orjson for the token -- the cheapest fetch this stack has, so the app's ratio to it
counts everything the app does beyond fetching.  --via client (`httpx-get` in the bench):
httpx.Client.get and json.loads, the ceiling until the app sent below httpx.Client; kept as
the figure a hand-written httpx loop reaches.
Prints one JSON object: records, pages, requests, throttled, seconds (the loop only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from federation import assume_role

from shared.gateway.send import send
from shared.gateway.sigv4 import sign


class SigV4Auth(httpx.Auth):
    """The app's signing function (shared.gateway.sigv4.sign) for execute-api, as an httpx.Auth."""

    requires_request_body = True

    def __init__(self, credentials: Credentials, region: str) -> None:
        self._credentials = credentials
        self._region = region

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sign(request, self._credentials, self._region, "execute-api")
        yield request


Get = Callable[[dict[str, str]], tuple[int, Any]]


def via_send(client: httpx.Client, auth: httpx.Auth, url: str) -> Get:
    """GET through the app's sender; the status and the parsed body."""
    timeout = client.timeout.as_dict()

    def get(query: dict[str, str]) -> tuple[int, Any]:
        request = httpx.Request("GET", f"{url}?{urlencode(query)}", extensions={"timeout": timeout})
        response = send(client, request, auth)
        try:
            body = response.read()
        finally:
            response.close()
        return response.status_code, orjson.loads(body) if response.status_code == 200 else None

    return get


def via_client(client: httpx.Client, url: str) -> Get:
    """GET through httpx.Client (auth set on the client); the status and the parsed body."""

    def get(query: dict[str, str]) -> tuple[int, Any]:
        response = client.get(url, params=query)
        return response.status_code, json.loads(response.content) if response.status_code == 200 else None

    return get


def walk(get: Get, params: dict[str, str], pace: float | None, burst: int) -> dict[str, float]:
    """Follow next_token to the end; counts only.  With `pace`, request i goes no earlier than
    (i - burst + 1) / pace seconds after the start: a gateway bucket's exact schedule."""
    records = pages = requests = throttled = 0
    token: str | None = None
    started = time.perf_counter()
    while True:
        if pace:
            due = started + max(0, requests - burst + 1) / pace
            time.sleep(max(0.0, due - time.perf_counter()))
        query = params if token is None else {**params, "next_token": token}
        status, document = get(query)
        requests += 1
        if status == 429:
            throttled += 1
            time.sleep(1 / pace if pace else 0.01)
            continue
        if status != 200:
            raise SystemExit(f"HTTP {status} from the gateway")
        records += len(document["items"])
        pages += 1
        token = document.get("next_token")
        if not token:
            break
    seconds = time.perf_counter() - started
    return {
        "records": records,
        "pages": pages,
        "requests": requests,
        "throttled": throttled,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the resource URL, e.g. http://127.0.0.1:PORT/dev/bench")
    parser.add_argument("--from", dest="start", required=True)
    parser.add_argument("--to", dest="end", required=True)
    parser.add_argument("--page-size", type=int, required=True)
    parser.add_argument("--role-arn", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--pace", type=float, default=None, help="space requests at this many per second")
    parser.add_argument("--burst", type=int, default=1, help="with --pace: requests allowed at once")
    parser.add_argument("--via", choices=("send", "client"), default="send", help="how to send (see above)")
    args = parser.parse_args()
    credentials = assume_role(args.role_arn, args.audience, args.region, "bench-ceiling")
    params = {"from": args.start, "to": args.end, "limit": str(args.page_size)}
    auth = SigV4Auth(credentials, args.region)
    with httpx.Client(auth=auth, timeout=30) as client:
        get = via_send(client, auth, args.url) if args.via == "send" else via_client(client, args.url)
        result = walk(get, params, args.pace, args.burst)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
