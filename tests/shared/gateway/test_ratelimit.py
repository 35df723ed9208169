"""The adaptive token bucket, alone (fake clock) and against the emulator's limit."""

from __future__ import annotations

import pytest

from localcloud.stack import orders_source
from shared.gateway.ratelimit import TokenBucket

from fixtures import App


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_burst_then_steady_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 5, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(15)]
    assert waits[:5] == [0.0] * 5
    # After the burst each caller waits for its own token: 1/rate apart.
    assert clock.now == pytest.approx(1.0)
    assert all(w > 0 for w in waits[5:])


def test_throttling_slows_down_and_success_creeps_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, 10, clock=clock, sleep=clock.sleep)
    bucket.throttled()
    assert bucket.rate == pytest.approx(70)
    bucket.throttled()
    assert bucket.rate == pytest.approx(49)
    for _ in range(1000):
        bucket.succeeded()
    assert bucket.rate == pytest.approx(100)
    for _ in range(100):
        bucket.throttled()
    assert bucket.rate == pytest.approx(5)  # never below 5% of the configured rate


def test_a_throttled_bucket_drops_its_saved_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 10, clock=clock, sleep=clock.sleep)
    bucket.throttled()
    assert bucket.acquire() > 0


@pytest.mark.parametrize(("client_rate", "max_429_share"), [(50, 0.02), (100, 0.15)])
def test_a_sustained_run_sits_under_the_gateway_limit(
    app: App, client_rate: int, max_429_share: float
) -> None:
    """Configured at the limit almost nothing is refused; configured at twice it, the bucket adapts."""
    gateway = app.stack.cloud.gateway
    gateway.set_rate_limit(50, burst=10)
    app.write_sources(
        orders=orders_source(
            gateway.url,
            rate_limit={"requests_per_second": client_rate, "burst": 10},
            pagination={"page_size": 20},
            output={"pages_per_part": 50},
        )
    )
    instance = app.ingest(window=("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"))
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["records"] == 3600
    requests = gateway.requests
    share = gateway.count(status=429) / len(requests)
    assert share < max_429_share, f"{gateway.count(status=429)} of {len(requests)} requests throttled"
