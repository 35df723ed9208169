"""An in-process Durable Functions backend: drives orchestrators through the SDK's own replay engine.

`df.Orchestrator.create(fn)` is the handle the Functions host calls: it takes the orchestration
context as JSON (history + input) and answers the actions to take. This module plays the
host's part, the way the Durable Task Framework does: it keeps the history journal, runs the
scheduled activities on a thread pool and sub-orchestrations on threads of their own, feeds
each completion back as one new episode, retries activities per RetryOptions with the same
timer events the host writes, and follows continue_as_new. The journal is persisted after
every event, so a killed CLI run resumes exactly where Durable Functions would: completed work
is replayed from history, work that was in flight is run again.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.actions import ActionType

from shared.durable import history as events
from shared.durable.journal import TERMINAL, Instance, JournalStore
from shared.observability.redaction import redact

log = logging.getLogger(__name__)

Orchestrator = Callable[[df.DurableOrchestrationContext], Generator[Any, Any, Any]]
Activity = Callable[[Any], Any]


class TerminatedError(Exception):
    """The instance was terminated while it ran."""


class _Workers:
    """Where one instance's work runs: activities and timers on a pool of `max_workers`, each
    sub-orchestration on a thread of its own. A child holds its thread for as long as it runs, so
    on the pool a fan-out wider than the pool (a backfill's maxParallel goes up to 32) would run
    only as many children as the pool has threads; the orchestrator bounds its children itself.
    Leaving waits for all of them, as leaving the pool does.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._name = name
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=name)
        self._children: list[threading.Thread] = []

    def run(self, work: events.Work, fn: Callable[[], None]) -> None:
        if work.kind == "sub":
            thread = threading.Thread(target=fn, name=f"{self._name} {work.instance_id}")
            self._children.append(thread)
            thread.start()
        else:
            self._pool.submit(fn)

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)
        for thread in self._children:
            thread.join()


class Engine:
    """Runs orchestrations to completion in-process with Durable Functions semantics."""

    def __init__(
        self,
        orchestrators: dict[str, Orchestrator],
        activities: dict[str, Activity],
        store: JournalStore,
        *,
        max_workers: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._handles = {name: df.Orchestrator.create(fn) for name, fn in orchestrators.items()}
        self._activities = activities
        self.store = store
        self._max_workers = max_workers
        self._sleep = sleep
        self._terminate: set[str] = set()
        self._lock = threading.Lock()

    def terminate(self, instance_id: str) -> None:
        """Ask a running instance to stop at its next event."""
        with self._lock:
            self._terminate.add(instance_id)

    def start(
        self, name: str, instance_id: str, input_: Any, *, parent_instance_id: str | None = None
    ) -> tuple[Instance, bool]:
        """Register the instance as Pending (or keep it, if it is already active) without running it.

        Like start_new on an ended instance: same id, fresh history. An instance that is still
        active (Pending, or Running in the journal of a run that was cut short) is kept, so
        `run` resumes it. Returns the instance and whether it was (re)created.
        """
        with self._lock:
            instance = self.store.load(instance_id)
            if instance is not None and instance.runtime_status not in TERMINAL:
                return instance, False
            instance = Instance(instance_id, name, input_, parent_instance_id)
            instance.history = events.new_execution(name, input_)
            self.store.save(instance)
            return instance, True

    def run(
        self, name: str, instance_id: str, input_: Any, *, parent_instance_id: str | None = None
    ) -> Instance:
        """Start or resume the instance and drive it to a terminal status.

        Raises InstanceBusy at once if another process drives it from the same journal.
        """
        with self.store.driving(instance_id):
            return self._run(name, instance_id, input_, parent_instance_id)

    def _run(self, name: str, instance_id: str, input_: Any, parent_instance_id: str | None) -> Instance:
        instance, _ = self.start(name, instance_id, input_, parent_instance_id=parent_instance_id)
        with self._lock:
            self._terminate.discard(instance_id)
        instance.runtime_status = "Running"
        self.store.save(instance)
        with _Workers(self._max_workers, f"df-{instance_id[:24]}") as workers:
            try:
                self._drive(instance, workers)
            except TerminatedError:
                instance.runtime_status = "Terminated"
                instance.output = "terminated"
                self.store.save(instance)
        return instance

    # -- the replay loop ----------------------------------------------------------------------

    def _drive(self, instance: Instance, workers: _Workers) -> None:
        done: queue.Queue[tuple[events.Work, bool, Any]] = queue.Queue()
        resumed = events.outstanding(instance.history)
        for work in resumed:
            self._dispatch(work, instance, workers, done)
        in_flight = len(resumed)
        while True:
            state = self._replay(instance)
            if state is None:
                return
            if state.get("isDone"):
                continued = [
                    a for a in events.flat(state["actions"]) if a["actionType"] == ActionType.CONTINUE_AS_NEW
                ]
                if continued:
                    # In-flight work of the old execution is abandoned, as the host does.
                    instance.history = events.new_execution(instance.name, json.loads(continued[-1]["input"]))
                    instance.executions += 1
                    self.store.save(instance)
                    done = queue.Queue()
                    in_flight = 0
                    continue
                instance.runtime_status = "Completed"
                instance.output = state.get("output")
                self.store.save(instance)
                return
            for work in self._schedule_new(instance, state):
                self._dispatch(work, instance, workers, done)
                in_flight += 1
            if in_flight == 0:
                raise RuntimeError(f"orchestration {instance.instance_id} is waiting on nothing")
            work, ok, value = done.get()
            in_flight -= 1
            if self._is_terminated(instance.instance_id):
                raise TerminatedError(instance.instance_id)
            follow_up = self._record(instance, work, ok, value)
            if follow_up is not None:
                self._dispatch(follow_up, instance, workers, done)
                in_flight += 1

    def _replay(self, instance: Instance) -> dict[str, Any] | None:
        started = next(e for e in instance.history if e["EventType"] == events.EXECUTION_STARTED)
        context = {
            "history": instance.history,
            "input": started["Input"],
            "instanceId": instance.instance_id,
            "isReplaying": False,
            "parentInstanceId": instance.parent_instance_id,
            "upperSchemaVersion": events.REPLAY_SCHEMA.value,
        }
        try:
            state: dict[str, Any] = json.loads(self._handles[instance.name](json.dumps(context)))
        except Exception as exc:  # the orchestrator raised: the instance fails with its message
            message = redact(str(exc).split("\n\n$OutOfProcData$", 1)[0].strip())
            instance.runtime_status = "Failed"
            instance.output = message
            self.store.save(instance)
            return None
        instance.custom_status = state.get("customStatus")
        return state

    def _schedule_new(self, instance: Instance, state: dict[str, Any]) -> list[events.Work]:
        actions = [a for a in events.flat(state["actions"]) if a["actionType"] != ActionType.CONTINUE_AS_NEW]
        known = sum(
            1
            for e in instance.history
            if e["EventType"] in (events.TASK_SCHEDULED, events.SUB_CREATED) and e["First"]
        )
        new_work = []
        for action in actions[known:]:
            kind = action["actionType"]
            if kind in events.CALL_ACTIVITIES:
                work = events.Work(
                    "activity",
                    events.next_id(instance),
                    action["functionName"],
                    json.loads(action["input"] or "null"),
                )
                work.retry = action.get("retryOptions")
                instance.history.append(events.scheduled(work, first=True))
            elif kind in events.CALL_SUBS:
                child_id = action.get("instanceId") or f"{instance.instance_id}:{events.next_id(instance)}"
                work = events.Work(
                    "sub",
                    events.next_id(instance),
                    action["functionName"],
                    json.loads(action["input"] or "null"),
                )
                work.instance_id = child_id
                instance.history.append(
                    events.event(
                        events.SUB_CREATED,
                        work.event_id,
                        Name=work.name,
                        InstanceId=child_id,
                        Input=action["input"],
                        First=True,
                    )
                )
            else:
                raise NotImplementedError(f"action type {kind} is not supported by the in-process runner")
            new_work.append(work)
        self.store.save(instance)
        return new_work

    def _record(self, instance: Instance, work: events.Work, ok: bool, value: Any) -> events.Work | None:
        """Append the completion as a new episode; return follow-up work (a retry timer or attempt)."""
        history = instance.history
        history.append(events.event(events.ORCHESTRATOR_STARTED, -1))
        follow_up = None
        if work.kind == "timer":
            history.append(events.event(events.TIMER_FIRED, -1, TimerId=work.event_id))
            attempts = int((work.retry or {}).get("maxNumberOfAttempts", 1))
            if work.attempt <= attempts:
                follow_up = events.Work(
                    "activity", events.next_id(instance), work.name, work.input, work.retry, work.attempt
                )
                history.append(events.scheduled(follow_up, first=False))
        elif ok:
            result = json.dumps(value)
            if work.kind == "sub":
                history.append(
                    events.event(events.SUB_COMPLETED, -1, TaskScheduledId=work.event_id, Result=result)
                )
            else:
                history.append(
                    events.event(events.TASK_COMPLETED, -1, TaskScheduledId=work.event_id, Result=result)
                )
        else:
            reason = redact(str(value))  # journalled and shown: scrubbed like a log line
            completion = events.SUB_FAILED if work.kind == "sub" else events.TASK_FAILED
            history.append(
                events.event(completion, -1, TaskScheduledId=work.event_id, Reason=reason, Details="")
            )
            if work.retry is not None:
                # The SDK waits on a timer after every failed attempt, the last one included.
                delay = int(work.retry["firstRetryIntervalInMilliseconds"]) / 1000
                follow_up = events.Work(
                    "timer",
                    events.next_id(instance),
                    work.name,
                    work.input,
                    work.retry,
                    work.attempt + 1,
                    delay,
                )
                history.append(
                    events.event(
                        events.TIMER_CREATED, follow_up.event_id, RetryFor=events.retry_note(follow_up)
                    )
                )
        self.store.save(instance)
        return follow_up

    # -- running work -------------------------------------------------------------------------

    def _dispatch(
        self, work: events.Work, instance: Instance, workers: _Workers, done: queue.Queue[Any]
    ) -> None:
        def run() -> None:
            try:
                if work.kind == "timer":
                    self._sleep(work.delay)
                    done.put((work, True, None))
                elif work.kind == "sub":
                    child = self._ended_unrecorded(work) or self.run(
                        work.name, work.instance_id or "", work.input, parent_instance_id=instance.instance_id
                    )
                    done.put((work, child.runtime_status == "Completed", child.output))
                else:
                    activity = self._activities[work.name]
                    done.put((work, True, activity(work.input)))
            except Exception as exc:  # an activity failure is data for the orchestrator, not a crash
                log.warning(
                    "%s %s of %s failed (attempt %d): %s",
                    work.kind,
                    work.name,
                    instance.instance_id,
                    work.attempt,
                    exc,
                )
                done.put(
                    (
                        work,
                        False,
                        f"{type(exc).__name__}: {exc}"
                        if not str(exc).startswith(type(exc).__name__)
                        else str(exc),
                    )
                )

        workers.run(work, run)

    def _ended_unrecorded(self, work: events.Work) -> Instance | None:
        """A resumed child that ended after its parent scheduled it, the parent killed (or stopped)
        before recording it: its outcome, as the host would deliver it, rather than a second run.
        A child journal from before the scheduling (an earlier run's) is run again."""
        if work.scheduled_at is None or work.instance_id is None:
            return None
        child = self.store.load(work.instance_id)
        if child is None or child.runtime_status not in TERMINAL or child.created_time < work.scheduled_at:
            return None
        return child

    def _is_terminated(self, instance_id: str) -> bool:
        with self._lock:
            return instance_id in self._terminate
