"""The deployable package: what `func azure functionapp publish` uploads, and what the doctor says of it.

Core Tools zips every file under the project folder (but `.git` and `.vscode`) that `.funcignore`
does not deny. Its parser is its own (a port of codemix/gitignore-parser: patterns anchored at
the root, a `!` line always wins), so the file list is built twice, by a port of that parser and
with gitignore semantics (pathspec), over the working tree as a developer's checkout has it
(`.venv`, `node_modules`, caches included) plus every git-tracked file. Both must be the app.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pathspec
import pytest

ROOT = Path(__file__).resolve().parent.parent
FUNCIGNORE = ROOT / ".funcignore"
# What the app reads at run time: the entry point, the host's settings, the dependencies Azure
# installs, the source catalog (SOURCE_CATALOG_PATH) and the package itself.
APP_FILES = {"function_app.py", "host.json", "requirements.txt", "catalog.toml"}
APP_PACKAGE = "shared"
# Core Tools never zips these folders, whatever .funcignore says.
ALWAYS_SKIPPED_DIRS = {".git", ".vscode"}
# Doctor warnings that stay, each explained in README "Deployment" (a test checks the README).
DOCTOR_README_SECTION = "### 5. The deployed package"


def _funcignore_lines() -> list[str]:
    return FUNCIGNORE.read_text(encoding="utf-8").splitlines()


def _core_tools_pattern(pattern: str) -> str:
    """GitIgnoreParser.PrepareRegexPattern of Azure Functions Core Tools."""
    escaped = re.sub(r"[\-\[\]/{}()+?.\\^$|]", lambda m: "\\" + m.group(0), pattern)
    return escaped.replace("**", "(.+)").replace("*", r"([^\/]+)")


class CoreToolsIgnore:
    """Core Tools' .funcignore parser (src/Cli/func/Common/GitIgnoreParser.cs), ported line by line."""

    def __init__(self, lines: Iterable[str]) -> None:
        positive: list[str] = []
        negative: list[str] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            target = negative if line.startswith("!") else positive
            line = line.removeprefix("!").removeprefix("/")
            target.append(line)
        self._positive = self._compile(positive)
        self._negative = self._compile(negative)

    @staticmethod
    def _compile(patterns: list[str]) -> re.Pattern[str]:
        if not patterns:
            return re.compile("$^")
        joined = ")|(".join(_core_tools_pattern(p) for p in sorted(patterns))
        return re.compile(f"^(({joined}))\\b")

    def accepts(self, path: str) -> bool:
        return bool(self._negative.search(path)) or not self._positive.search(path)


@cache
def _candidates() -> frozenset[str]:
    """Every file publishing looks at: the working tree (less .git, .vscode) and git's index."""
    found: set[str] = set()
    for directory, dirs, names in os.walk(ROOT):
        relative = Path(directory).relative_to(ROOT).as_posix()
        if relative == ".":
            dirs[:] = [d for d in dirs if d not in ALWAYS_SKIPPED_DIRS]
        found.update(name if relative == "." else f"{relative}/{name}" for name in names)
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    return frozenset(found | {path for path in tracked if path and (ROOT / path).is_file()})


def _app() -> set[str]:
    """The app: its top-level files and the package's files, less bytecode caches."""
    package = {
        path
        for path in _candidates()
        if path.startswith(f"{APP_PACKAGE}/") and "__pycache__" not in path.split("/")
    }
    return APP_FILES | package


@cache
def _published_by_core_tools() -> frozenset[str]:
    parser = CoreToolsIgnore(_funcignore_lines())
    return frozenset(path for path in _candidates() if parser.accepts(path))


@cache
def _published_with_gitignore_semantics() -> frozenset[str]:
    spec = pathspec.GitIgnoreSpec.from_lines(_funcignore_lines())
    return frozenset(path for path in _candidates() if not spec.match_file(path))


def _diff(published: frozenset[str]) -> str:
    app = _app()
    extra, missing = sorted(published - app), sorted(app - published)
    more = " …" if len(extra) > 20 else ""
    return f"published but not the app: {extra[:20]}{more}; app not published: {missing}"


def test_the_working_tree_has_what_a_checkout_after_make_test_has() -> None:
    """The list below would prove little if the things to keep out were not there to keep out."""
    candidates = _candidates()
    assert candidates >= APP_FILES
    assert any(p.startswith(f"{APP_PACKAGE}/") and p.endswith(".py") for p in candidates)
    for folder in ("tests/", "localcloud/", "infra/", "adf/", ".venv/"):
        assert any(p.startswith(folder) for p in candidates), f"no {folder} to check the package against"


def test_core_tools_publishes_the_app_and_nothing_else() -> None:
    published = _published_by_core_tools()
    assert published == _app(), _diff(published)


def test_gitignore_semantics_give_the_same_list() -> None:
    published = _published_with_gitignore_semantics()
    assert published == _app(), _diff(published)


def test_funcignore_keeps_to_what_every_reader_parses_alike() -> None:
    """`!` lines and mid-path slashes are where Core Tools, git and the doctor part ways."""
    patterns = [line.strip() for line in _funcignore_lines() if line.strip() and not line.startswith("#")]
    assert patterns
    for pattern in patterns:
        assert not pattern.startswith("!"), f"{pattern}: Core Tools lets a negation win over every exclusion"
        assert "/" not in pattern.removeprefix("**/"), f"{pattern}: anchored differently by each reader"


def test_the_core_tools_port_reads_patterns_as_core_tools_does() -> None:
    """Facts of GitIgnoreParser.cs the port must keep, or the list above means nothing."""
    parser = CoreToolsIgnore(["tests", "**/__pycache__", "!keep.txt", "*.log", "keep.txt"])
    assert not parser.accepts("tests/test_x.py")
    assert parser.accepts("shared/tests/x.py"), "a bare name is anchored at the root"
    assert not parser.accepts("shared/__pycache__/api.cpython-311.pyc")
    assert parser.accepts("keep.txt"), "a negation wins whatever the order"
    assert not parser.accepts("x.log") and parser.accepts("logs/x.log")
    assert not parser.accepts("tests.py"), "a pattern ends at any word boundary, not only at a slash"
    assert parser.accepts("testsuite.py") and parser.accepts("tests_helper.py")


def test_the_package_alone_imports_indexes_and_validates_the_app(tmp_path: Path) -> None:
    """Copied out of the checkout, the package runs: nothing it needs was left out."""
    package = tmp_path / "wwwroot"
    for relative in sorted(_published_by_core_tools()):
        target = package / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENVIRONMENT": "dev",
        "LANDING_ACCOUNT_URL": "https://stapigwadfbridgedev.blob.core.windows.net",
        "SECRETS_PROVIDER": "keyvault",
    }
    index = (
        "import json, sys; sys.path.insert(0, '.'); import function_app; "
        "print(json.dumps(sorted(f.get_function_name() for f in function_app.app.get_functions())))"
    )
    indexed = subprocess.run(
        [sys.executable, "-I", "-c", index], cwd=package, env=env, capture_output=True, text=True, timeout=120
    )
    assert indexed.returncode == 0, indexed.stderr[-3000:]
    names = set(json.loads(indexed.stdout))
    assert {"ingest", "backfill", "probe", "run_status", "health", "ingest_orchestrator"} <= names
    validate_cli = (
        "import runpy, sys; sys.path.insert(0, '.'); sys.argv = ['shared', 'validate']; "
        "runpy.run_module('shared', run_name='__main__')"
    )
    validate = subprocess.run(
        [sys.executable, "-I", "-c", validate_cli],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validate.returncode == 0, validate.stderr[-3000:]
    report = json.loads(validate.stdout)
    assert report["environment"] == "dev" and report["sources"], report
    assert Path(report["catalog"]).resolve() == (package / "catalog.toml").resolve()


# --- azure-functions-doctor ------------------------------------------------------------------


@pytest.fixture(scope="module")
def doctor(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The doctor's findings on the app as it is deployed: the published files and .funcignore.

    Run on the checkout, it would also read the stand-in function apps of tests/ and localcloud/
    and the local-only settings example, none of which is deployed, and walk ~75,000 files of
    .venv and node_modules many times over (~30 s instead of ~2).
    """
    executable = Path(sys.executable).parent / "azure-functions-doctor"
    if not executable.exists():
        pytest.fail("azure-functions-doctor is not installed: `make test` installs requirements-dev.txt")
    project = tmp_path_factory.mktemp("doctor") / "wwwroot"
    for relative in sorted({*_published_by_core_tools(), FUNCIGNORE.name}):
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, project / relative)
    output = project.parent / "doctor.json"
    # The suite runs inside the project's virtualenv, which the doctor recognises by this variable.
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "NO_COLOR": "1"}
    run = subprocess.run(
        [str(executable), "doctor", "--path", str(project), "--hosting-plan", "flex-consumption",
         "--format", "json", "--output", str(output)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert output.exists(), f"the doctor wrote no report (exit {run.returncode}): {run.stderr[-2000:]}"
    document = json.loads(output.read_text(encoding="utf-8"))
    assert document["metadata"]["programming_model"] == "v2"
    assert document["metadata"]["hosting_plan"] == "flex-consumption"
    items = [item for section in document["results"] for item in section["items"]]
    assert len(items) > 20, "the doctor ran almost no rules"
    return items


def test_the_doctor_reports_no_failure(doctor: list[dict[str, Any]]) -> None:
    failed = [f"{i['rule_id']}: {i['value']}" for i in doctor if i["status"] == "fail"]
    assert not failed, "\n".join(failed)


def test_every_doctor_warning_is_explained_in_the_readme(doctor: list[dict[str, Any]]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert DOCTOR_README_SECTION in readme, f"README.md has no {DOCTOR_README_SECTION!r} section"
    section = readme.split(DOCTOR_README_SECTION, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    warned = {i["rule_id"]: i["value"] for i in doctor if i["status"] == "warn"}
    unexplained = {rule: value for rule, value in warned.items() if f"`{rule}`" not in section}
    assert not unexplained, (
        f"fix these doctor warnings or explain them in README {DOCTOR_README_SECTION!r}: {unexplained}"
    )
