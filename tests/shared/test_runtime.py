"""The process's runtime: what it builds ahead of the first request, and what it leaves to it."""

from __future__ import annotations

import threading

import pytest

from shared import runtime
from shared.config.auth import AwsIamAuth
from shared.config.catalog import Source

from fixtures import App, sts_calls


def test_a_run_plans_while_its_credential_clients_are_built_and_still_calls_sts_once(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[threading.Thread] = []
    requests_before: list[int] = []
    prepare = runtime.Runtime.prepare

    def recording(self: runtime.Runtime, source: Source) -> threading.Thread | None:
        requests_before.append(len(app.stack.cloud.gateway.requests))
        thread = prepare(self, source)
        started.extend([thread] if thread is not None else [])
        return thread

    monkeypatch.setattr(runtime.Runtime, "prepare", recording)
    the_runtime = runtime.current()
    auth = the_runtime.source("orders").auth
    assert isinstance(auth, AwsIamAuth) and not the_runtime.credentials.prepared(auth.region)
    instance = app.ingest(pipelineRunId="run-prepared")
    assert instance.runtime_status == "Completed", instance.output
    assert [thread.name for thread in started] == ["prepare orders"] and requests_before == [0]
    started[0].join()
    assert the_runtime.credentials.prepared(auth.region)
    assert the_runtime.prepare(the_runtime.source("orders")) is None  # built once per process
    assert [call.outcome for call in sts_calls(app, "run-prepared")] == ["Success"]  # by the first page
