"""Durable history as the Durable Task Framework writes it: events, scheduled work, what is outstanding.

Event and action types are the SDK's own enums; the replay schema is the SDK's constant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from azure.durable_functions.models.actions import ActionType
from azure.durable_functions.models.history import HistoryEventType
from azure.durable_functions.models.ReplaySchema import ReplaySchema

from shared.durable.journal import Instance
from shared.timestamps import utc_now_precise

H = HistoryEventType
EXECUTION_STARTED, TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = (
    H.EXECUTION_STARTED,
    H.TASK_SCHEDULED,
    H.TASK_COMPLETED,
    H.TASK_FAILED,
)
SUB_CREATED, SUB_COMPLETED, SUB_FAILED = (
    H.SUB_ORCHESTRATION_INSTANCE_CREATED,
    H.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
    H.SUB_ORCHESTRATION_INSTANCE_FAILED,
)
TIMER_CREATED, TIMER_FIRED, ORCHESTRATOR_STARTED = H.TIMER_CREATED, H.TIMER_FIRED, H.ORCHESTRATOR_STARTED
CALL_ACTIVITIES = (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY)
CALL_SUBS = (ActionType.CALL_SUB_ORCHESTRATOR, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY)
# Schema V3, as current extension bundles send: each action is listed once, in scheduling
# order, with when_any/when_all as compound actions around new children.
REPLAY_SCHEMA = ReplaySchema.V3


@dataclass
class Work:
    """A scheduled unit whose completion becomes the next history event."""

    kind: str  # "activity", "sub", "timer"
    event_id: int
    name: str = ""
    input: Any = None
    retry: dict[str, Any] | None = None
    attempt: int = 1
    delay: float = 0.0
    instance_id: str | None = None
    #: A resumed sub-orchestration: when the parent scheduled it (its SubOrchestrationInstanceCreated).
    scheduled_at: str | None = None


def new_execution(name: str, input_: Any) -> list[dict[str, Any]]:
    return [
        event(ORCHESTRATOR_STARTED, -1),
        event(EXECUTION_STARTED, -1, Name=name, Input=json.dumps(input_), Version=""),
    ]


def event(event_type: HistoryEventType, event_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "EventType": event_type,
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": utc_now_precise(),
        **fields,
    }


def scheduled(work: Work, *, first: bool) -> dict[str, Any]:
    return event(
        TASK_SCHEDULED,
        work.event_id,
        Name=work.name,
        Input=json.dumps(work.input),
        RetryOptions=work.retry,
        Attempt=work.attempt,
        First=first,
    )


def retry_note(work: Work) -> dict[str, Any]:
    return {
        "Name": work.name,
        "Input": json.dumps(work.input),
        "RetryOptions": work.retry,
        "Attempt": work.attempt,
        "Delay": work.delay,
    }


def next_id(instance: Instance) -> int:
    scheduling = (TASK_SCHEDULED, SUB_CREATED, TIMER_CREATED)
    return sum(1 for e in instance.history if e["EventType"] in scheduling)


def flat(actions: list[Any]) -> list[dict[str, Any]]:
    """The actions an orchestrator answered, compound actions (when_all/when_any) opened up."""
    found: list[dict[str, Any]] = []
    for item in actions:
        if isinstance(item, list):
            found.extend(flat(item))
        elif "compoundActions" in item:
            found.extend(flat(item["compoundActions"]))
        else:
            found.append(item)
    return found


def outstanding(history: list[dict[str, Any]]) -> list[Work]:
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
                Work(
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
                Work(
                    "sub",
                    event["EventId"],
                    event["Name"],
                    json.loads(event["Input"] or "null"),
                    instance_id=event["InstanceId"],
                    scheduled_at=event["Timestamp"],
                )
            )
        elif event["EventType"] == TIMER_CREATED and event["EventId"] not in fired:
            note = event["RetryFor"]
            work.append(
                Work(
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
