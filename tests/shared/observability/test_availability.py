"""Scheduled probes: a timer function (only when PROBE_SCHEDULE is set) whose every run leaves one
Application Insights availability result per source, as the Azure Monitor exporter converts it."""

from __future__ import annotations

import logging
import runpy
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.monitor.opentelemetry.exporter.export.logs._exporter import _convert_log_to_envelope
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

from localcloud.stack import orders_source
from shared.config.settings import Settings
from shared.errors import ConfigError
from shared.observability import availability
from shared.observability.redaction import register_secret

from fixtures import App

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def exported() -> Iterator[InMemoryLogRecordExporter]:
    exporter = InMemoryLogRecordExporter()
    availability.configure_availability(log_exporter=exporter)
    yield exporter
    availability.reset_availability()


def load_app(monkeypatch: pytest.MonkeyPatch, schedule: str | None) -> dict[str, Any]:
    """function_app.py as the worker imports it, under the given PROBE_SCHEDULE."""
    if schedule is None:
        monkeypatch.delenv("PROBE_SCHEDULE", raising=False)
    else:
        monkeypatch.setenv("PROBE_SCHEDULE", schedule)
    functions = runpy.run_path(str(ROOT / "function_app.py"))["app"].get_functions()
    return {fn.get_function_name(): fn for fn in functions}


def envelopes(exporter: InMemoryLogRecordExporter) -> dict[str, Any]:
    """What the Azure Monitor exporter would send for each record, by test name."""
    found = {}
    for record in exporter.get_finished_logs():
        envelope = _convert_log_to_envelope(record)
        found[envelope.data.base_data.name] = envelope
    return found


def seconds(timespan: str) -> float:
    days, rest = timespan.split(".", 1)
    hours, minutes, secs = rest.split(":")
    return int(days) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(secs)


def test_the_timer_exists_only_when_probe_schedule_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "scheduled_probe" not in load_app(monkeypatch, None)
    assert "scheduled_probe" not in load_app(monkeypatch, "  ")
    indexed = load_app(monkeypatch, "0 */15 * * * *")
    (trigger,) = [b for b in indexed["scheduled_probe"].get_bindings() if b.type == "timerTrigger"]
    # The host resolves the app setting, so a new schedule needs no deployment.
    assert trigger.schedule == "%PROBE_SCHEDULE%"
    assert trigger.run_on_startup is False


def test_each_tick_records_an_availability_result_per_source(
    app: App,
    exported: InMemoryLogRecordExporter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = app.stack.cloud.gateway_url
    app.write_sources(orders=orders_source(url), moved=orders_source(url, path="/no-such-route"))
    app.set_env(PROBE_SOURCES="orders,moved,ghost")
    timer = load_app(monkeypatch, "0 */15 * * * *")["scheduled_probe"].get_user_function()

    with caplog.at_level(logging.INFO, logger="shared.probe_schedule"):
        timer(SimpleNamespace(past_due=False))

    sent = envelopes(exported)
    assert set(sent) == {"probe/orders", "probe/moved", "probe/ghost"}
    assert {e.name for e in sent.values()} == {"Microsoft.ApplicationInsights.Availability"}
    ok, moved, ghost = (sent[f"probe/{name}"].data.base_data for name in ("orders", "moved", "ghost"))

    assert ok.success is True and "failedStep" not in ok.properties
    assert 0 < seconds(ok.duration) < 30
    assert ok.message.startswith("all steps passed (identity ok")
    assert ok.run_location == "local"

    assert moved.success is False and moved.properties["failedStep"] == "gateway"
    assert moved.message.startswith("gateway failed: ")
    assert "HTTP 403 MissingAuthenticationToken" in moved.message
    assert moved.properties["source"] == "moved" and moved.properties["environment"] == "dev"

    assert ghost.success is False and ghost.properties["failedStep"] == "catalog"
    assert "unknown source 'ghost'" in ghost.message

    lines = [r.getMessage() for r in caplog.records if r.name == "shared.probe_schedule"]
    assert any(line.startswith("scheduled probe of orders passed in ") for line in lines)
    assert any(line.startswith("scheduled probe of moved failed at gateway after ") for line in lines)
    assert len(lines) == 3


def test_without_a_connection_string_or_exporter_nothing_is_recorded() -> None:
    assert availability.configure_availability() is False
    availability.record(availability.AvailabilityResult("probe/x", True, 1.0, "ok", "local"))  # no-op
    availability.reset_availability()


def test_durations_are_timespans_application_insights_reads() -> None:
    assert availability.duration(250.4) == "0.00:00:00.250"
    assert availability.duration(90_061_001) == "1.01:01:01.001"


def test_a_probe_schedule_that_is_not_ncrontab_is_refused_naming_the_setting() -> None:
    base = {"LANDING_CONNECTION_STRING": "UseDevelopmentStorage=true"}
    with pytest.raises(ConfigError, match=r"PROBE_SCHEDULE: .*six fields, seconds first"):
        Settings.from_env({**base, "PROBE_SCHEDULE": "*/15 * * * *"})  # a five-field cron
    settings = Settings.from_env({**base, "PROBE_SCHEDULE": "0 */15 * * * *", "PROBE_SOURCES": "a, b,,"})
    assert settings.probe_sources == ("a", "b")


def test_a_secret_in_a_failure_reason_never_reaches_application_insights(
    exported: InMemoryLogRecordExporter,
) -> None:
    secret = "k3y-" + "9f8e7d6c5b4a39281706"
    register_secret(secret)
    reason = f"gateway failed: API said key {secret}"
    availability.record(availability.AvailabilityResult("probe/x", False, 5.0, reason, "local"))
    (record,) = exported.get_finished_logs()
    envelope = _convert_log_to_envelope(record)
    assert secret not in str(envelope.as_dict())
    assert envelope.data.base_data.message.startswith("gateway failed: API said key ")
