"""The adaptive token bucket: alone and N workers on one limit (simulated clock), and against the emulator."""

from __future__ import annotations

import heapq
import itertools
from random import Random

import pytest

from localcloud import Fault
from localcloud.faults import TokenBucket as GatewayBucket
from localcloud.stack import orders_source
from shared.gateway.ratelimit import MAX_PAUSE_SECONDS, Permit, TokenBucket, exhausted_for

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


def bucket_at(rate: float, burst: int, clock: FakeClock, random: float = 0.5) -> TokenBucket:
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep, random=lambda: random)


def test_burst_then_steady_rate_never_above_the_configured_rate() -> None:
    clock = FakeClock()
    bucket = bucket_at(10, 5, clock)
    grants = [bucket.acquire().granted_at for _ in range(205)]
    # One token of the burst is held back (slack for the gateway's own bucket), then 1/rate apart.
    assert grants[:4] == [0.0] * 4
    assert all(later - earlier == pytest.approx(0.1) for earlier, later in itertools.pairwise(grants[4:]))
    assert max(sum(1 for g in grants if start <= g < start + 1) for start in grants) <= 10 + 4
    for _ in range(1000):
        bucket.succeeded()
    assert bucket.rate == 10


def test_first_429_after_a_calm_spell_trims_later_ones_cut_deep() -> None:
    clock = FakeClock()
    bucket = bucket_at(100, 10, clock, random=0.0)
    bucket.throttled(bucket.acquire())
    assert bucket.rate == pytest.approx(90)  # a lone refusal: no reason to halve
    clock.now += 1
    bucket.throttled(bucket.acquire())
    assert bucket.rate == pytest.approx(90 * (0.5 + 0.2 * 0.9))  # contention: cut deep
    clock.now += 31
    bucket.throttled(bucket.acquire())
    assert bucket.rate == pytest.approx(90 * (0.5 + 0.2 * 0.9) * 0.9)  # calm again for 30 s: a trim


def test_a_bucket_with_a_small_share_cuts_deeper() -> None:
    """Near its configured rate a bucket shares the limit with few others; far below it, with many."""
    clock = FakeClock()
    bucket = bucket_at(100, 10, clock, random=0.0)
    factors = []
    for _ in range(8):
        before = bucket.rate
        clock.now += 1
        bucket.throttled(bucket.acquire())
        factors.append(bucket.rate / before)
    assert factors[0] == pytest.approx(0.9)
    assert factors[1] == pytest.approx(0.5 + 0.2 * 0.9)
    assert factors[1:] == sorted(factors[1:], reverse=True)
    assert factors[-1] == pytest.approx(0.5, abs=0.01)


def test_a_429_for_a_request_sent_before_the_cut_does_not_cut_again() -> None:
    """Several requests in flight at the old rate come back 429 together: that is one signal."""
    clock = FakeClock()
    bucket = bucket_at(100, 10, clock, random=0.0)
    in_flight = [bucket.acquire() for _ in range(3)]
    clock.now += 0.05
    for permit in in_flight:
        bucket.throttled(permit)
    assert bucket.rate == pytest.approx(90)
    bucket.throttled(bucket.acquire())  # sent after the cut, still refused: cut again
    assert bucket.rate == pytest.approx(90 * (0.5 + 0.2 * 0.9))


def test_cuts_never_go_below_one_percent_of_the_configured_rate() -> None:
    clock = FakeClock()
    bucket = bucket_at(100, 10, clock)
    for _ in range(100):
        clock.now += 0.1
        bucket.throttled(bucket.acquire())
    assert bucket.rate == pytest.approx(1)


def test_a_cut_drops_the_saved_burst() -> None:
    clock = FakeClock()
    bucket = bucket_at(10, 10, clock)
    bucket.throttled()
    assert bucket.acquire().waited > 0


def test_probing_back_takes_seconds_of_sending_not_a_few_requests() -> None:
    """After a halving a bucket sending at its own rate needs 10-30 s to get back (today's took 0.3 s)."""
    clock = FakeClock()
    bucket = bucket_at(50, 10, clock, random=0.0)
    bucket.throttled(bucket.acquire())
    bucket.throttled(bucket.acquire())
    assert bucket.rate == pytest.approx(45 * (0.5 + 0.2 * 0.9))
    while bucket.rate < 0.95 * 50 and clock.now < 120:
        bucket.acquire()
        bucket.succeeded()
    assert 10 < clock.now < 30, f"back to 95% of the configured rate after {clock.now:.1f} s"


def test_retry_after_pauses_every_caller_and_no_burst_follows() -> None:
    clock = FakeClock()
    bucket = bucket_at(10, 10, clock, random=0.0)
    bucket.throttled(bucket.acquire(), retry_after=2.0)
    # Another caller of the same bucket (another activity in this process) waits out the pause ...
    assert bucket.acquire().granted_at == pytest.approx(2.0)
    # ... and the pause saved up no burst: the next token is 1/rate later.
    assert bucket.acquire().granted_at == pytest.approx(2.0 + 1 / bucket.rate)


@pytest.mark.parametrize("random", [0.0, 0.5, 0.999])
def test_jitter_stays_within_its_bounds(random: float) -> None:
    clock = FakeClock()
    bucket = bucket_at(100, 10, clock, random=random)
    bucket.throttled(bucket.acquire())
    clock.now += 1
    bucket.throttled(bucket.acquire(), retry_after=5.0)
    assert 90 * (0.5 + 0.2 * 0.9) <= bucket.rate <= 90 * (0.6 + 0.2 * 0.9)
    asked_at = clock.now
    paused = bucket.acquire().granted_at - asked_at
    assert 5.0 <= paused <= 6.0  # at least what the server asked, at most 20% more


def test_a_huge_retry_after_is_capped() -> None:
    clock = FakeClock()
    bucket = bucket_at(10, 10, clock, random=0.999)
    bucket.pause(86_400)
    assert bucket.acquire().waited <= MAX_PAUSE_SECONDS * 1.2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "5"}, 5.0),
        ({"ratelimit-remaining": "3", "ratelimit-reset": "5"}, None),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000007"}, 7.0),  # a Unix time
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2"}, 2.0),
        ({"RateLimit": '"default";r=0;t=7'}, 7.0),
        ({"RateLimit": "limit=100, remaining=0, reset=9"}, 9.0),
        ({"RateLimit": '"default";r=12;t=7'}, None),
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "soon"}, None),
        ({"Retry-After": "3"}, None),  # a 429's Retry-After goes through throttled()
        ({}, None),
    ],
)
def test_rate_limit_headers_say_when_the_budget_is_spent(
    headers: dict[str, str], expected: float | None
) -> None:
    assert exhausted_for(headers, now=1_700_000_000.0) == expected


def test_a_spent_budget_pauses_the_bucket() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 10, clock=clock, sleep=clock.sleep, random=lambda: 0.0, wall_clock=lambda: 0.0)
    bucket.observe({"RateLimit-Remaining": "4", "RateLimit-Reset": "3"})
    assert bucket.acquire().waited == 0
    bucket.observe({"RateLimit-Remaining": "0", "RateLimit-Reset": "3"})
    assert bucket.acquire().waited == pytest.approx(3.0)


def shared_limit(
    workers: int, seconds: float, rate: float = 50, burst: int = 10, bucket: type[TokenBucket] = TokenBucket
) -> tuple[float, float]:
    """`workers` sequential callers, each with its own bucket at the full `rate`, against one
    gateway bucket of `rate`/`burst` on a simulated clock. Returns (200s/s / rate, 429 share).

    A refused request is retried after the client's default first backoff (up to 0.5 s, drawn
    from a seeded generator), through the bucket again, as shared.gateway.client does.
    """
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    gateway = GatewayBucket(rate, burst, clock=clock)
    draw = Random(14)
    buckets = [
        bucket(rate, burst, clock=clock, sleep=lambda _s: None, random=Random(i).random)
        for i in range(workers)
    ]
    # (time, worker, permit): the worker's next request leaves at `time` (after its bucket's wait).
    heap: list[tuple[float, int, Permit | None]] = [(0.01 * i, i, None) for i in range(workers)]
    ok = refused = 0
    while heap:
        at, worker, permit = heapq.heappop(heap)
        now[0] = at
        if now[0] > seconds:
            break
        if permit is None:  # asking the bucket for a token
            permit = buckets[worker].acquire()
            heapq.heappush(heap, (permit.granted_at, worker, permit))
        elif gateway.try_acquire():
            ok += 1
            buckets[worker].succeeded()
            heapq.heappush(heap, (at + 0.002, worker, None))
        else:
            refused += 1
            buckets[worker].throttled(permit)
            heapq.heappush(heap, (at + draw.uniform(0, 0.5), worker, None))
    return ok / seconds / rate, refused / (ok + refused)


@pytest.mark.parametrize(("workers", "max_429_share"), [(1, 0.0), (4, 0.02), (8, 0.04)])
def test_workers_each_at_the_full_limit_share_it(workers: int, max_429_share: float) -> None:
    """Without knowing N: at least 0.9 x R in aggregate, and 429s stay rare (none for one worker)."""
    achieved, refused = shared_limit(workers, seconds=120)
    assert achieved >= 0.9
    assert refused <= max_429_share


class _ShallowFastBucket(TokenBucket):
    """The law this bucket replaced: x0.7 on every 429, +2% of the configured rate per success."""

    def throttled(self, permit: Permit | None = None, retry_after: float | None = None) -> None:
        self._rate = max(self.configured_rate * 0.05, self._rate * 0.7)
        self._tokens = min(self._tokens, 0.0)

    def succeeded(self) -> None:
        self._rate = min(self.configured_rate, self._rate + self.configured_rate * 0.02)


def test_the_shared_limit_simulation_catches_a_shallow_cut_and_fast_probe() -> None:
    """The simulation above can fail: the previous law gives 4 workers over 10% of 429s."""
    _, refused = shared_limit(4, seconds=120, bucket=_ShallowFastBucket)
    assert refused > 0.10


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


def test_a_retry_after_holds_every_request_of_the_process_not_only_the_refused_one(app: App) -> None:
    """Two sub-windows walked at once share one bucket: a 429 with Retry-After pauses both."""
    gateway = app.stack.cloud.gateway
    app.write_sources(
        orders=orders_source(gateway.url, window={"segment": "PT30M", "max_parallel_segments": 2})
    )
    gateway.inject(Fault("status", status=429, retry_after=2, page=3), times=1)
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    requests = [r for r in gateway.requests if r.path == "/dev/orders"]
    refused = next(r for r in requests if r.status == 429)
    held = [r for r in requests if refused.monotonic < r.monotonic < refused.monotonic + 1.9]
    after = [r for r in requests if r.monotonic >= refused.monotonic + 1.9]
    # Only what was already on its way while the 429 travelled back (a few ms) goes out; the
    # other walk's remaining pages wait with the refused one (unshared, they would go at once).
    assert len(held) <= 2, f"{len(held)} requests went out during the 2 s the gateway asked for"
    assert len(after) >= 10, f"only {len(after)} requests waited for the 2 s"
