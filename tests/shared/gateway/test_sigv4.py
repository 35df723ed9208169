"""Our SigV4 signer agrees with botocore's, byte for byte, on the requests the client sends."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from shared.gateway import sigv4 as signing

NOW = datetime(2026, 11, 25, 12, 34, 56, tzinfo=UTC)
CREDENTIALS = ReadOnlyCredentials("ASIAEXAMPLEEXAMPLE12", "secret/with+chars=", "session-token-value")

URLS = [
    "https://abc.execute-api.eu-west-1.amazonaws.com/dev/orders",
    "https://abc.execute-api.eu-west-1.amazonaws.com/dev/orders?from=2024-01-01T00%3A00%3A00Z&to=2024-01-02T00%3A00%3A00Z&limit=100",
    "http://127.0.0.1:8080/dev/orders?next_token=eyJvIjo1fQ%3D%3D&limit=5&a=&a=b",
    "https://h.example/dev/a%20b/c%2Fd?q=%C3%A9t%C3%A9+x&z=~ok",
    "https://h.example/dev/./x/../orders/?k=v",
]


def botocore_headers(request: httpx.Request) -> dict[str, str]:
    headers = {n: request.headers[n] for n in signing.SIGNED_REQUEST_HEADERS if n in request.headers}
    from urllib.parse import parse_qsl

    aws = AWSRequest(
        method=request.method,
        url=str(request.url.copy_with(query=None)),
        params=parse_qsl(request.url.query.decode(), keep_blank_values=True),
        data=request.content,
        headers=headers,
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        SigV4Auth(CREDENTIALS, "execute-api", "eu-west-1").add_auth(aws)
    return {k: aws.headers[k] for k in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")}


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("extra", [{}, {"x-api-key": "k" * 20, "x-correlation-id": "run-1"}])
def test_signature_matches_botocore(url: str, extra: dict[str, str]) -> None:
    request = httpx.Request("GET", url, headers={"accept": "application/json", **extra})
    expected = botocore_headers(request)
    with mock.patch.object(signing, "datetime", wraps=datetime) as clock:
        clock.now.return_value = NOW
        signing.sign(request, CREDENTIALS, "eu-west-1", "execute-api")
    assert {k: request.headers[k] for k in expected} == expected


def test_post_body_is_hashed_like_botocore() -> None:
    request = httpx.Request(
        "POST", URLS[0], content=b'{"q": 1}', headers={"content-type": "application/json"}
    )
    expected = botocore_headers(request)
    with mock.patch.object(signing, "datetime", wraps=datetime) as clock:
        clock.now.return_value = NOW
        signing.sign(request, CREDENTIALS, "eu-west-1", "execute-api")
    assert request.headers["Authorization"] == expected["Authorization"]
