"""The "test connection" button: identity -> STS -> one signed request -> blob write and delete.

Lands no data. Each step reports its duration and, on failure, the precise reason; steps after
a failure are reported as skipped so the operator sees exactly where the chain broke.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.config.auth import AwsIamAuth
from shared.config.catalog import Source
from shared.errors import BridgeError
from shared.gateway.client import RunContext
from shared.ingest.window import Window
from shared.observability.redaction import redact
from shared.runtime import Runtime

STEPS = ("identity", "sts", "gateway", "blob")


@dataclass
class Step:
    name: str
    status: str = "skipped"  # ok, failed, skipped, not-applicable
    ms: float = 0.0
    detail: str = ""


@dataclass
class ProbeReport:
    source: str
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.status in ("ok", "not-applicable") for step in self.steps)

    @property
    def failed_step(self) -> str | None:
        return next((step.name for step in self.steps if step.status == "failed"), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.ok,
            "failedStep": self.failed_step,
            "steps": [asdict(s) for s in self.steps],
        }


def probe(runtime: Runtime, source_name: str) -> ProbeReport:
    """Run every step in order against the real endpoints; stop at the first failure."""
    source = runtime.source(source_name)
    report = ProbeReport(source.name, [Step(name) for name in STEPS])
    session = runtime.role_session(source, None, f"probe-{uuid.uuid4().hex[:12]}")
    actions: dict[str, Callable[[], str] | None] = {
        "identity": (lambda: _identity(runtime, source)) if isinstance(source.auth, AwsIamAuth) else None,
        "sts": (lambda: _sts(runtime, session)) if session is not None else None,
        "gateway": lambda: _gateway(runtime, source, session),
        "blob": lambda: _blob(runtime, source),
    }
    for step in report.steps:
        action = actions[step.name]
        if action is None:
            step.status = "not-applicable"
            continue
        started = time.perf_counter()
        try:
            step.detail = action()
            step.status = "ok"
        except BridgeError as exc:
            step.status, step.detail = "failed", str(exc)
        except Exception as exc:  # the probe reports, never crashes
            step.status, step.detail = "failed", f"{type(exc).__name__}: {exc}"
        step.detail = redact(step.detail)  # a service's error text may quote what it was sent
        step.ms = round((time.perf_counter() - started) * 1000, 1)
        if step.status == "failed":
            break
    return report


def _identity(runtime: Runtime, source: Source) -> str:
    assert isinstance(source.auth, AwsIamAuth)
    runtime.credentials.entra_token(source.auth.audience)
    return f"Entra token issued for audience {source.auth.audience}"


def _sts(runtime: Runtime, session: Any) -> str:
    runtime.credentials.credentials(session).get_frozen_credentials()
    return f"assumed {session.role_arn} as session {session.session_name}"


def _gateway(runtime: Runtime, source: Source, session: Any) -> str:
    # One page of one record, no retries: the probe reports what the API says first time.
    small = source.model_copy(
        update={
            "pagination": source.pagination.model_copy(update={"page_size": 1}),
            "retry": source.retry.model_copy(update={"max_attempts": 1}),
        }
    )
    end = datetime.now(UTC).replace(microsecond=0)
    window = Window(end - timedelta(hours=1), end)
    params = window.query_params(small.window)
    client = runtime.gateway_client(small, params, RunContext("probe", "probe"), session)
    page = client.fetch(None, 1)
    return f"HTTP 200, {len(page.records)} record(s), request id {page.request_id}"


def _blob(runtime: Runtime, source: Source) -> str:
    landing = runtime.landing_for(source)
    path = f"_probe/{uuid.uuid4().hex}.json"
    landing.write_json(path, {"probe": True})
    landing.delete(path)
    return f"wrote and deleted {landing.container_name}/{path}"
