"""The in-process engine's journal: each instance's status and its current execution's history.

Persisted as one JSON file per instance (or kept in memory), written by write-then-rename so a
kill mid-write leaves the previous journal, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from shared.timestamps import utc_now_precise

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
    """Instances as JSON files in a directory (or in memory when no directory is given)."""

    def __init__(self, directory: Path | None) -> None:
        self._dir = directory
        self._memory: dict[str, dict[str, Any]] = {}
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
        instance.last_updated_time = utc_now_precise()
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
