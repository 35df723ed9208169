"""infra/ checked by the parties' own tools: AWS's cfn-lint and the checkov policy scanner.

cfn-lint runs in-process (a pinned dev dependency). checkov pins its own boto3 and conflicts with
ours, so it runs from .venv-tools (requirements-tools.txt, built by `make test`); what it still
finds must be listed, with its reason, in infra/checkov-skips.toml.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from shared.config.auth import AwsIamAuth
from shared.config.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]
CLOUDFORMATION = ROOT / "infra" / "aws" / "federation.yaml"
BICEP = ROOT / "infra" / "azure" / "main.bicep"
SKIPS = ROOT / "infra" / "checkov-skips.toml"
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"


# --- cfn-lint ------------------------------------------------------------------------------------


def _regions() -> list[str]:
    """The template is deployed in the API's region: every region an aws_iam source names."""
    catalog = load_catalog(ROOT / "catalog.toml")
    regions = {s.auth.region for s in catalog.sources.values() if isinstance(s.auth, AwsIamAuth)}
    assert regions, "catalog.toml has no aws_iam source"
    return sorted(regions)


def _cfn_lint(template: str) -> list[str]:
    from cfnlint.api import ManualArgs, lint

    # Errors, warnings and informational findings alike (the experimental rules stay off).
    matches = lint(template, config=ManualArgs(regions=_regions(), include_checks=["I"]))
    return [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches]


def test_cfn_lint_finds_nothing_in_the_federation_template() -> None:
    findings = _cfn_lint(CLOUDFORMATION.read_text(encoding="utf-8"))
    assert not findings, "cfn-lint on infra/aws/federation.yaml:\n" + "\n".join(findings)


def test_cfn_lint_would_find_a_broken_template() -> None:
    broken = CLOUDFORMATION.read_text(encoding="utf-8").replace("RoleName:", "RoleNam:", 1)
    assert any(f.startswith("E3002") for f in _cfn_lint(broken)), "cfn-lint let an unknown property through"


# --- checkov -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov() -> dict[str, Any]:
    if not CHECKOV.exists():
        missing = CHECKOV.relative_to(ROOT)
        pytest.fail(f"{missing} is missing: `make test` builds .venv-tools from requirements-tools.txt")
    # --skip-download: checkov would otherwise fetch guidelines from its vendor's platform.
    command = [
        str(CHECKOV), "--file", str(BICEP), "--file", str(CLOUDFORMATION),
        "--framework", "bicep", "cloudformation", "--skip-download", "--compact", "--quiet",
        "--output", "json",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode in (0, 1), f"checkov crashed (exit {run.returncode}): {run.stderr[-3000:]}"
    reports = json.loads(run.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {r["check_type"]: r for r in reports}
    assert set(by_type) == {"bicep", "cloudformation"}, f"checkov scanned {sorted(by_type)}"
    return by_type


def test_checkov_parsed_both_templates_and_ran_its_checks(checkov: dict[str, Any]) -> None:
    """A template checkov cannot parse is reported as no finding at all: that must not pass."""
    for kind, minimum in (("bicep", 20), ("cloudformation", 4)):
        summary = checkov[kind]["summary"]
        assert summary["parsing_errors"] == 0, f"checkov could not parse the {kind} template"
        assert summary["resource_count"] >= minimum, (
            f"{kind}: checkov saw only {summary['resource_count']} resources"
        )
        assert summary["passed"] > 0


def _findings(checkov: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (f["check_id"], f["resource"]): f"{f['check_name']} ({f['file_path']}:{f['file_line_range'][0]})"
        for report in checkov.values()
        for f in report["results"]["failed_checks"]
    }


def _skips() -> dict[tuple[str, str], str]:
    entries = tomllib.loads(SKIPS.read_text(encoding="utf-8"))["skip"]
    skips = {}
    for entry in entries:
        assert set(entry) == {"check", "resources", "reason"}, entry
        assert len(" ".join(entry["reason"].split())) >= 40, f"{entry['check']}: give the reason, not a label"
        for resource in entry["resources"]:
            assert (entry["check"], resource) not in skips, f"{entry['check']} {resource} is listed twice"
            skips[(entry["check"], resource)] = entry["reason"]
    return skips


def test_every_checkov_finding_is_fixed_or_listed_with_its_reason(checkov: dict[str, Any]) -> None:
    unlisted = {k: v for k, v in _findings(checkov).items() if k not in _skips()}
    assert not unlisted, (
        "fix these or list them, with the reason, in infra/checkov-skips.toml:\n"
        + "\n".join(f"{check} {resource}: {what}" for (check, resource), what in sorted(unlisted.items()))
    )


def test_every_listed_skip_still_matches_a_finding(checkov: dict[str, Any]) -> None:
    stale = sorted(set(_skips()) - set(_findings(checkov)))
    assert not stale, f"infra/checkov-skips.toml lists findings checkov no longer reports (fixed?): {stale}"


def test_checkov_finds_nothing_in_the_federation_template(checkov: dict[str, Any]) -> None:
    failed = checkov["cloudformation"]["results"]["failed_checks"]
    assert not failed, [(f["check_id"], f["resource"]) for f in failed]
