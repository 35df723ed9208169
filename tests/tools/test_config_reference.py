"""docs/CONFIGURATION.md is generated from the models and must match them."""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, get_args

import pytest
from pydantic import BaseModel, Field, TypeAdapter

from shared.config.auth import AwsIamAuth, NoAuth
from shared.config.catalog import Output, RateLimit, RetryPolicy, Source, WindowMapping
from shared.config.pagination import NextTokenPagination, Pagination
from shared.config.settings import APP_ROOT, Settings
from tools import config_reference as reference

DOC = APP_ROOT / "docs" / "CONFIGURATION.md"
REGENERATE = ".venv/bin/python -m tools.config_reference > docs/CONFIGURATION.md"
# The styles the catalog accepts, read off the Pagination union itself (not the generator's walk).
PAGINATION_STYLES: list[type[BaseModel]] = list(get_args(get_args(Pagination)[0]))


def _reachable(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Every model reachable from a model's fields, found independently of tools.config_reference."""
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


def _keys(section: str) -> list[str]:
    return re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]


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
    named = [Source, WindowMapping, AwsIamAuth, NoAuth, *PAGINATION_STYLES, RateLimit, RetryPolicy, Output]
    assert set(named) <= set(models)
    for model in models:
        section = _section(text, model)
        for name in model.model_fields:
            assert f"| `{name}` |" in section, f"{model.__name__}.{name} is missing from its section"


def test_auth_kinds_are_told_apart_by_type() -> None:
    text = reference.render()
    assert '`[sources.<name>.auth]` with `type = "aws_iam"` (AwsIamAuth)' in text
    assert '`[sources.<name>.auth]` with `type = "none"` (NoAuth)' in text


def test_every_pagination_style_has_its_section_with_its_own_fields() -> None:
    text = reference.render()
    styles = list(get_args(get_args(Pagination)[0]))
    assert set(PAGINATION_STYLES) <= set(styles)
    for style in styles:
        (kind,) = get_args(style.model_fields["type"].annotation)
        heading = f'### `[sources.<name>.pagination]` with `type = "{kind}"` ({style.__name__})'
        assert heading in text, f"no section for pagination type {kind}"
        # Its own fields and the common ones, none of another style's.
        assert sorted(_keys(_section(text, style))) == sorted(style.model_fields), kind
    next_token = _section(text, NextTokenPagination)
    assert '| `type` | "next_token" | "next_token" |' in next_token, "next_token is the default style"
    assert "| `token_in` |" in next_token and "| `max_page_bytes` |" in next_token


def test_new_fields_and_nested_models_appear_without_code_changes() -> None:
    class Leaf(BaseModel):
        """A leaf."""

        depth: int = Field(3, ge=1, description="How deep.")

    class Kind(BaseModel):
        type: Literal["kind"]

    class Red(BaseModel):
        type: Literal["red"]
        shade: int = 1

    class Blue(BaseModel):
        type: Literal["blue"]

    class Root(BaseModel):
        leaf: Leaf = Field(default_factory=Leaf)
        leaves: list[Leaf] = Field(default_factory=list)
        named: dict[str, Leaf] = Field(default_factory=dict)
        kind: Kind | None = None
        span: timedelta = timedelta(hours=1, minutes=30)
        colour: Annotated[Red | Blue, Field(discriminator="type")] = Field(
            default_factory=lambda: Blue(type="blue")
        )

    found = [(s.title, s.header, s.selector) for s in reference.sections(reference.schema_of(Root), "root")]
    assert found == [
        ("Root", "[root]", ""),
        ("Leaf", "[root.leaf]", ""),
        ("Leaf", "[[root.leaves]]", ""),
        ("Leaf", "[root.named.<key>]", ""),
        ("Kind", "[root.kind]", ""),
        ("Red", "[root.colour]", 'type = "red"'),
        ("Blue", "[root.colour]", 'type = "blue"'),
    ]
    tables = {
        (s.title, s.path): "\n".join(reference.table(s))
        for s in reference.sections(reference.schema_of(Root), "root")
    }
    assert "| `depth` | integer | 3 | min 1 | How deep. |" in tables["Leaf", "root.leaf"]
    root = tables["Root", "root"]
    assert '| `span` | ISO 8601 duration | "PT1H30M" |' in root
    assert "| `leaves` | array of tables `[[root.leaves]]` | [] |" in root
    assert "| `colour` | table `[root.colour]`, one of the kinds below by `type` |" in root
    assert '| the defaults of `type = "blue"` |' in root
    assert "| `shade` | integer | 1 |" in tables["Red", "root.colour"]


@pytest.mark.parametrize(
    "delta", [timedelta(days=31), timedelta(hours=1, minutes=30), timedelta(days=1, seconds=5), timedelta(0)]
)
def test_durations_are_written_as_the_catalog_reads_them(delta: timedelta) -> None:
    class Spanned(BaseModel):
        span: timedelta = delta

    (section,) = reference.sections(reference.schema_of(Spanned), "spanned")
    row = next(row for row in reference.table(section) if row.startswith("| `span` |"))
    written = tomllib.loads(f"span = {_cells(row)[2]}")["span"]
    assert TypeAdapter(timedelta).validate_python(written) == delta


def test_catalog_defaults_are_toml_that_reads_back_as_the_default() -> None:
    text = reference.render()
    checked = 0
    for model in _reachable(Source):
        for row in _section(text, model).splitlines():
            if not row.startswith("| `"):
                continue
            name, _, default = _cells(row)[:3]
            field = model.model_fields[name.strip("`")]
            if default in ("required", "unset") or default.startswith("the "):
                assert (default == "required") == field.is_required(), f"{model.__name__}.{name}: {default}"
                continue
            written = tomllib.loads(f"value = {default}")["value"]
            expected = field.get_default(call_default_factory=True, validated_data={})
            read_back = TypeAdapter(field.annotation).validate_python(written)
            assert read_back == expected, f"{model.__name__}.{name}: {default}"
            checked += 1
    assert checked > 40


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
