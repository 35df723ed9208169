"""The in-process engine's journal: each instance's status and its current execution's history.

Persisted as one append-only JSON Lines file per instance (or kept in memory): an `instance`
record, then `event` and `status` records in the order they happened. Appends are O(1) per
event; the file is compacted (rewritten by write-then-rename) at continue_as_new and at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from shared.timestamps import utc_now_precise

log = logging.getLogger(__name__)

TERMINAL = ("Completed", "Failed", "Terminated")


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
    created_time: str = field(default_factory=utc_now_precise)
    last_updated_time: str = field(default_factory=utc_now_precise)
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
    """Instances as append-only JSON Lines files in a directory (or in memory when no directory is given).

    Each save appends only what changed since the last one: the new history events and, when a
    status field moved, a status record, so a save costs O(new events) however long the history.
    The file is rewritten whole (write-then-rename) only when that is cheap or needed: the first
    save of an instance in this process, a continue_as_new (the old execution's history is
    dropped) and a terminal status. A kill mid-append leaves a torn last line, which `load`
    ignores; the next save compacts it away.
    """

    def __init__(self, directory: Path | None) -> None:
        self._dir = directory
        self._memory: dict[str, dict[str, Any]] = {}
        self._marks: dict[str, _Mark] = {}
        self._lock = threading.Lock()
        if directory is not None:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file in the way, no permission, read-only disk
                raise ConfigError(
                    f"run state directory {directory} cannot be created: "
                    f"{exc.strerror or type(exc).__name__} (check RUN_STATE_DIR)"
                ) from None

    def _path(self, instance_id: str) -> Path:
        assert self._dir is not None
        return self._dir / f"{instance_id}{SUFFIX}"

    @property
    def owner(self) -> str | None:
        """This journal directory's identity, made once: which journal a landed generation belongs to.

        Two journals driving one window (two RUN_STATE_DIRs) must never share a generation folder,
        and a rerun from the same journal must find its own. None for an in-memory store.
        """
        if self._dir is None:
            return None
        path = self._dir / ".journal-id"
        with contextlib.suppress(FileExistsError), path.open("x") as handle:
            handle.write(secrets.token_hex(8))
        return path.read_text().strip() or None

    @contextlib.contextmanager
    def driving(self, instance_id: str) -> Iterator[None]:
        """Be the only driver of an instance while inside: an OS lock on a file beside its journal.

        The lock is the kernel's (fcntl.flock), so it goes with the process however that ends;
        a second driver fails at once with InstanceBusy naming the holder's pid.
        """
        if self._dir is None:
            yield
            return
        with (self._dir / f"{instance_id}.lock").open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise InstanceBusy(instance_id, handle.read().strip() or "unknown", self._dir) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield

    def load(self, instance_id: str) -> Instance | None:
        if self._dir is None:
            with self._lock:
                data = self._memory.get(instance_id)
            return Instance.from_json(json.loads(json.dumps(data))) if data else None
        try:
            raw = self._path(instance_id).read_bytes()
        except FileNotFoundError:
            legacy = self._dir / f"{instance_id}.json"  # a journal written before the JSON Lines format
            return Instance.from_json(json.loads(legacy.read_text())) if legacy.exists() else None
        return _replay_lines(raw, instance_id)

    def save(self, instance: Instance) -> None:
        instance.last_updated_time = utc_now_precise()
        if self._dir is None:
            with self._lock:
                self._memory[instance.instance_id] = json.loads(json.dumps(instance.to_json()))
            return
        status = _status(instance)
        with self._lock:
            mark = self._marks.get(instance.instance_id)
        appendable = (
            mark is not None
            and mark.executions == instance.executions
            and mark.events <= len(instance.history)
            and instance.runtime_status not in TERMINAL
        )
        if mark is not None and appendable:
            lines = [_line({"k": "event", "e": e}) for e in instance.history[mark.events :]]
            changed = {key: value for key, value in status.items() if mark.status.get(key) != value}
            if changed:
                lines.append(_line({"k": "status", **changed}))
            with self._path(instance.instance_id).open("a") as handle:
                handle.write("".join(lines))
        else:
            self._compact(instance)
        with self._lock:
            if instance.runtime_status in TERMINAL:
                # A later start_new on this id builds a fresh Instance: it must begin with a rewrite.
                self._marks.pop(instance.instance_id, None)
            else:
                self._marks[instance.instance_id] = _Mark(instance.executions, len(instance.history), status)

    def _compact(self, instance: Instance) -> None:
        header = instance.to_json()
        del header["history"]
        # Write-then-rename: a kill mid-rewrite leaves the previous journal, never a torn one.
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".journal-")
        with os.fdopen(fd, "w") as handle:
            handle.write(_line({"k": "instance", **header}))
            handle.writelines(_line({"k": "event", "e": e}) for e in instance.history)
        os.replace(tmp, self._path(instance.instance_id))
        assert self._dir is not None
        (self._dir / f"{instance.instance_id}.json").unlink(missing_ok=True)

    def all(self) -> list[Instance]:
        """Every instance in the store."""
        if self._dir is None:
            with self._lock:
                ids = list(self._memory)
        else:
            ids = sorted(
                {path.stem for path in self._dir.glob(f"*{SUFFIX}")}
                | {path.stem for path in self._dir.glob("*.json")}
            )
        return [instance for instance in map(self.load, ids) if instance is not None]

    def delete(self, instance_id: str) -> None:
        if self._dir is None:
            with self._lock:
                self._memory.pop(instance_id, None)
        else:
            with self._lock:
                self._marks.pop(instance_id, None)
            self._path(instance_id).unlink(missing_ok=True)
            (self._dir / f"{instance_id}.json").unlink(missing_ok=True)


class InstanceBusy(RuntimeError):
    """Another process is driving the instance from the same journal directory."""

    def __init__(self, instance_id: str, pid: str, directory: Path) -> None:
        super().__init__(
            f"{instance_id} is already being driven by process {pid} from RUN_STATE_DIR {directory}; "
            "wait for it to finish (its result stays in the journal), or stop that process"
        )
        self.instance_id, self.pid = instance_id, pid


SUFFIX = ".jsonl"
_STATUS_FIELDS = ("runtimeStatus", "output", "customStatus", "lastUpdatedTime", "executions")


@dataclass
class _Mark:
    """What this process last wrote for an instance: appends continue from here."""

    executions: int
    events: int
    status: dict[str, Any]


def _status(instance: Instance) -> dict[str, Any]:
    data = instance.to_json()
    return {key: data[key] for key in _STATUS_FIELDS}


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


class JournalCorrupt(ValueError):
    """A journal line other than the last one does not parse: not a torn append, a damaged file."""


def _replay_lines(raw: bytes, instance_id: str) -> Instance | None:
    lines = raw.split(b"\n")
    # Only an unterminated last line can be torn; a newline means the append finished.
    complete, tail = lines[:-1], lines[-1]
    header: dict[str, Any] | None = None
    history: list[dict[str, Any]] = []
    for number, line in enumerate(complete, 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise JournalCorrupt(f"journal of {instance_id}: line {number} is not JSON") from None
        kind = record.pop("k", None)
        if kind == "instance":
            header, history = record, []
        elif kind == "event" and header is not None:
            history.append(record["e"])
        elif kind == "status" and header is not None:
            header.update(record)
    if tail.strip():
        log.warning("journal of %s ends in a torn line (a kill mid-append); ignoring it", instance_id)
    if header is None:
        return None
    return Instance.from_json({**header, "history": history})
