"""README's "Source catalog" section maps every catalog table and pagination style the models have.

The full key reference is docs/CONFIGURATION.md (generated, checked by test_config_reference.py);
these tests keep the README's map of it from falling behind the models or naming keys they lack.
"""

from __future__ import annotations

import enum
import re
import tomllib
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from shared.config.catalog import Catalog, Source
from shared.config.pagination import Pagination
from shared.config.settings import APP_ROOT

README = APP_ROOT / "README.md"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Source catalog\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _row(section: str, first_cell: str) -> str:
    rows = [line for line in section.splitlines() if line.startswith(f"| {first_cell}")]
    assert len(rows) == 1, f"README's catalog section needs one row for {first_cell}, has {len(rows)}"
    return rows[0]


def _keys(text: str) -> set[str]:
    """What a row names as keys or values: the lowercase identifiers in code spans."""
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", text))


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _literals(annotation: Any) -> set[str]:
    if get_origin(annotation) is Literal:
        return {str(value) for value in get_args(annotation)}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {str(member.value) for member in annotation}
    return {value for arg in get_args(annotation) for value in _literals(arg)}


def _vocabulary(models: list[type[BaseModel]]) -> set[str]:
    """The keys of the models and the values their fields take."""
    return {
        word
        for model in models
        for name, field in model.model_fields.items()
        for word in {name} | _literals(field.annotation)
    }


def _kind(model: type[BaseModel]) -> str:
    (kind,) = get_args(model.model_fields["type"].annotation)
    return str(kind)


TABLES = {name: _models(field.annotation) for name, field in Source.model_fields.items()}
TABLES = {name: models for name, models in TABLES.items() if models}
STYLES = _models(get_args(Pagination)[0])
COMMON = set.intersection(*(set(style.model_fields) for style in STYLES))
OWN = {name for style in STYLES for name in style.model_fields} - COMMON


def test_every_table_has_a_row_that_names_only_its_keys() -> None:
    section = _section()
    top = _row(section, "`[sources.<name>]` |")
    assert _keys(top) <= _vocabulary([Source])
    plain = {name for name in Source.model_fields if name not in TABLES and name != "name"}
    assert plain <= _keys(top), f"the [sources.<name>] row misses {plain - _keys(top)}"
    for name, models in TABLES.items():
        row = _row(section, f"`[sources.<name>.{name}]` |")
        unknown = _keys(row) - _vocabulary(models)
        assert not unknown, f"README's {name} row names {unknown}, which [sources.<name>.{name}] lacks"
        if len(models) > 1 and "type" in models[0].model_fields and models != STYLES:
            kinds = {_kind(model) for model in models}
            assert kinds <= _keys(row), f"the {name} row misses the kinds {kinds - _keys(row)}"


def test_every_pagination_style_has_a_row_with_its_own_keys() -> None:
    section = _section()
    assert COMMON - {"type"} <= _keys(_row(section, "`[sources.<name>.pagination]` |"))
    for style in STYLES:
        row = _row(section, f"`{_kind(style)}`")
        own = set(style.model_fields) - COMMON
        assert _keys(row) <= _vocabulary(STYLES), f"{_kind(style)}: {_keys(row) - _vocabulary(STYLES)}"
        named = _keys(row) & OWN
        assert named == own, f"README's {_kind(style)} row names {sorted(named)}, the model has {sorted(own)}"


def test_the_keys_issue_17_found_missing_are_there() -> None:
    section = _section()
    for key in ("token_in", "max_page_bytes", "segment", "max_concurrent_runs"):
        assert f"`{key}`" in section


def test_the_example_is_a_valid_catalog_and_the_reference_is_linked() -> None:
    section = _section()
    (example,) = re.findall(r"```toml\n(.*?)```", section, flags=re.DOTALL)
    catalog = Catalog.model_validate(tomllib.loads(example))
    assert set(catalog.sources) == {"orders"}
    assert "](docs/CONFIGURATION.md" in section
    assert (APP_ROOT / "docs" / "CONFIGURATION.md").is_file()
