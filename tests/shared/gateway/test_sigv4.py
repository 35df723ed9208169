"""The app's SigV4 signer, right by AWS's own references rather than by our stand-in alone.

- byte-equal to botocore's `SigV4Auth` for `execute-api` on 2,000 drawn requests a run (paths
  with unicode, spaces, `%2F`, `+`, `~`, `//`, trailing slashes; queries with prefix-named and
  repeated keys, empty values, keys without `=`, reserved characters, raw `+` and `%2B`,
  standard-base64 tokens), with the clock frozen at a drawn instant;
- AWS's published SigV4 test suite, every case that applies to what the app signs;
- end to end: a catalog source whose parameter names sort differently as `k=v` strings than
  as (key, value) pairs lands its window through the local API Gateway, whose verifier
  canonicalises as AWS does (tests/localcloud/test_sigv4_conformance.py).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import httpx
import pytest
from botocore.credentials import ReadOnlyCredentials
from sigv4_cases import (
    AUTH_HEADERS,
    SUITE_REGION,
    SUITE_SERVICE,
    SUITE_TIME,
    Drawn,
    botocore_signed,
    noted_request,
    on_drawn_requests,
    suite_case,
    suite_case_names,
)

from localcloud.stack import orders_source
from shared.gateway import sigv4

from fixtures import HOUR, App

NOW = datetime(2026, 11, 25, 12, 34, 56, tzinfo=UTC)
CREDENTIALS = ReadOnlyCredentials("ASIAEXAMPLEEXAMPLE12", "secret/with+chars=", "session-token-value")
# What the app signs, by design: the headers it sets itself, never transport headers a proxy
# or httpx may add or change. Handed to botocore as the only headers, since it signs all.
APP_SIGNED = ("host", "content-type", "x-api-key", "x-correlation-id")

URLS = [
    "https://abc.execute-api.eu-west-1.amazonaws.com/dev/orders",
    "https://abc.execute-api.eu-west-1.amazonaws.com/dev/orders?from=2024-01-01T00%3A00%3A00Z&to=2024-01-02T00%3A00%3A00Z&limit=100",
    "http://127.0.0.1:8080/dev/orders?next_token=eyJvIjo1fQ%3D%3D&limit=5&a=&a=b",
    "https://h.example/dev/a%20b/c%2Fd?q=%C3%A9t%C3%A9+x&z=~ok",
    "https://h.example/dev/./x/../orders/?k=v",
    "https://h.example/dev//orders//?filter=a&filter-x=b&filter%5Bx%5D=c&limit=1&limit2=2",
]


def signed_by_us(
    request: httpx.Request, credentials: ReadOnlyCredentials, region: str, moment: datetime
) -> dict[str, str]:
    sigv4.sign(request, credentials, region, "execute-api", now=moment)
    return {name: request.headers[name] for name in AUTH_HEADERS if name in request.headers}


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("extra", [{}, {"x-api-key": "k" * 20, "x-correlation-id": "run-1"}])
def test_signature_matches_botocore(url: str, extra: dict[str, str]) -> None:
    request = httpx.Request("GET", url, headers={"accept": "application/json", **extra})
    expected = botocore_signed(request, CREDENTIALS, "eu-west-1", NOW, APP_SIGNED)

    assert signed_by_us(request, CREDENTIALS, "eu-west-1", NOW) == expected


def test_post_body_is_hashed_like_botocore() -> None:
    request = httpx.Request(
        "POST", URLS[0], content=b'{"q": 1}', headers={"content-type": "application/json"}
    )
    expected = botocore_signed(request, CREDENTIALS, "eu-west-1", NOW, APP_SIGNED)

    assert signed_by_us(request, CREDENTIALS, "eu-west-1", NOW) == expected


def test_the_clock_is_read_when_no_instant_is_given() -> None:
    request = httpx.Request("GET", URLS[0])
    before = datetime.now(UTC).replace(microsecond=0)
    sigv4.sign(request, CREDENTIALS, "eu-west-1", "execute-api")
    signed_at = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    assert before <= signed_at <= datetime.now(UTC)
    assert request.headers["Authorization"] == botocore_signed(
        httpx.Request("GET", URLS[0]), CREDENTIALS, "eu-west-1", signed_at, APP_SIGNED
    )["Authorization"]


@on_drawn_requests
def test_byte_equal_to_botocore_on_drawn_requests(drawn: Drawn) -> None:
    request = noted_request(drawn)
    expected = botocore_signed(request, drawn.credentials, drawn.region, drawn.moment, APP_SIGNED)

    assert signed_by_us(request, drawn.credentials, drawn.region, drawn.moment) == expected


# -- AWS's published test suite (tests/aws4_testsuite) -----------------------------------

NOT_APPLICABLE = {
    "get-header-key-duplicate": "signs My-Header1, a header the app never signs",
    "get-header-value-multiline": "signs My-Header1, a header the app never signs",
    "get-header-value-order": "signs My-Header1, a header the app never signs",
    "get-header-value-trim": "signs My-Header1 and My-Header2, headers the app never signs",
    "post-header-key-sort": "signs My-Header1, a header the app never signs",
    "post-header-value-case": "signs My-Header1, a header the app never signs",
    "post-sts-token/post-sts-header-after": (
        "adds the session token after signing; the app signs the token, as botocore does"
    ),
}
APPLICABLE = [name for name in suite_case_names() if name not in NOT_APPLICABLE]
# Targets httpx never sends as the suite writes them (it percent-encodes a raw space or raw
# UTF-8, and removes dot segments): on the wire these are other requests, checked against
# botocore by the drawn requests above; here they are checked on the target as written.
REWRITTEN_BY_HTTPX = {
    "get-utf8",
    "get-vanilla-utf8-query",
    "normalize-path/get-relative",
    "normalize-path/get-relative-relative",
    "normalize-path/get-slash-dot-slash",
    "normalize-path/get-slash-pointless-dot",
    "normalize-path/get-space",
}


@pytest.mark.parametrize("name", APPLICABLE)
def test_aws_suite_case_on_the_target_as_written(name: str) -> None:
    case = suite_case(name)
    signed_names = case.authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert set(signed_names) <= {*APP_SIGNED, "x-amz-date", "x-amz-security-token"}
    headers = {name: value for name in signed_names if (value := case.signed.header(name)) is not None}
    assert list(headers) == signed_names
    payload_hash = hashlib.sha256(case.request.body).hexdigest()

    canonical = sigv4.canonical_request(case.request.method, case.request.target, headers, payload_hash)
    authorization = sigv4.authorization_header(
        case.request.method,
        case.request.target,
        headers,
        payload_hash,
        case.credentials,
        SUITE_REGION,
        SUITE_SERVICE,
        SUITE_TIME.strftime("%Y%m%dT%H%M%SZ"),
    )

    assert canonical == case.canonical_request
    assert authorization == case.authorization


@pytest.mark.parametrize("name", [name for name in APPLICABLE if name not in REWRITTEN_BY_HTTPX])
def test_aws_suite_case_through_httpx(name: str) -> None:
    case = suite_case(name)
    host = case.request.header("Host")
    headers = [(key, value) for key, value in case.request.headers if key.lower() != "host"]
    url = f"https://{host}{case.request.target}"
    request = httpx.Request(case.request.method, url, headers=headers, content=case.request.body)
    assert request.url.raw_path.decode("ascii") == case.request.target  # the same bytes on the wire

    sigv4.sign(request, case.credentials, SUITE_REGION, SUITE_SERVICE, now=SUITE_TIME)

    assert request.headers["Authorization"] == case.authorization


# -- end to end through the local stack --------------------------------------------------

# `limit` is the pagination's page size (page_size = 100); the rest are the source's params.
# As `k=v` strings each shorter name sorts after its longer twin ('-', '.', '%', '2' < '=').
PARAMS = {
    "filter": "a",
    "filter-x": "b",
    "filter.x": "b2",
    "filter[x]": "c",
    "limit2": "7",
    "q": "a b+c/d?e&f=g#h%i*'()!~é",
    "cursor": "ab+/cd==",
    "empty": "",
}


def test_prefix_named_and_reserved_parameters_land_a_window_through_the_gateway(app: App) -> None:
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, params=PARAMS))

    instance = app.ingest(pipelineRunId="run-prefix-params")

    gateway = app.stack.cloud.gateway
    refused = [(r.status, r.error_type) for r in gateway.requests if r.status != 200]
    assert refused == []
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["records"] == gateway.expected_count("/dev/orders", *HOUR)
    # Every page carried the parameters exactly as the catalog has them, next to the page size.
    assert len(gateway.requests) > 1
    for record in gateway.requests:
        assert {name: record.query.get(name) for name in PARAMS} == PARAMS
        assert record.query["limit"] == "100"
