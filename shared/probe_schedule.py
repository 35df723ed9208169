"""The scheduled probe: every PROBE_SCHEDULE tick, probe each source and report each result.

Which sources: PROBE_SOURCES, or every catalog source labelled for this environment. Each
result is an Application Insights availability result named `probe/<source>` (pass/fail,
duration, the failing step and its reason; shared.observability.availability) and one log line,
so an operator learns that a credential, a role or a route broke before the next nightly run
fails. One source's failure never stops the others.
"""

from __future__ import annotations

import logging
import os
import time

from shared.errors import BridgeError
from shared.observability import availability
from shared.probe import ProbeReport, Step, probe
from shared.runtime import Runtime

log = logging.getLogger(__name__)

#: The test name prefix in availabilityResults (the runbook's alert filters on it).
NAME_PREFIX = "probe/"


def sources_to_probe(runtime: Runtime) -> list[str]:
    """PROBE_SOURCES, else every source of the catalog labelled for this app's environment."""
    if runtime.settings.probe_sources:
        return list(runtime.settings.probe_sources)
    here = runtime.settings.environment
    return sorted(name for name, source in runtime.catalog.sources.items() if source.environment == here)


def run_probes(runtime: Runtime) -> list[ProbeReport]:
    """Probe each source in turn; record and log each result; return the reports."""
    availability.ensure_configured(runtime.settings.applicationinsights_connection_string)
    # App Service sets REGION_NAME; it is where the test ran (runLocation), "local" elsewhere.
    location = os.environ.get("REGION_NAME") or "local"
    reports = []
    try:
        for name in sources_to_probe(runtime):
            started = time.perf_counter()
            try:
                report = probe(runtime, name)
            except BridgeError as exc:  # e.g. PROBE_SOURCES names a source the catalog lacks
                report = ProbeReport(name, [Step("catalog", "failed", 0.0, str(exc))])
            elapsed_ms = (time.perf_counter() - started) * 1000
            _report(runtime, report, elapsed_ms, location)
            reports.append(report)
    finally:
        availability.flush()
    return reports


def _report(runtime: Runtime, report: ProbeReport, elapsed_ms: float, location: str) -> None:
    steps = "; ".join(f"{step.name} {step.status} {step.ms:.0f} ms" for step in report.steps)
    failed = next((step for step in report.steps if step.status == "failed"), None)
    if failed is None:
        message = f"all steps passed ({steps})"
        log.info("scheduled probe of %s passed in %.0f ms (%s)", report.source, elapsed_ms, steps)
    else:
        message = f"{failed.name} failed: {failed.detail}"
        log.warning(
            "scheduled probe of %s failed at %s after %.0f ms: %s",
            report.source,
            failed.name,
            elapsed_ms,
            failed.detail,
        )
    properties = {
        "source": report.source,
        "environment": runtime.settings.environment.value,
        "steps": steps,
    }
    if failed is not None:
        properties["failedStep"] = failed.name
    availability.record(
        availability.AvailabilityResult(
            name=f"{NAME_PREFIX}{report.source}",
            success=failed is None,
            duration_ms=elapsed_ms,
            message=message,
            run_location=location,
            properties=properties,
        )
    )
