"""docs/CONFIGURATION.md is generated from the models and must match them."""

from __future__ import annotations

import difflib
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Literal, get_args

import pytest
from pydantic import BaseModel, Field, TypeAdapter

from shared.config.catalog import (
    AwsIamAuth,
    NoAuth,
    Output,
    Pagination,
    RateLimit,
    RetryPolicy,
    Source,
    WindowMapping,
)
from shared.config.settings import APP_ROOT, Settings
from tools import config_reference as reference

DOC = APP_ROOT / "docs" / "CONFIGURATION.md"
REGENERATE = ".venv/bin/python -m shared.reference > docs/CONFIGURATION.md"


def _reachable(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Every model reachable from a model's fields, found independently of shared.reference."""
    found = [model]
    for field in model.model_fields.values():
        pending = [field.annotation]
        while pending:
            annotation = pending.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found += [m for m in _reachable(annotation) if m not in found]
            pending += list(get_args(annotation))
    return found


def _section(text: str, model: type[BaseModel]) -> str:
    """The Markdown of the model's section: from its heading to the next heading."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("### ") and f"({model.__name__})" in line]
    assert starts, f"docs/CONFIGURATION.md has no section for {model.__name__}"
    end = next((i for i in range(starts[0] + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(lines[starts[0] : end])


def test_configuration_md_is_current() -> None:
    assert reference.REGENERATE == REGENERATE
    rendered = reference.render()
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if current != rendered:
        diff = difflib.unified_diff(
            current.splitlines(), rendered.splitlines(), "docs/CONFIGURATION.md", "render()", lineterm="", n=1
        )
        pytest.fail(
            f"docs/CONFIGURATION.md is stale; regenerate with: {REGENERATE}\n" + "\n".join(list(diff)[:40]),
            pytrace=False,
        )


def test_every_setting_is_documented_by_its_variable_name() -> None:
    text = reference.render()
    for name, field in Settings.model_fields.items():
        assert f"| `{field.alias or name}` |" in text, f"{field.alias} is missing"
    assert str(APP_ROOT) not in text, "defaults must not depend on where the repo is checked out"


def test_every_catalog_model_and_field_is_documented() -> None:
    text = reference.render()
    models = _reachable(Source)
    named = [Source, WindowMapping, AwsIamAuth, NoAuth, Pagination, RateLimit, RetryPolicy, Output]
    assert set(named) <= set(models)
    for model in models:
        section = _section(text, model)
        for name in model.model_fields:
            assert f"| `{name}` |" in section, f"{model.__name__}.{name} is missing from its section"


def test_auth_kinds_are_told_apart_by_type() -> None:
    text = reference.render()
    assert '`[sources.<name>.auth]` with `type = "aws_iam"` (AwsIamAuth)' in text
    assert '`[sources.<name>.auth]` with `type = "none"` (NoAuth)' in text


def test_new_fields_and_nested_models_appear_without_code_changes() -> None:
    class Leaf(BaseModel):
        """A leaf."""

        depth: int = Field(3, ge=1, description="How deep.")

    class Kind(BaseModel):
        type: Literal["kind"]

    class Root(BaseModel):
        leaf: Leaf = Field(default_factory=Leaf)
        leaves: list[Leaf] = Field(default_factory=list)
        named: dict[str, Leaf] = Field(default_factory=dict)
        kind: Kind | None = None
        span: timedelta = timedelta(hours=1, minutes=30)

    found = [(s.model, s.header) for s in reference.sections(Root, "root")]
    assert found == [
        (Root, "[root]"),
        (Leaf, "[root.leaf]"),
        (Leaf, "[[root.leaves]]"),
        (Leaf, "[root.named.<key>]"),
        (Kind, "[root.kind]"),
    ]
    assert "| `depth` | integer | 3 | min 1 | How deep. |" in reference._table("key", Leaf, alias=False)
    root = "\n".join(reference._table("key", Root, alias=False, path="root"))
    assert '| `span` | ISO 8601 duration | "PT1H30M" |' in root
    assert "| `leaves` | array of tables `[[root.leaves]]` | [] |" in root


@pytest.mark.parametrize(
    "delta", [timedelta(days=31), timedelta(hours=1, minutes=30), timedelta(days=1, seconds=5), timedelta(0)]
)
def test_durations_are_written_as_the_catalog_reads_them(delta: timedelta) -> None:
    assert TypeAdapter(timedelta).validate_python(reference.iso_duration(delta)) == delta


def test_module_prints_the_reference() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "tools.config_reference"],
        cwd=Path(APP_ROOT),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert completed.stdout == reference.render()
