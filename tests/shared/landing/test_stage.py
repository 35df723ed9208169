"""The landing stage: in order, bounded, failures raised where the caller is, nothing after them."""

from __future__ import annotations

import threading

import pytest

from shared.landing.stage import Stage

from fixtures import stage_threads


def test_calls_run_in_the_order_submitted_on_one_thread_and_drain_stops_it() -> None:
    stage = Stage("order")
    ran: list[tuple[int, str]] = []
    for i in range(50):
        stage.submit(lambda i=i: ran.append((i, threading.current_thread().name)))
    stage.drain()
    assert [i for i, _ in ran] == list(range(50))
    assert {name for _, name in ran} == {"stage order_0"}
    assert "stage order_0" not in stage_threads()


def test_submit_waits_while_depth_calls_are_queued() -> None:
    # Memory stays at `depth` batches: the third submit returns only once the first call ended.
    stage = Stage("bounded", depth=2)
    gates = [threading.Event() for _ in range(3)]
    finished = [False, False, False]

    def call(i: int) -> None:
        gates[i].wait(timeout=10)
        finished[i] = True

    stage.submit(call, 0)
    stage.submit(call, 1)
    seen_after_third: list[bool] = []

    def third() -> None:
        stage.submit(call, 2)
        seen_after_third.append(finished[0])

    submitter = threading.Thread(target=third)
    submitter.start()
    for gate in gates:
        gate.set()
    submitter.join(timeout=10)
    stage.drain()
    assert seen_after_third == [True]
    assert finished == [True, True, True]


def test_the_first_failure_is_raised_to_the_caller_and_nothing_after_it_runs() -> None:
    stage = Stage("failing", depth=8)
    ran: list[int] = []
    boom = OSError("block upload refused")

    def call(i: int) -> None:
        if i == 2:
            raise boom
        ran.append(i)

    for i in range(6):
        stage.submit(call, i)
    with pytest.raises(OSError) as raised:
        stage.drain()
    assert raised.value is boom
    assert ran == [0, 1]
    assert "stage failing_0" not in stage_threads()


def test_a_failure_surfaces_at_the_next_submit() -> None:
    stage = Stage("next", depth=1)
    stage.submit(lambda: (_ for _ in ()).throw(ValueError("bad batch")))
    # depth 1: this submit waits for the failed call, then raises its error.
    with pytest.raises(ValueError, match="bad batch"):
        stage.submit(lambda: None)
    stage.close()


def test_close_stops_the_thread_and_nothing_runs_after_it() -> None:
    stage = Stage("abandoned", depth=4)
    gate = threading.Event()
    ran: list[int] = []

    def call(i: int) -> None:
        gate.wait(timeout=10)
        ran.append(i)

    for i in range(3):
        stage.submit(call, i)
    closer = threading.Thread(target=stage.close)
    closer.start()
    gate.set()
    closer.join(timeout=10)
    assert not closer.is_alive()
    after_close = list(ran)
    assert after_close == [0, 1, 2][: len(after_close)]  # in order, and nothing reordered
    assert "stage abandoned_0" not in stage_threads()
    stage.close()  # idempotent
    assert ran == after_close
