"""Retry-After parsing, the wait it selects and the attempts a page gets, without a server."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
import pytest
import tenacity

from shared.errors import GatewayError
from shared.gateway.retry import RetryAfterOrJitter, parse_retry_after, retryable

from fixtures import catalog_source, gateway_client

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 12 ", 12.0),
        ("Mon, 01 Jan 2024 12:00:30 GMT", 30.0),
        ("Mon, 01 Jan 2024 12:00:30 -0000", 30.0),  # a zone-less HTTP-date is GMT, not a crash
        ("Mon, 01 Jan 2024 11:00:00 GMT", 0.0),  # in the past: go now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),  # RFC 9110: delay-seconds is a non-negative integer
        ("\u00b2", None),  # a digit to str.isdigit, not to float: unreadable, not a crash
        ("9" * 400, None),  # a number past any double: unreadable, not inf
    ],
)
def test_retry_after_is_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def _state(exc: BaseException, attempt: int = 1) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


def test_the_server_s_retry_after_wins_over_backoff_but_is_capped() -> None:
    wait = RetryAfterOrJitter(initial=0.5, maximum=2.0)
    assert wait(_state(GatewayError("429", retryable=True, retry_after=4))) == 4.0
    assert wait(_state(GatewayError("429", retryable=True, retry_after=3600))) == 6.0  # 3 x the max


def test_without_retry_after_the_wait_is_jittered_within_the_exponential_bound() -> None:
    wait = RetryAfterOrJitter(initial=0.5, maximum=2.0)
    waits = [wait(_state(GatewayError("503", retryable=True), attempt=3)) for _ in range(200)]
    assert all(0 <= w <= 2.0 for w in waits)
    assert len(set(waits)) > 100, "full jitter: workers retrying together must not stay in step"


def test_only_errors_that_say_so_are_retried() -> None:
    assert retryable(GatewayError("503", retryable=True))
    assert not retryable(GatewayError("403"))
    assert not retryable(ValueError("a bug is not retried"))


def _flaky(statuses: list[int]) -> tuple[httpx.MockTransport, list[int]]:
    """A transport answering `statuses` in turn (then 200 pages); the statuses it sent."""
    sent: list[int] = []

    def api(request: httpx.Request) -> httpx.Response:
        status = statuses[len(sent)] if len(sent) < len(statuses) else 200
        sent.append(status)
        if status != 200:
            return httpx.Response(status, json={"message": "busy"})
        return httpx.Response(200, json={"items": [{"id": 1}], "next_token": None})

    return httpx.MockTransport(api), sent


FAST = {"backoff_initial_seconds": 0.001, "backoff_max_seconds": 0.002}


def test_a_page_that_fails_once_is_fetched_on_the_second_attempt_and_the_retry_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport, sent = _flaky([503])
    client = gateway_client(catalog_source("https://api.example.com", retry=FAST), transport)
    with caplog.at_level(logging.WARNING, logger="shared.gateway.client"):
        page = client.fetch(None, 7)
    assert sent == [503, 200]
    assert page.attempts == 2 and page.records == [{"id": 1}]
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert line.startswith("retrying page 7 of orders after attempt 1 in ")
    assert "HTTP 503" in line


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_a_page_that_keeps_failing_gets_exactly_max_attempts(max_attempts: int) -> None:
    transport, sent = _flaky([503] * 10)
    retry = {**FAST, "max_attempts": max_attempts}
    client = gateway_client(catalog_source("https://api.example.com", retry=retry), transport)
    with pytest.raises(GatewayError, match="HTTP 503") as failed:
        client.fetch(None, 1)
    assert len(sent) == max_attempts
    assert failed.value.page == 1


def test_a_wait_that_would_end_past_the_pages_budget_is_not_waited() -> None:
    """Asked to come back in 5 s with half a second of budget left: the page fails now, with the
    server's answer, instead of sleeping past its retry.max_elapsed_seconds."""
    sent: list[int] = []

    def api(request: httpx.Request) -> httpx.Response:
        sent.append(503 if not sent else 200)
        if len(sent) == 1:
            return httpx.Response(503, json={"message": "busy"}, headers={"retry-after": "5"})
        return httpx.Response(200, json={"items": [{"id": 1}], "next_token": None})

    retry = {"max_elapsed_seconds": 0.5, "backoff_max_seconds": 10}
    client = gateway_client(catalog_source("https://api.example.com", retry=retry), httpx.MockTransport(api))
    with pytest.raises(GatewayError, match="HTTP 503"):
        client.fetch(None, 1)
    assert sent == [503]


def test_a_refusal_that_cannot_succeed_is_not_retried() -> None:
    transport, sent = _flaky([400])
    client = gateway_client(catalog_source("https://api.example.com", retry=FAST), transport)
    with pytest.raises(GatewayError, match="HTTP 400"):
        client.fetch(None, 1)
    assert sent == [400]
