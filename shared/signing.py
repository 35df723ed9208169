"""SigV4 signing for API Gateway (`execute-api`) as an httpx.Auth flow.

httpx runs the flow for every send, so each retry attempt is signed afresh with the current
(possibly just refreshed) credentials and a new timestamp. Only a fixed set of headers is
signed, so a proxy or httpx adding transport headers cannot invalidate the signature.
"""

from __future__ import annotations

from collections.abc import Generator
from urllib.parse import parse_qsl

import httpx
from botocore.auth import SigV4Auth as BotocoreSigV4
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_SIGNED_REQUEST_HEADERS = ("host", "content-type", "x-api-key", "x-correlation-id")
_AUTH_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")


class SigV4Auth(httpx.Auth):
    """Sign each request with the credentials' current values for one region and service."""

    requires_request_body = True

    def __init__(self, credentials: Credentials, region: str, service: str = "execute-api") -> None:
        self._credentials = credentials
        self._region = region
        self._service = service

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sign(request, self._credentials, self._region, self._service)
        yield request


def sign(request: httpx.Request, credentials: Credentials, region: str, service: str) -> None:
    """Add SigV4 headers to the request in place."""
    headers = {name: request.headers[name] for name in _SIGNED_REQUEST_HEADERS if name in request.headers}
    # Hand botocore decoded parameters: it re-encodes them the way AWS canonicalises them,
    # whatever encoding the URL was built with.
    params = parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
    aws_request = AWSRequest(
        method=request.method,
        url=str(request.url.copy_with(query=None)),
        params=params,
        data=request.content,
        headers=headers,
    )
    BotocoreSigV4(credentials.get_frozen_credentials(), service, region).add_auth(aws_request)
    for name in _AUTH_HEADERS:
        if name in aws_request.headers:
            request.headers[name] = aws_request.headers[name]
