"""The configuration reference (docs/CONFIGURATION.md), generated from the pydantic models.

The app settings come from `shared.config.settings.Settings` (field alias = environment variable) and
the catalog from `shared.config.catalog.Source` and every model reachable from its fields, walked
through `model_fields`: a field or model added later appears without touching this module.

    .venv/bin/python -m shared.reference > docs/CONFIGURATION.md
"""

from __future__ import annotations

import enum
import inspect
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from shared.config.catalog import Source
from shared.config.settings import APP_ROOT, Settings

REGENERATE = ".venv/bin/python -m shared.reference > docs/CONFIGURATION.md"
SOURCE_TABLE = "sources.<name>"

# Fields whose meaning the models cannot carry (set by a validator, not by the file's author).
_NOTES: dict[tuple[type[BaseModel], str], str] = {
    (Source, "name"): "The `<name>` of the table header; filled in from it, not written in the table.",
}
_SCALARS = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    timedelta: "ISO 8601 duration",
}
_CONSTRAINTS = (
    ("gt", "more than"),
    ("ge", "min"),
    ("lt", "less than"),
    ("le", "max"),
    ("min_length", "min length"),
    ("max_length", "max length"),
    ("pattern", "pattern"),
)


@dataclass(frozen=True)
class Section:
    """One catalog model and the TOML table it is written in."""

    model: type[BaseModel]
    path: str
    array: bool = False

    @property
    def header(self) -> str:
        return f"[[{self.path}]]" if self.array else f"[{self.path}]"

    @property
    def selector(self) -> str:
        """`type = "aws_iam"` when the model is one member of a discriminated union."""
        field = self.model.model_fields.get("type")
        if field is not None and get_origin(field.annotation) is Literal:
            values = get_args(field.annotation)
            if len(values) == 1:
                return f' with `type = "{values[0]}"`'
        return ""


def render() -> str:
    """The whole reference as Markdown."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from shared/settings.py and shared/catalog.py; do not edit by hand.",
        f"     Regenerate with: {REGENERATE} -->",
        "",
        "## App settings",
        "",
        "Environment variables (Function App application settings; `local.settings.json` for",
        "`func start`) read and validated by `shared.config.settings.Settings`. A bad value fails at",
        "start-up naming the variable. " + _doc(Settings),
        "",
        *_table("variable", Settings, alias=True),
        "",
        "Settings read by the Functions host and by our dependencies rather than by the app itself",
        "(`AzureWebJobsStorage*`, `DURABLE_TASK_HUB`, `IDENTITY_ENDPOINT`, `IDENTITY_HEADER`,",
        '`AZURE_CLIENT_ID`, `AWS_REGION`, `AWS_ENDPOINT_URL_STS`) are listed in README.md, "Settings".',
        "The Functions host reads `APPLICATIONINSIGHTS_CONNECTION_STRING` too, for its own telemetry.",
        "",
        "## Source catalog",
        "",
        "The TOML file named by `SOURCE_CATALOG_PATH`: one `[sources.<name>]` table per API",
        "resource, validated at start-up (`python -m shared validate`). Unknown keys are refused.",
    ]
    for section in sections():
        lines += [
            "",
            f"### `{section.header}`{section.selector} ({section.model.__name__})",
            "",
            _doc(section.model),
            "",
            *_table("key", section.model, alias=False, path=section.path),
        ]
    return "\n".join(lines) + "\n"


def sections(model: type[BaseModel] = Source, path: str = SOURCE_TABLE) -> Iterator[Section]:
    """The model's own table, then the tables of the models its fields hold, depth first."""
    yield Section(model, path)
    for name, field in model.model_fields.items():
        container = _container(field.annotation)
        for nested in models_in(field.annotation):
            if container == "dict":
                yield from sections(nested, f"{path}.{name}.<key>")
            elif container == "list":
                for section in sections(nested, f"{path}.{name}"):
                    yield Section(section.model, section.path, array=section.path == f"{path}.{name}")
            else:
                yield from sections(nested, f"{path}.{name}")


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds: itself, union members, list or dict values."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        for model in models_in(arg):
            if model not in found:
                found.append(model)
    return found


def _container(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _container(inner[0]) if len(inner) == 1 else ""
    if origin is Annotated:
        return _container(get_args(annotation)[0])
    if origin in (list, tuple, set, frozenset):
        return "list"
    if origin is dict:
        return "dict"
    return ""


def _table(key: str, model: type[BaseModel], *, alias: bool, path: str = "") -> list[str]:
    rows = [f"| {key} | type | default | constraints | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        shown = (field.alias or name) if alias else name
        kind = _nested_type(field, f"{path}.{name}") or type_name(field.annotation)
        cells = [f"`{shown}`", kind, _default(field), _constraints(field)]
        cells.append(_NOTES.get((model, name)) or field.description or "-")
        rows.append("| " + " | ".join(_cell(text) for text in cells) + " |")
    return rows


def _nested_type(field: FieldInfo, target: str) -> str | None:
    """`table [sources.<name>.window]` for a field that holds models, pointing at their section."""
    nested = models_in(field.annotation)
    if not nested:
        return None
    container = _container(field.annotation)
    if container == "dict":
        text = f"tables `[{target}.<key>]`"
    elif container == "list":
        text = f"array of tables `[[{target}]]`"
    else:
        text = f"table `[{target}]`"
    return text + (", one of the kinds below" if len(nested) > 1 else "")


def type_name(annotation: Any) -> str:
    """A reader's name for a type: `"a" or "b"`, `string (optional)`, `table of string to string`."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if annotation is type(None):
        return "none"
    if origin is Literal:
        return " or ".join(_literal(value) for value in args)
    if origin is Annotated:
        return type_name(args[0])
    if origin in (Union, types.UnionType):
        members = [arg for arg in args if arg is not type(None)]
        text = " or ".join(type_name(arg) for arg in members)
        return f"{text} (optional)" if len(members) < len(args) else text
    if origin in (list, tuple, set, frozenset):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {type_name(args[0])} to {type_name(args[1])}" if args else "table"
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return " or ".join(_literal(member.value) for member in annotation)
        if issubclass(annotation, BaseModel):
            return "table"
        return _SCALARS.get(annotation, annotation.__name__)
    return str(annotation)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True, validated_data={})
    return render_value(value)


def render_value(value: Any) -> str:
    """A default as it would be written in TOML or an app setting."""
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "the table's defaults"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return render_value(value.value)
    if isinstance(value, Path):
        shown = value.relative_to(APP_ROOT) if value.is_relative_to(APP_ROOT) else value
        return render_value(str(shown))
    if isinstance(value, timedelta):
        return render_value(iso_duration(value))
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        pairs = ", ".join(f"{key} = {render_value(item)}" for key, item in value.items())
        return f"{{ {pairs} }}" if value else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    return str(value)


def iso_duration(delta: timedelta) -> str:
    """timedelta(days=31) -> P31D; timedelta(hours=1, minutes=30) -> PT1H30M."""
    days, rest = divmod(int(delta.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    text = "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")
    return text if text != "P" else "PT0S"


def _constraints(field: FieldInfo) -> str:
    found = []
    for meta in field.metadata:
        for attr, label in _CONSTRAINTS:
            value = getattr(meta, attr, None)
            if value is not None:
                found.append(f"{label} `{value}`" if attr == "pattern" else f"{label} {value}")
    return ", ".join(found)


def _literal(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def _doc(model: type[BaseModel]) -> str:
    return " ".join((inspect.getdoc(model) or "").split())


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, `<` outside code spans escaped (not an HTML tag)."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


if __name__ == "__main__":
    sys.stdout.write(render())
