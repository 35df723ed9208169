"""Retry-After parsing and the wait it selects, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import tenacity

from shared.errors import GatewayError
from shared.gateway.retry import RetryAfterOrJitter, parse_retry_after, retryable

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
