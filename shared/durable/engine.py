"""An in-process Durable Functions backend: drives orchestrators through the SDK's own replay engine.

`df.Orchestrator.create(fn)` is the handle the Functions host calls: it takes the orchestration
context as JSON (history + input) and answers the actions to take. This module plays the
host's part, the way the Durable Task Framework does: it keeps the history journal, runs the
scheduled activities and sub-orchestrations on a thread pool, feeds each completion back as
one new episode, retries activities per RetryOptions with the same timer events the host
writes, and follows continue_as_new. The journal is persisted after every event, so a killed
CLI run resumes exactly where Durable Functions would: completed work is replayed from
history, work that was in flight is run again.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.durable_functions as df

log = logging.getLogger(__name__)

Orchestrator = Callable[[df.DurableOrchestrationContext], Generator[Any, Any, Any]]
Activity = Callable[[Any], Any]

# History event types (azure.durable_functions.models.history.HistoryEventType).
EXECUTION_STARTED, TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 0, 4, 5, 6
SUB_CREATED, SUB_COMPLETED, SUB_FAILED = 7, 8, 9
TIMER_CREATED, TIMER_FIRED, ORCHESTRATOR_STARTED = 10, 11, 12
# Action types (azure.durable_functions.models.actions.ActionType).
CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY, CALL_SUB, CALL_SUB_WITH_RETRY, CONTINUE_AS_NEW = 0, 1, 2, 3, 4

TERMINAL = ("Completed", "Failed", "Terminated")


class TerminatedError(Exception):
    """The instance was terminated while it ran."""


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Instance:
    """One orchestration instance's status and its current execution's history."""

    instance_id: str
    name: str
    input: Any
    parent_instance_id: str | None = None
    runtime_status: str = "Pending"
    output: Any = None
    custom_status: Any = None
    created_time: str = field(default_factory=_now)
    last_updated_time: str = field(default_factory=_now)
    history: list[dict[str, Any]] = field(default_factory=list)
    executions: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "name": self.name,
            "input": self.input,
            "parentInstanceId": self.parent_instance_id,
            "runtimeStatus": self.runtime_status,
            "output": self.output,
            "customStatus": self.custom_status,
            "createdTime": self.created_time,
            "lastUpdatedTime": self.last_updated_time,
            "history": self.history,
            "executions": self.executions,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        return cls(
            instance_id=data["instanceId"],
            name=data["name"],
            input=data["input"],
            parent_instance_id=data.get("parentInstanceId"),
            runtime_status=data["runtimeStatus"],
            output=data.get("output"),
            custom_status=data.get("customStatus"),
            created_time=data["createdTime"],
            last_updated_time=data["lastUpdatedTime"],
            history=data["history"],
            executions=data.get("executions", 1),
        )


class JournalStore:
    """Instances as JSON files in a directory (or in memory when no directory is given)."""

    def __init__(self, directory: Path | None) -> None:
        self._dir = directory
        self._memory: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def _path(self, instance_id: str) -> Path:
        assert self._dir is not None
        return self._dir / f"{instance_id}.json"

    def load(self, instance_id: str) -> Instance | None:
        if self._dir is None:
            with self._lock:
                data = self._memory.get(instance_id)
            return Instance.from_json(json.loads(json.dumps(data))) if data else None
        try:
            return Instance.from_json(json.loads(self._path(instance_id).read_text()))
        except FileNotFoundError:
            return None

    def save(self, instance: Instance) -> None:
        instance.last_updated_time = _now()
        data = instance.to_json()
        if self._dir is None:
            with self._lock:
                self._memory[instance.instance_id] = json.loads(json.dumps(data))
            return
        # Write-then-rename: a kill mid-write leaves the previous journal, never a torn one.
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".journal-")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, self._path(instance.instance_id))

    def all(self) -> list[Instance]:
        """Every instance in the store."""
        if self._dir is None:
            with self._lock:
                ids = list(self._memory)
        else:
            ids = [path.stem for path in self._dir.glob("*.json")]
        return [instance for instance in map(self.load, ids) if instance is not None]

    def delete(self, instance_id: str) -> None:
        if self._dir is None:
            with self._lock:
                self._memory.pop(instance_id, None)
        else:
            self._path(instance_id).unlink(missing_ok=True)


@dataclass
class _Work:
    """A scheduled unit whose completion becomes the next history event."""

    kind: str  # "activity", "sub", "timer"
    event_id: int
    name: str = ""
    input: Any = None
    retry: dict[str, Any] | None = None
    attempt: int = 1
    delay: float = 0.0
    instance_id: str | None = None


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
            instance.history = _new_execution(name, input_)
            self.store.save(instance)
            return instance, True

    def run(
        self, name: str, instance_id: str, input_: Any, *, parent_instance_id: str | None = None
    ) -> Instance:
        """Start or resume the instance and drive it to a terminal status."""
        instance, _ = self.start(name, instance_id, input_, parent_instance_id=parent_instance_id)
        with self._lock:
            self._terminate.discard(instance_id)
        instance.runtime_status = "Running"
        self.store.save(instance)
        with ThreadPoolExecutor(self._max_workers, thread_name_prefix=f"df-{instance_id[:24]}") as pool:
            try:
                self._drive(instance, pool)
            except TerminatedError:
                instance.runtime_status = "Terminated"
                instance.output = "terminated"
                self.store.save(instance)
        return instance

    # -- the replay loop ----------------------------------------------------------------------

    def _drive(self, instance: Instance, pool: ThreadPoolExecutor) -> None:
        done: queue.Queue[tuple[_Work, bool, Any]] = queue.Queue()
        resumed = _outstanding(instance.history)
        for work in resumed:
            self._dispatch(work, instance, pool, done)
        in_flight = len(resumed)
        while True:
            state = self._replay(instance)
            if state is None:
                return
            if state.get("isDone"):
                continued = [a for a in _flat(state["actions"]) if a["actionType"] == CONTINUE_AS_NEW]
                if continued:
                    # In-flight work of the old execution is abandoned, as the host does.
                    instance.history = _new_execution(instance.name, json.loads(continued[-1]["input"]))
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
                self._dispatch(work, instance, pool, done)
                in_flight += 1
            if in_flight == 0:
                raise RuntimeError(f"orchestration {instance.instance_id} is waiting on nothing")
            work, ok, value = done.get()
            in_flight -= 1
            if self._is_terminated(instance.instance_id):
                raise TerminatedError(instance.instance_id)
            follow_up = self._record(instance, work, ok, value)
            if follow_up is not None:
                self._dispatch(follow_up, instance, pool, done)
                in_flight += 1

    def _replay(self, instance: Instance) -> dict[str, Any] | None:
        started = next(e for e in instance.history if e["EventType"] == EXECUTION_STARTED)
        context = {
            "history": instance.history,
            "input": started["Input"],
            "instanceId": instance.instance_id,
            "isReplaying": False,
            "parentInstanceId": instance.parent_instance_id,
            # Schema V3, as current extension bundles send: each action is listed once, in
            # scheduling order, with when_any/when_all as compound actions around new children.
            "upperSchemaVersion": 2,
        }
        try:
            state: dict[str, Any] = json.loads(self._handles[instance.name](json.dumps(context)))
        except Exception as exc:  # the orchestrator raised: the instance fails with its message
            message = str(exc).split("\n\n$OutOfProcData$", 1)[0].strip()
            instance.runtime_status = "Failed"
            instance.output = message
            self.store.save(instance)
            return None
        instance.custom_status = state.get("customStatus")
        return state

    def _schedule_new(self, instance: Instance, state: dict[str, Any]) -> list[_Work]:
        actions = [a for a in _flat(state["actions"]) if a["actionType"] != CONTINUE_AS_NEW]
        known = sum(
            1 for e in instance.history if e["EventType"] in (TASK_SCHEDULED, SUB_CREATED) and e["First"]
        )
        new_work = []
        for action in actions[known:]:
            kind = action["actionType"]
            if kind in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
                work = _Work(
                    "activity",
                    _next_id(instance),
                    action["functionName"],
                    json.loads(action["input"] or "null"),
                )
                work.retry = action.get("retryOptions")
                instance.history.append(_scheduled(work, first=True))
            elif kind in (CALL_SUB, CALL_SUB_WITH_RETRY):
                child_id = action.get("instanceId") or f"{instance.instance_id}:{_next_id(instance)}"
                work = _Work(
                    "sub", _next_id(instance), action["functionName"], json.loads(action["input"] or "null")
                )
                work.instance_id = child_id
                instance.history.append(
                    _event(
                        SUB_CREATED,
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

    def _record(self, instance: Instance, work: _Work, ok: bool, value: Any) -> _Work | None:
        """Append the completion as a new episode; return follow-up work (a retry timer or attempt)."""
        history = instance.history
        history.append(_event(ORCHESTRATOR_STARTED, -1))
        follow_up = None
        if work.kind == "timer":
            history.append(_event(TIMER_FIRED, -1, TimerId=work.event_id))
            attempts = int((work.retry or {}).get("maxNumberOfAttempts", 1))
            if work.attempt <= attempts:
                follow_up = _Work(
                    "activity", _next_id(instance), work.name, work.input, work.retry, work.attempt
                )
                history.append(_scheduled(follow_up, first=False))
        elif ok:
            result = json.dumps(value)
            if work.kind == "sub":
                history.append(_event(SUB_COMPLETED, -1, TaskScheduledId=work.event_id, Result=result))
            else:
                history.append(_event(TASK_COMPLETED, -1, TaskScheduledId=work.event_id, Result=result))
        else:
            reason = str(value)
            completion = SUB_FAILED if work.kind == "sub" else TASK_FAILED
            history.append(_event(completion, -1, TaskScheduledId=work.event_id, Reason=reason, Details=""))
            if work.retry is not None:
                # The SDK waits on a timer after every failed attempt, the last one included.
                delay = int(work.retry["firstRetryIntervalInMilliseconds"]) / 1000
                follow_up = _Work(
                    "timer", _next_id(instance), work.name, work.input, work.retry, work.attempt + 1, delay
                )
                history.append(_event(TIMER_CREATED, follow_up.event_id, RetryFor=_retry_note(follow_up)))
        self.store.save(instance)
        return follow_up

    # -- running work -------------------------------------------------------------------------

    def _dispatch(
        self, work: _Work, instance: Instance, pool: ThreadPoolExecutor, done: queue.Queue[Any]
    ) -> None:
        def run() -> None:
            try:
                if work.kind == "timer":
                    self._sleep(work.delay)
                    done.put((work, True, None))
                elif work.kind == "sub":
                    child = self.run(
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

        pool.submit(run)

    def _is_terminated(self, instance_id: str) -> bool:
        with self._lock:
            return instance_id in self._terminate


def _new_execution(name: str, input_: Any) -> list[dict[str, Any]]:
    return [
        _event(ORCHESTRATOR_STARTED, -1),
        _event(EXECUTION_STARTED, -1, Name=name, Input=json.dumps(input_), Version=""),
    ]


def _event(event_type: int, event_id: int, **fields: Any) -> dict[str, Any]:
    return {"EventType": event_type, "EventId": event_id, "IsPlayed": False, "Timestamp": _now(), **fields}


def _scheduled(work: _Work, *, first: bool) -> dict[str, Any]:
    return _event(
        TASK_SCHEDULED,
        work.event_id,
        Name=work.name,
        Input=json.dumps(work.input),
        RetryOptions=work.retry,
        Attempt=work.attempt,
        First=first,
    )


def _retry_note(work: _Work) -> dict[str, Any]:
    return {
        "Name": work.name,
        "Input": json.dumps(work.input),
        "RetryOptions": work.retry,
        "Attempt": work.attempt,
        "Delay": work.delay,
    }


def _next_id(instance: Instance) -> int:
    scheduling = (TASK_SCHEDULED, SUB_CREATED, TIMER_CREATED)
    return sum(1 for e in instance.history if e["EventType"] in scheduling)


def _flat(actions: list[Any]) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for item in actions:
        if isinstance(item, list):
            flat.extend(_flat(item))
        elif "compoundActions" in item:
            flat.extend(_flat(item["compoundActions"]))
        else:
            flat.append(item)
    return flat


def _outstanding(history: list[dict[str, Any]]) -> list[_Work]:
    """Work scheduled in the journal whose completion never made it in: run it again on resume."""
    completed = {
        e["TaskScheduledId"]
        for e in history
        if e["EventType"] in (TASK_COMPLETED, TASK_FAILED, SUB_COMPLETED, SUB_FAILED)
    }
    fired = {e["TimerId"] for e in history if e["EventType"] == TIMER_FIRED}
    work = []
    for event in history:
        if event["EventType"] == TASK_SCHEDULED and event["EventId"] not in completed:
            work.append(
                _Work(
                    "activity",
                    event["EventId"],
                    event["Name"],
                    json.loads(event["Input"]),
                    event.get("RetryOptions"),
                    event.get("Attempt", 1),
                )
            )
        elif event["EventType"] == SUB_CREATED and event["EventId"] not in completed:
            work.append(
                _Work(
                    "sub",
                    event["EventId"],
                    event["Name"],
                    json.loads(event["Input"] or "null"),
                    instance_id=event["InstanceId"],
                )
            )
        elif event["EventType"] == TIMER_CREATED and event["EventId"] not in fired:
            note = event["RetryFor"]
            work.append(
                _Work(
                    "timer",
                    event["EventId"],
                    note["Name"],
                    json.loads(note["Input"]),
                    note["RetryOptions"],
                    note["Attempt"],
                    note["Delay"],
                )
            )
    return work
