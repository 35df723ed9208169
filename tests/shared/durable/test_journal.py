"""The journal appends per event (a save costs what changed, not the history), survives a torn
last line, and compacts at continue_as_new and at the end."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import azure.durable_functions as df

from shared.durable.engine import Engine
from shared.durable.history import TASK_COMPLETED as COMPLETED
from shared.durable.history import event, new_execution
from shared.durable.journal import Instance, JournalStore


def running(history_events: int) -> Instance:
    instance = Instance("j1", "loop", {"n": 0}, runtime_status="Running")
    instance.history = new_execution("loop", {"n": 0})
    for n in range(history_events):
        instance.history.append(event(COMPLETED, -1, TaskScheduledId=n, Result="x" * 200))
    return instance


def test_a_save_appends_only_the_new_events_however_long_the_history(tmp_path: Path) -> None:
    growth = []
    for size in (10, 2000):
        store, path = JournalStore(tmp_path / str(size)), tmp_path / str(size) / "j1.jsonl"
        instance = running(size)
        store.save(instance)  # the first save of an instance in a process rewrites it
        before = path.stat().st_size
        instance.history.append(event(COMPLETED, -1, TaskScheduledId=size, Result="y"))
        store.save(instance)
        growth.append(path.stat().st_size - before)
    # One event's line plus a status line, whether 10 or 2,000 events came before it.
    assert abs(growth[0] - growth[1]) < 8 and growth[1] < 1000
    loaded = JournalStore(tmp_path / "2000").load("j1")
    assert loaded is not None and loaded.history == instance.history


def test_a_torn_last_line_is_ignored_and_compacted_away(tmp_path: Path) -> None:
    store = JournalStore(tmp_path)
    instance = running(3)
    store.save(instance)
    instance.custom_status = {"done": 3}
    store.save(instance)
    with (tmp_path / "j1.jsonl").open("a") as handle:
        handle.write('{"k":"event","e":{"EventType":4,"Ev')  # a kill mid-append
    reopened = JournalStore(tmp_path)
    loaded = reopened.load("j1")
    assert loaded is not None
    assert loaded.history == instance.history and loaded.custom_status == {"done": 3}
    loaded.history.append(event(COMPLETED, -1, TaskScheduledId=9, Result="z"))
    reopened.save(loaded)  # a new process's first save rewrites: the torn tail is gone
    again = JournalStore(tmp_path).load("j1")
    assert again is not None and again.history == loaded.history
    assert (tmp_path / "j1.jsonl").read_text().endswith("\n")


def looping(ctx: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    n = ctx.get_input()["n"]
    for _ in range(5):
        n = yield ctx.call_activity("inc", n)
    if n < 100:
        ctx.continue_as_new({"n": n})
        return None
    return {"n": n}


def test_continue_as_new_compacts_so_the_journal_stays_one_execution_long(tmp_path: Path) -> None:
    sizes: list[int] = []
    path = tmp_path / "c1.jsonl"

    def inc(x: int) -> int:
        if x % 5 == 0 and path.exists():
            sizes.append(path.stat().st_size)  # at the start of each execution
        return x + 1

    engine = Engine({"loop": looping}, {"inc": inc}, JournalStore(tmp_path), max_workers=1)
    instance = engine.run("loop", "c1", {"n": 0})
    assert instance.output == {"n": 100} and instance.executions == 20
    # Each execution starts from a rewritten journal: no growth across the 20 executions.
    assert max(sizes[1:]) - min(sizes[1:]) < 200
    finished = JournalStore(tmp_path).load("c1")
    assert finished is not None and finished.runtime_status == "Completed" and finished.output == {"n": 100}
    assert sum(1 for line in path.read_text().splitlines() if '"k":"instance"' in line) == 1
