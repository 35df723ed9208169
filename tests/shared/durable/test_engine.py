"""The in-process backend drives orchestrators through azure-functions-durable's own replay engine."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

from shared.durable.engine import Engine
from shared.durable.history import SUB_COMPLETED, SUB_CREATED, SUB_FAILED, TASK_SCHEDULED
from shared.durable.journal import JournalStore


def counting_loop(ctx: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    state = ctx.get_input()
    n = state["n"]
    while n < state["stop"]:
        n = yield ctx.call_activity("inc", n)
        if n % 3 == 0 and n < state["stop"]:
            ctx.continue_as_new({"n": n, "stop": state["stop"]})
            return None
    return {"n": n}


def test_activity_loop_with_continue_as_new_reaches_the_right_output() -> None:
    calls: list[int] = []

    def inc(x: int) -> int:
        calls.append(x)
        return x + 1

    engine = Engine({"loop": counting_loop}, {"inc": inc}, JournalStore(None))
    instance = engine.run("loop", "i1", {"n": 0, "stop": 7})
    assert instance.runtime_status == "Completed"
    assert instance.output == {"n": 7}
    # Each activity ran exactly once despite every episode replaying the history.
    assert calls == [0, 1, 2, 3, 4, 5, 6]
    # continue_as_new after 3 and 6: three executions, the last one's history is short.
    assert instance.executions == 3
    assert sum(1 for e in instance.history if e["EventType"] == TASK_SCHEDULED) == 1


def retrying(ctx: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    result = yield ctx.call_activity_with_retry("flaky", df.RetryOptions(1, 3), "x")
    return result


def test_retry_options_retry_a_failing_activity_then_succeed() -> None:
    attempts: list[str] = []

    def flaky(arg: str) -> str:
        attempts.append(arg)
        if len(attempts) < 3:
            raise ConnectionError("transient")
        return "ok"

    instance = Engine({"o": retrying}, {"flaky": flaky}, JournalStore(None)).run("o", "r1", None)
    assert (instance.runtime_status, instance.output) == ("Completed", "ok")
    assert attempts == ["x", "x", "x"]


def test_exhausted_retries_fail_the_instance_with_the_activity_reason() -> None:
    def broken(arg: str) -> str:
        raise ValueError("the page was malformed")

    instance = Engine({"o": retrying}, {"flaky": broken}, JournalStore(None)).run("o", "r2", None)
    assert instance.runtime_status == "Failed"
    assert "the page was malformed" in instance.output


def fan_out(ctx: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """Keep at most `limit` children in flight, like a bounded backfill."""
    items, limit = ctx.get_input()["items"], ctx.get_input()["limit"]
    pending: list[Any] = []
    results = []
    for item in items:
        if len(pending) >= limit:
            finished = yield ctx.task_any(pending)
            pending.remove(finished)
            results.append(finished.result)
        pending.append(ctx.call_sub_orchestrator("child", item, f"child-{item}"))
    remaining = yield ctx.task_all(pending)
    return sorted(results + remaining)


def child(ctx: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    value = yield ctx.call_activity("work", ctx.get_input())
    return value


def test_bounded_fan_out_of_sub_orchestrations_never_exceeds_its_limit() -> None:
    lock = threading.Lock()
    in_flight, peak = 0, 0
    gate = threading.Barrier(2, timeout=5)

    def work(item: int) -> int:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        if item < 2:
            gate.wait()  # the first two run together, proving the fan-out is concurrent
        with lock:
            in_flight -= 1
        return item * 10

    engine = Engine({"fan": fan_out, "child": child}, {"work": work}, JournalStore(None))
    instance = engine.run("fan", "f1", {"items": list(range(8)), "limit": 2})
    assert instance.runtime_status == "Completed"
    assert instance.output == [i * 10 for i in range(8)]
    assert peak == 2


def test_children_run_as_many_at_once_as_the_orchestrator_asks_whatever_the_activity_pool() -> None:
    """A backfill's maxParallel goes up to 32: its children must not wait for the parent's pool."""
    children = 12
    gate = threading.Barrier(children, timeout=10)  # met only if all 12 run at once

    def work(item: int) -> int:
        gate.wait()
        return item

    engine = Engine({"fan": fan_out, "child": child}, {"work": work}, JournalStore(None), max_workers=8)
    instance = engine.run("fan", "f12", {"items": list(range(children)), "limit": children})
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output == list(range(children))


def test_a_killed_run_resumes_from_its_journal_without_redoing_completed_work(tmp_path: Path) -> None:
    log = tmp_path / "done.txt"  # activities run in the killed process: they report through a file

    def inc_then_die(x: int) -> int:
        if x == 4:
            os.kill(os.getpid(), signal.SIGKILL)  # nothing after it in the process runs
        with log.open("a") as out:
            out.write(f"{x}\n")
        return x + 1

    def done() -> list[int]:
        return [int(line) for line in log.read_text().split()]

    # A real kill of a real process: its journal lock goes with it, as under the CLI.
    child = multiprocessing.get_context("fork").Process(
        target=lambda: Engine({"loop": counting_loop}, {"inc": inc_then_die}, JournalStore(tmp_path)).run(
            "loop", "k1", {"n": 0, "stop": 7}
        )
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    journal = JournalStore(tmp_path).load("k1")
    assert journal is not None and journal.runtime_status == "Running"
    assert done() == [0, 1, 2, 3]

    def inc(x: int) -> int:
        with log.open("a") as out:
            out.write(f"{x}\n")
        return x + 1

    instance = Engine({"loop": counting_loop}, {"inc": inc}, JournalStore(tmp_path)).run("loop", "k1", None)
    assert instance.runtime_status == "Completed"
    assert instance.output == {"n": 7}
    assert done() == [0, 1, 2, 3, 4, 5, 6]


def _killed_before_recording(directory: Path, parent: str, child_id: str) -> None:
    """The parent's journal as a kill leaves it between `child_id` ending and the parent recording it."""
    instance = JournalStore(directory).load(parent)
    assert instance is not None
    created = next(
        e for e in instance.history if e["EventType"] == SUB_CREATED and e["InstanceId"] == child_id
    )
    cut = next(
        i
        for i, e in enumerate(instance.history)
        if e["EventType"] in (SUB_COMPLETED, SUB_FAILED) and e["TaskScheduledId"] == created["EventId"]
    )
    instance.history, instance.runtime_status, instance.output = instance.history[:cut], "Running", None
    JournalStore(directory).save(instance)  # a fresh store: the journal is rewritten whole


@pytest.mark.parametrize("stale", [False, True], ids=["ended after it was scheduled", "from an earlier run"])
def test_a_resumed_parent_takes_a_child_that_ended_unrecorded_as_it_ended(
    tmp_path: Path, stale: bool
) -> None:
    """Killed (or stopped with Ctrl-C) after a child ended but before the parent recorded it, the
    parent takes the child's outcome on resume, as the host delivers it, instead of running the
    window again; a child journal older than the parent's scheduling of it is run again."""
    calls: list[int] = []

    def work(item: int) -> int:
        calls.append(item)
        return item * 10

    def engine() -> Engine:
        return Engine({"fan": fan_out, "child": child}, {"work": work}, JournalStore(tmp_path))

    assert engine().run("fan", "p1", {"items": [0, 1, 2], "limit": 3}).output == [0, 10, 20]
    _killed_before_recording(tmp_path, "p1", "child-1")
    if stale:  # as if child-1's journal were from a run before this one
        old = JournalStore(tmp_path).load("child-1")
        assert old is not None
        old.created_time = "2000-01-01T00:00:00.000000Z"
        JournalStore(tmp_path).save(old)
    calls.clear()
    resumed = engine().run("fan", "p1", None)
    assert resumed.runtime_status == "Completed" and resumed.output == [0, 10, 20]
    assert calls == ([1] if stale else [])
