"""The local API Gateway authorises like AWS, pages deterministically and misbehaves on demand."""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.auth
import httpx
import pytest
from botocore.credentials import Credentials

from localcloud import Dataset, Fault, GatewayServer, IssuedCredentials, LocalCloud
from localcloud.datasets import PaginationStyle
from localcloud.pagination import encode_token

START, END = "2024-01-01T00:00:00Z", "2024-01-01T00:10:00Z"  # 600 records at 3600/hour
WINDOW = {"from": START, "to": END}
PATH = "/dev/orders"

SignedGet = Callable[..., httpx.Response]
Sign = Callable[..., dict[str, str]]


@pytest.fixture
def orders(gateway: GatewayServer) -> GatewayServer:
    """The gateway with ``orders`` (next_token, 1 record/second) at /dev/orders."""
    gateway.add_dataset(PATH, Dataset(name="orders"))
    return gateway


def _error_type(response: httpx.Response) -> str | None:
    error_type: str | None = response.headers.get("x-amzn-ErrorType")
    return error_type


# -- IAM authorisation ---------------------------------------------------------------------------


def test_botocore_signed_request_is_accepted(orders: GatewayServer, signed_get: SignedGet) -> None:
    response = signed_get(orders.url + PATH, {**WINDOW, "limit": "5"})

    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == [f"orders-{1704067200 + i}" for i in range(5)]
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-amzn-RequestId"] == orders.requests[-1].request_id
    assert response.headers["x-amz-apigw-id"]
    assert orders.requests[-1].access_key_id is not None


def _changed_query(url: str, creds: Credentials, sign: Sign) -> tuple[str, dict[str, str]]:
    return url.replace("limit=5", "limit=6"), sign("GET", url, creds)


def _wrong_secret(url: str, creds: Credentials, sign: Sign) -> tuple[str, dict[str, str]]:
    return url, sign("GET", url, Credentials(creds.access_key, "not-the-secret", creds.token))


def _wrong_region(url: str, creds: Credentials, sign: Sign) -> tuple[str, dict[str, str]]:
    return url, sign("GET", url, creds, region="us-east-1")


def _wrong_service(url: str, creds: Credentials, sign: Sign) -> tuple[str, dict[str, str]]:
    return url, sign("GET", url, creds, service="lambda")


def _unknown_key(url: str, creds: Credentials, sign: Sign) -> tuple[str, dict[str, str]]:
    return url, sign("GET", url, Credentials("ASIAUNKNOWNUNKNOWN00", creds.secret_key, creds.token))


def _wrong_session_token(url: str, creds: Credentials, sign: Sign) -> tuple[str, dict[str, str]]:
    return url, sign("GET", url, Credentials(creds.access_key, creds.secret_key, "forged-token"))


def _unsigned(url: str, creds: Credentials, sign: Sign) -> tuple[str, dict[str, str]]:
    return url, {}


def _unknown_path(url: str, creds: Credentials, sign: Sign) -> tuple[str, dict[str, str]]:
    other = url.replace(PATH, "/dev/nothing-here")
    return other, sign("GET", other, creds)


@pytest.mark.parametrize(
    ("tamper", "error_type", "message"),
    [
        (_changed_query, "InvalidSignatureException", "The request signature we calculated does not match"),
        (_wrong_secret, "InvalidSignatureException", "Check your AWS Secret Access Key"),
        (_wrong_region, "InvalidSignatureException", "Credential should be scoped to a valid region"),
        (_wrong_service, "InvalidSignatureException", "Credential should be scoped to correct service"),
        (
            _unknown_key,
            "UnrecognizedClientException",
            "The security token included in the request is invalid",
        ),
        (
            _wrong_session_token,
            "UnrecognizedClientException",
            "security token included in the request is invalid",
        ),
        (_unsigned, "MissingAuthenticationTokenException", "Missing Authentication Token"),
        (_unknown_path, "MissingAuthenticationTokenException", "Missing Authentication Token"),
    ],
)
def test_tampered_requests_are_rejected(
    orders: GatewayServer,
    http: httpx.Client,
    aws_credentials: Credentials,
    sign: Sign,
    tamper: Callable[[str, Credentials, Sign], tuple[str, dict[str, str]]],
    error_type: str,
    message: str,
) -> None:
    url, headers = tamper(
        str(httpx.URL(orders.url + PATH, params={**WINDOW, "limit": "5"})), aws_credentials, sign
    )

    response = http.get(url, headers=headers)

    assert response.status_code == 403
    assert _error_type(response) == error_type
    assert message in response.json()["message"]
    assert orders.served_ids("orders") == set()


def test_stale_signature_is_expired(
    orders: GatewayServer, signed_get: SignedGet, monkeypatch: pytest.MonkeyPatch
) -> None:
    ten_minutes_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=10)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: ten_minutes_ago)

    response = signed_get(orders.url + PATH, WINDOW)

    assert (response.status_code, _error_type(response)) == (403, "InvalidSignatureException")
    assert response.json()["message"].startswith("Signature expired: ")


@pytest.mark.parametrize("invalidate", ["revoke", "expire"])
def test_revoked_or_expired_credentials_are_refused(
    orders: GatewayServer,
    cloud: LocalCloud,
    signed_get: SignedGet,
    disposable_credentials: IssuedCredentials,
    invalidate: str,
) -> None:
    assert signed_get(orders.url + PATH, WINDOW, credentials=disposable_credentials).status_code == 200
    getattr(cloud.credentials, invalidate)(disposable_credentials.access_key_id)

    response = signed_get(orders.url + PATH, WINDOW, credentials=disposable_credentials)

    assert (response.status_code, _error_type(response)) == (403, "ExpiredTokenException")
    assert response.json() == {"message": "The security token included in the request is expired"}


# -- other authorisation modes -------------------------------------------------------------------


def test_api_key_mode_and_rotation(gateway: GatewayServer, http: httpx.Client) -> None:
    gateway.add_dataset(PATH, Dataset(name="orders"), auth="api_key")
    gateway.set_api_keys(["key-1"])
    url = gateway.url + PATH

    missing = http.get(url, params=WINDOW)
    assert (missing.status_code, _error_type(missing), missing.json()) == (
        403,
        "ForbiddenException",
        {"message": "Forbidden"},
    )
    assert http.get(url, params=WINDOW, headers={"x-api-key": "key-1"}).status_code == 200

    gateway.rotate_api_key("key-1", "key-2")

    assert http.get(url, params=WINDOW, headers={"x-api-key": "key-1"}).status_code == 403
    assert http.get(url, params=WINDOW, headers={"x-api-key": "key-2"}).status_code == 200
    assert [record.api_key_present for record in gateway.requests] == [False, True, True, True]
    assert "key-2" not in repr(gateway.requests)


def test_iam_plus_api_key_needs_both(gateway: GatewayServer, signed_get: SignedGet) -> None:
    gateway.add_dataset(PATH, Dataset(name="orders"), auth="aws_iam+api_key")
    gateway.set_api_keys(["key-1"])

    without_key = signed_get(gateway.url + PATH, WINDOW)
    with_key = signed_get(gateway.url + PATH, WINDOW, headers={"x-api-key": "key-1"})

    assert (without_key.status_code, _error_type(without_key)) == (403, "ForbiddenException")
    assert with_key.status_code == 200


def test_jwt_mode_checks_signature_issuer_audience_and_expiry(
    gateway: GatewayServer, cloud: LocalCloud, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.add_dataset(PATH, Dataset(name="orders"), auth="jwt")
    url = gateway.url + PATH

    def status_with(token: str | None) -> int:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return http.get(url, params=WINDOW, headers=headers).status_code

    good, _ = cloud.identity.issue_token(cloud.audience)
    wrong_audience, _ = cloud.identity.issue_token("api://other")
    monkeypatch.setattr(cloud.identity, "token_lifetime", -60)
    expired, _ = cloud.identity.issue_token(cloud.audience)

    assert [status_with(token) for token in (good, wrong_audience, expired, None)] == [200, 401, 401, 401]
    rejected = http.get(url, params=WINDOW)
    assert rejected.json() == {"message": "Unauthorized"}
    assert rejected.headers["www-authenticate"].startswith("Bearer ")


def test_none_mode_needs_no_credentials(gateway: GatewayServer, http: httpx.Client) -> None:
    gateway.add_dataset(PATH, Dataset(name="orders"), auth="none")

    assert http.get(gateway.url + PATH, params=WINDOW).status_code == 200


# -- pagination ----------------------------------------------------------------------------------


def _walk(style: PaginationStyle, get: SignedGet, url: str, page_size: int) -> list[str]:
    """A straightforward client for each style; returns record ids in arrival order."""
    ids: list[str] = []
    params = {**WINDOW, "limit": str(page_size)}
    if style == "next_token":
        while True:
            body = get(url, params).json()
            ids += [item["id"] for item in body["items"]]
            if "next_token" not in body:
                return ids
            params["next_token"] = body["next_token"]
    if style in ("next_url", "link_header"):
        next_url: str | None = str(httpx.URL(url, params=params))
        while next_url:
            response = get(next_url)
            if style == "next_url":
                ids += [item["id"] for item in response.json()["data"]]
                next_url = response.json()["links"]["next"]
            else:
                ids += [item["id"] for item in response.json()]
                next_url = response.links.get("next", {}).get("url")
        return ids
    if style == "offset":
        offset, total = 0, 1
        while offset < total:
            body = get(url, {**params, "offset": str(offset)}).json()
            ids += [item["id"] for item in body["items"]]
            offset, total = offset + page_size, body["total"]
        return ids
    if style == "page_number":
        page, pages = 1, 1
        while page <= pages:
            body = get(url, {**WINDOW, "page": str(page), "per_page": str(page_size)}).json()
            ids += [item["id"] for item in body["results"]]
            page, pages = page + 1, body["total_pages"]
        return ids
    if style == "cursor_last_record":
        while True:
            body = get(url, params).json()
            ids += [item["id"] for item in body["items"]]
            if not body["has_more"]:
                return ids
            params["after"] = body["items"][-1]["id"]
    return [item["id"] for item in get(url, WINDOW).json()]


STYLES: list[PaginationStyle] = [
    "next_token",
    "next_url",
    "link_header",
    "offset",
    "page_number",
    "cursor_last_record",
    "none",
]


@pytest.mark.parametrize("style", STYLES)
def test_each_style_walks_the_window_exactly_once(
    gateway: GatewayServer, signed_get: SignedGet, style: PaginationStyle
) -> None:
    gateway.add_dataset(PATH, Dataset(name="orders", pagination=style))

    ids = _walk(style, signed_get, gateway.url + PATH, page_size=70)

    expected = gateway.expected_ids(PATH, START, END)
    assert len(expected) == gateway.expected_count(PATH, START, END) == 600
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert gateway.served_ids("orders") == expected
    assert gateway.count(status=200) == (1 if style == "none" else 9)  # ceil(600 / 70)


def test_records_are_deterministic_and_inside_the_window(
    gateway: GatewayServer, signed_get: SignedGet
) -> None:
    gateway.add_dataset(PATH, Dataset(name="orders", records_per_hour=7, pagination="none"))
    window = {"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z"}

    first = signed_get(gateway.url + PATH, window).json()
    second = signed_get(gateway.url + PATH, window).json()

    assert first == second and len(first) == 7 * 24
    start, end = (dt.datetime.fromisoformat(window[key]) for key in ("from", "to"))
    assert all(start <= dt.datetime.fromisoformat(record["ts"]) < end for record in first)
    assert {"id", "ts", "customer", "amount", "currency", "status"} <= set(first[0])


def test_epoch_window_parameters(gateway: GatewayServer, signed_get: SignedGet) -> None:
    gateway.add_dataset(
        PATH,
        Dataset(name="orders", time_format="epoch", from_param="since", to_param="until", pagination="none"),
    )

    body = signed_get(gateway.url + PATH, {"since": "1704067200", "until": "1704067205"}).json()

    assert [item["id"] for item in body] == [f"orders-{1704067200 + i}" for i in range(5)]


@pytest.mark.parametrize(
    "params",
    [
        {"to": END},
        {"from": "yesterday", "to": END},
        {"from": "2024-01-01T00:00:00", "to": END},
        {"from": END, "to": START},
        {**WINDOW, "limit": "0"},
        {**WINDOW, "limit": "ten"},
        {**WINDOW, "next_token": "garbage"},
    ],
    ids=["missing-from", "not-a-date", "no-offset", "reversed", "zero-limit", "bad-limit", "bad-token"],
)
def test_bad_parameters_are_400(orders: GatewayServer, signed_get: SignedGet, params: dict[str, str]) -> None:
    response = signed_get(orders.url + PATH, params)

    assert response.status_code == 400
    assert response.json()["message"]


def test_next_token_from_another_window_is_400(orders: GatewayServer, signed_get: SignedGet) -> None:
    token = signed_get(orders.url + PATH, WINDOW).json()["next_token"]

    response = signed_get(
        orders.url + PATH, {"from": START, "to": "2024-01-01T00:20:00Z", "next_token": token}
    )

    assert response.status_code == 400
    assert "different window" in response.json()["message"]


def test_limit_is_defaulted_and_clamped(gateway: GatewayServer, signed_get: SignedGet) -> None:
    gateway.add_dataset(PATH, Dataset(name="orders", default_limit=25, max_limit=50))

    assert len(signed_get(gateway.url + PATH, WINDOW).json()["items"]) == 25
    assert len(signed_get(gateway.url + PATH, {**WINDOW, "limit": "500"}).json()["items"]) == 50


def test_trailing_empty_page(gateway: GatewayServer, signed_get: SignedGet) -> None:
    gateway.add_dataset(PATH, Dataset(name="orders", trailing_empty_page=True))
    params = {**WINDOW, "limit": "300"}

    pages = []
    while True:
        body = signed_get(gateway.url + PATH, params).json()
        pages.append(len(body["items"]))
        if "next_token" not in body:
            break
        params["next_token"] = body["next_token"]

    assert pages == [300, 300, 0]


def test_foreign_next_url(gateway: GatewayServer, signed_get: SignedGet) -> None:
    foreign = "http://evil.example:1/x"
    gateway.add_dataset(PATH, Dataset(name="orders", pagination="next_url", foreign_next_url=foreign))

    assert signed_get(gateway.url + PATH, WINDOW).json()["links"]["next"] == foreign


def test_next_url_is_strictly_encoded_and_signable(gateway: GatewayServer, signed_get: SignedGet) -> None:
    gateway.add_dataset(PATH, Dataset(name="orders", pagination="next_url"))

    next_url = signed_get(gateway.url + PATH, {**WINDOW, "limit": "10"}).json()["links"]["next"]

    assert next_url.startswith(gateway.url + PATH + "?from=2024-01-01T00%3A00%3A00Z&")
    assert signed_get(next_url).status_code == 200


@pytest.mark.parametrize("style", ["next_token", "cursor_last_record"])
def test_loop_cursor_repeats_the_continuation(
    gateway: GatewayServer, signed_get: SignedGet, style: PaginationStyle
) -> None:
    gateway.add_dataset(PATH, Dataset(name="orders", pagination=style))
    gateway.inject(Fault("loop_cursor", page=2), times=2)
    params = {**WINDOW, "limit": "10"}

    def continuation(body: dict[str, Any]) -> str:
        return str(body["next_token"] if style == "next_token" else body["items"][-1]["id"])

    first = continuation(signed_get(gateway.url + PATH, params).json())
    key = "next_token" if style == "next_token" else "after"
    looped = [continuation(signed_get(gateway.url + PATH, {**params, key: first}).json()) for _ in range(3)]

    assert looped[:2] == [first, first]
    assert looped[2] != first


def test_million_record_window_pages_in_constant_time(gateway: GatewayServer, signed_get: SignedGet) -> None:
    gateway.add_dataset(PATH, Dataset(name="orders", max_limit=1000))
    dataset = gateway.dataset(PATH)
    window = {"from": START, "to": "2024-01-12T13:46:40Z"}  # 1,000,000 seconds
    last_page = encode_token(999_000, dataset, dataset.parse_window(window))

    started = time.perf_counter()
    first = signed_get(gateway.url + PATH, {**window, "limit": "1000"}).json()
    last = signed_get(gateway.url + PATH, {**window, "limit": "1000", "next_token": last_page}).json()
    elapsed = time.perf_counter() - started

    assert gateway.expected_count(PATH, window["from"], window["to"]) == 1_000_000
    assert len(first["items"]) == len(last["items"]) == 1000
    assert "next_token" not in last and last["items"][-1]["id"] == f"orders-{1704067200 + 999_999}"
    assert elapsed < 1.0


# -- throttling ----------------------------------------------------------------------------------


def test_rate_limit_answers_429(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.set_rate_limit(0.001, burst=2, retry_after=7)

    statuses = [signed_get(orders.url + PATH, WINDOW) for _ in range(3)]

    assert [response.status_code for response in statuses] == [200, 200, 429]
    throttled = statuses[-1]
    assert throttled.json() == {"message": "Too Many Requests"}
    assert _error_type(throttled) == "TooManyRequestsException"
    assert throttled.headers["Retry-After"] == "7"
    assert orders.throttled_count == 1

    orders.set_rate_limit(None)
    assert signed_get(orders.url + PATH, WINDOW).status_code == 200


def test_a_stage_throttle_429_carries_no_retry_after_by_default(
    orders: GatewayServer, signed_get: SignedGet
) -> None:
    """API Gateway's own throttling answers without Retry-After or rate-limit headers."""
    orders.set_rate_limit(0.001, burst=1)

    statuses = [signed_get(orders.url + PATH, WINDOW) for _ in range(2)]

    assert [response.status_code for response in statuses] == [200, 429]
    assert not [name for name in statuses[-1].headers if "retry-after" in name or "ratelimit" in name]
    orders.set_rate_limit(None)


def test_token_bucket_saves_at_most_its_burst() -> None:
    from localcloud.faults import TokenBucket

    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    now[0] = 60.0  # idle long enough for 120 tokens at 2/s: the bucket holds 3
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_token_bucket_refills_at_the_configured_rate() -> None:
    from localcloud.faults import TokenBucket

    now = [0.0]
    bucket = TokenBucket(rate=2, burst=2, clock=lambda: now[0])

    assert [bucket.try_acquire() for _ in range(3)] == [True, True, False]
    now[0] = 0.5  # one token back at 2/s
    assert [bucket.try_acquire() for _ in range(2)] == [True, False]


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "retry_after"),
    [
        (404, "NotFoundException", None),
        (500, "InternalServerErrorException", None),
        (502, "BadGatewayException", None),
        (503, "ServiceUnavailableException", 3),
        (504, "IntegrationTimeoutException", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ],
)
def test_status_fault(
    orders: GatewayServer, signed_get: SignedGet, status: int, error_type: str, retry_after: int | str | None
) -> None:
    orders.inject(Fault("status", status=status, retry_after=retry_after))

    failed = signed_get(orders.url + PATH, WINDOW)
    recovered = signed_get(orders.url + PATH, WINDOW)

    assert (failed.status_code, _error_type(failed)) == (status, error_type)
    assert set(failed.json()) == {"message"}
    assert failed.headers.get("Retry-After") == (None if retry_after is None else str(retry_after))
    assert recovered.status_code == 200
    assert orders.requests[0].fault == "status" and orders.requests[0].served is None


def test_fault_filters_by_path_and_page(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.add_dataset("/dev/other", Dataset(name="other"))
    orders.inject(Fault("status", status=500, path=PATH, page=2))
    params = {**WINDOW, "limit": "10"}

    def second_page_status(path: str) -> int:
        token = signed_get(orders.url + path, params).json()["next_token"]
        return signed_get(orders.url + path, {**params, "next_token": token}).status_code

    assert second_page_status("/dev/other") == 200
    assert second_page_status(PATH) == 500
    assert second_page_status(PATH) == 200
    assert orders.faults.pending() == []


def test_reset_fault_breaks_the_connection_mid_body(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.inject(Fault("reset"))

    with pytest.raises(httpx.TransportError):
        signed_get(orders.url + PATH, WINDOW)

    assert signed_get(orders.url + PATH, WINDOW).status_code == 200
    assert orders.requests[0].served is None


def test_truncate_fault_sends_half_a_json_document(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.inject(Fault("truncate"))

    response = signed_get(orders.url + PATH, WINDOW)

    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_short_body_fault_closes_before_content_length(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.inject(Fault("short_body"))

    with pytest.raises(httpx.RemoteProtocolError):
        signed_get(orders.url + PATH, WINDOW)

    assert signed_get(orders.url + PATH, WINDOW).status_code == 200


def test_delay_fault_trips_a_read_timeout(
    orders: GatewayServer, http: httpx.Client, aws_credentials: Credentials, sign: Sign
) -> None:
    orders.inject(Fault("delay", delay_ms=600))
    url = str(httpx.URL(orders.url + PATH, params=WINDOW))

    with pytest.raises(httpx.ReadTimeout):
        http.get(url, headers=sign("GET", url, aws_credentials), timeout=0.1)


def test_delay_fault_answers_late(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.inject(Fault("delay", delay_ms=100))

    started = time.perf_counter()
    response = signed_get(orders.url + PATH, WINDOW)

    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.1


def test_expired_credentials_fault(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.inject(Fault("expired_credentials"))

    response = signed_get(orders.url + PATH, WINDOW)

    assert (response.status_code, _error_type(response)) == (403, "ExpiredTokenException")


def test_html_fault(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.inject(Fault("html"))

    response = signed_get(orders.url + PATH, WINDOW)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


def test_huge_fault(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.inject(Fault("huge", size_bytes=2_000_000))

    response = signed_get(orders.url + PATH, WINDOW)

    assert len(response.content) >= 2_000_000
    assert len(response.json()["items"]) == 100


def test_empty_fault_serves_no_records_and_moves_on(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.inject(Fault("empty", page=2))

    first = signed_get(orders.url + PATH, WINDOW).json()
    second = signed_get(orders.url + PATH, {**WINDOW, "next_token": first["next_token"]}).json()
    third = signed_get(orders.url + PATH, {**WINDOW, "next_token": second["next_token"]}).json()

    dataset = orders.dataset(PATH)
    index = [dataset.index_of(page["items"][0]["id"]) for page in (first, third)]
    assert second["items"] == [] and index[1] == index[0] + 200, "the continuation moves past page 2"
    assert len(orders.served_ids("orders")) == 200, "page 2's records were not served"


def test_deep_nesting_fault(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.inject(Fault("deep_nesting", depth=50_000))

    response = signed_get(orders.url + PATH, WINDOW)

    assert response.status_code == 200
    with pytest.raises(RecursionError):
        json.loads(response.content)


def test_overflow_number_fault(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.inject(Fault("overflow_number"))

    response = signed_get(orders.url + PATH, WINDOW)

    assert response.json()["items"][0]["overflow"] == math.inf
    assert len(response.json()["items"]) == 100


# -- observability -------------------------------------------------------------------------------


def test_request_log_records_tracing_headers(orders: GatewayServer, signed_get: SignedGet) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = signed_get(
        orders.url + PATH,
        {**WINDOW, "limit": "3"},
        headers={"x-correlation-id": "run-42", "traceparent": traceparent},
    )

    (record,) = orders.requests
    assert (record.status, record.request_id) == (200, response.headers["x-amzn-RequestId"])
    assert (record.correlation_id, record.traceparent) == ("run-42", traceparent)
    assert record.query == {**WINDOW, "limit": "3"}
    assert record.served_ids == ["orders-1704067200", "orders-1704067201", "orders-1704067202"]
    assert record.wall_time <= time.time() and record.error_type is None

    orders.reset_observations()
    assert orders.requests == [] and orders.count() == 0


def test_max_concurrency_observed(orders: GatewayServer, signed_get: SignedGet) -> None:
    orders.latency_ms = 150
    start_together = threading.Barrier(4)

    def fetch(_: int) -> int:
        start_together.wait()
        return signed_get(orders.url + PATH, {**WINDOW, "limit": "1"}).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(fetch, range(4))) == [200] * 4

    assert 2 <= orders.max_concurrency_observed <= 4


def test_stopped_gateway_drops_keep_alive_connections(cloud: LocalCloud, signed_get: SignedGet) -> None:
    server = GatewayServer(cloud.credentials, region=cloud.region)
    server.add_dataset(PATH, Dataset(name="orders"))
    with server:
        url = server.url + PATH
        assert signed_get(url, WINDOW).status_code == 200

    with pytest.raises(httpx.TransportError):
        signed_get(url, WINDOW)
