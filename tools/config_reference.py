"""The configuration reference (docs/CONFIGURATION.md), generated from the models' JSON schema.

App settings come from `Settings.model_json_schema(by_alias=True)` (property = environment
variable), the catalog from `Source`'s schema: a property that is an object with `properties` is
a TOML table of its own, a discriminated union (`auth`, `pagination`) is one section per variant,
and types, defaults, constraints and descriptions are read off the schema. A field, table or
pagination style added to the models appears here without touching this module.

    .venv/bin/python -m tools.config_reference > docs/CONFIGURATION.md
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from shared.config.catalog import Source
from shared.config.settings import APP_ROOT, Settings

Schema = dict[str, Any]

REGENERATE = ".venv/bin/python -m tools.config_reference > docs/CONFIGURATION.md"
SOURCE_TABLE = "sources.<name>"

# Fields whose meaning the schema cannot carry (set by a validator, not by the file's author).
_NOTES = {
    ("Source", "name"): "The `<name>` of the table header; filled in from it, not written in the table.",
}
_FORMATS = {"duration": "ISO 8601 duration", "path": "path"}
_CONSTRAINTS = (
    ("exclusiveMinimum", "more than"),
    ("minimum", "min"),
    ("exclusiveMaximum", "less than"),
    ("maximum", "max"),
    ("minLength", "min length"),
    ("maxLength", "max length"),
    ("minItems", "min items"),
    ("maxItems", "max items"),
    ("pattern", "pattern"),
)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _CatalogDefaults(GenerateJsonSchema):
    """The schema with the defaults a reader gets: default factories called (`{}`, a table's
    defaults), and paths under the app root written relative to it, as the settings take them."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            default = cast(Callable[[], Any], factory)()
        else:
            default = super().get_default_value(schema)
        if isinstance(default, Path) and default.is_relative_to(APP_ROOT):
            return default.relative_to(APP_ROOT)
        return default


def schema_of(model: type[BaseModel], *, by_alias: bool = False) -> Schema:
    """The model's JSON schema as documented here."""
    return model.model_json_schema(by_alias=by_alias, schema_generator=_CatalogDefaults)


@dataclass(frozen=True)
class Section:
    """One object schema (a model) and the TOML table it is written in."""

    title: str
    path: str
    schema: Schema
    defs: Schema = field(repr=False, compare=False)
    array: bool = False
    chosen_by: str = ""  # the discriminator ("type") when this is one variant of a union

    @property
    def header(self) -> str:
        return f"[[{self.path}]]" if self.array else f"[{self.path}]"

    @property
    def selector(self) -> str:
        """`type = "offset"` for one variant of a discriminated union, else empty."""
        if not self.chosen_by:
            return ""
        return f"{self.chosen_by} = {toml_value(self.schema['properties'][self.chosen_by].get('const'))}"

    @property
    def heading(self) -> str:
        chosen = f" with `{self.selector}`" if self.selector else ""
        return f"### `{self.header}`{chosen} ({self.title})"


def render() -> str:
    """The whole reference as Markdown."""
    settings = next(sections(schema_of(Settings, by_alias=True), ""))
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from the models in shared/config/ by tools/config_reference.py; do not edit by hand.",
        f"     Regenerate with: {REGENERATE} -->",
        "",
        "## App settings",
        "",
        "Environment variables (Function App application settings; `local.settings.json` for",
        "`func start`) read and validated by `shared.config.settings.Settings`. A bad value fails at",
        "start-up naming the variable. " + _doc(settings.schema),
        "",
        *table(settings, "variable"),
        "",
        "Settings read by the Functions host and by our dependencies rather than by the app itself",
        "(`AzureWebJobsStorage*`, `DURABLE_TASK_HUB`, `IDENTITY_ENDPOINT`, `IDENTITY_HEADER`,",
        '`AZURE_CLIENT_ID`, `AWS_REGION`, `AWS_ENDPOINT_URL_STS`) are listed in README.md, "Settings".',
        "The Functions host reads `APPLICATIONINSIGHTS_CONNECTION_STRING` too, for its own telemetry.",
        "",
        "## Source catalog",
        "",
        "The TOML file named by `SOURCE_CATALOG_PATH`: one `[sources.<name>]` table per API",
        "resource, validated at start-up (`python -m shared validate`). Unknown keys are refused; so",
        "is a key of another kind (a `pagination` key of another style, for one).",
    ]
    for section in sections(schema_of(Source), SOURCE_TABLE):
        lines += ["", section.heading, "", _doc(section.schema), "", *table(section)]
    return "\n".join(lines) + "\n"


def sections(schema: Schema, path: str, defs: Schema | None = None, chosen_by: str = "") -> Iterator[Section]:
    """The object's own table, then the tables its properties hold, depth first."""
    defs = schema.get("$defs", {}) if defs is None else defs
    resolved = _follow(schema, defs)
    yield Section(resolved.get("title", ""), path, resolved, defs, chosen_by=chosen_by)
    for name, prop in resolved.get("properties", {}).items():
        yield from _tables_in(prop, f"{path}.{name}", defs)


def _tables_in(prop: Schema, path: str, defs: Schema) -> Iterator[Section]:
    """The tables a property holds: itself, each variant of a union, array items, map values."""
    prop = _follow(prop, defs)
    if _is_table(prop):
        yield from sections(prop, path, defs)
    elif variants := _members(prop):
        key = prop.get("discriminator", {}).get("propertyName")
        for variant in variants:
            variant = _follow(variant, defs)
            if key and key in variant.get("properties", {}):
                yield from sections(variant, path, defs, key)
            else:
                yield from _tables_in(variant, path, defs)
    elif prop.get("type") == "array" and "items" in prop:
        for section in _tables_in(prop["items"], path, defs):
            yield replace(section, array=True) if section.path == path else section
    elif isinstance(prop.get("additionalProperties"), dict):
        yield from _tables_in(prop["additionalProperties"], f"{path}.<key>", defs)


def table(section: Section, key: str = "key") -> list[str]:
    """The section's keys as a Markdown table."""
    rows = [f"| {key} | type | default | constraints | description |", "|---|---|---|---|---|"]
    required = set(section.schema.get("required", ()))
    properties: Schema = section.schema.get("properties", {})
    # The key that picks the variant comes first, whatever the model's field order.
    for name in sorted(properties, key=lambda name: name != section.chosen_by):
        prop = _resolve(properties[name], section.defs)
        chosen = "Selects this kind." if name == section.chosen_by else None
        cells = [
            f"`{name}`",
            type_name(prop, section.defs, f"{section.path}.{name}"),
            "required" if name in required else _default(prop, section.defs),
            _constraints(prop, section.defs),
            _NOTES.get((section.title, name)) or prop.get("description") or chosen or "-",
        ]
        rows.append("| " + " | ".join(_cell(text) for text in cells) + " |")
    return rows


def type_name(prop: Schema, defs: Schema, path: str) -> str:
    """A reader's name for a schema: `"a" or "b"`, `string (optional)`, a pointer to a table."""
    prop = _resolve(prop, defs)
    if _is_table(prop):
        return f"table `[{path}]`"
    if "const" in prop:
        return toml_value(prop["const"])
    if "enum" in prop:
        return " or ".join(toml_value(value) for value in prop["enum"])
    if variants := _members(prop):
        optional = len(variants) < len(prop.get("anyOf") or prop.get("oneOf") or ())
        if any(_is_table(_resolve(v, defs)) for v in variants) and len(variants) > 1:
            key = prop.get("discriminator", {}).get("propertyName")
            text = f"table `[{path}]`, one of the kinds below" + (f" by `{key}`" if key else "")
        else:
            text = " or ".join(type_name(v, defs, path) for v in variants)
        return f"{text} (optional)" if optional else text
    if prop.get("type") == "array":
        items = _resolve(prop.get("items", {}), defs)
        if _is_table(items):
            return f"array of tables `[[{path}]]`"
        return f"list of {type_name(items, defs, path)}"
    if isinstance(values := prop.get("additionalProperties"), dict):
        values = _resolve(values, defs)
        if _is_table(values):
            return f"tables `[{path}.<key>]`"
        return f"table of string to {type_name(values, defs, f'{path}.<key>')}"
    if prop.get("type") == "object":
        return "table"
    return _FORMATS.get(prop.get("format", ""), str(prop.get("type", "any")))


def toml_value(value: Any) -> str:
    """A JSON value (a schema default) as it is written in TOML or an app setting."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        pairs = ", ".join(f"{_key(name)} = {toml_value(item)}" for name, item in value.items())
        return f"{{ {pairs} }}" if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return str(value)


def _default(prop: Schema, defs: Schema) -> str:
    if "default" not in prop:
        return "-"
    value = prop["default"]
    tables = [_follow(v, defs) for v in [prop, *_members(prop)]]
    if isinstance(value, dict) and any(_is_table(t) for t in tables):
        key = prop.get("discriminator", {}).get("propertyName")
        if key and key in value:
            return f"the defaults of `{key} = {toml_value(value[key])}`"
        return "the table's defaults"
    return toml_value(value)


def _constraints(prop: Schema, defs: Schema) -> str:
    found = []
    for part in [prop, *(_resolve(v, defs) for v in _members(prop))]:
        for attr, label in _CONSTRAINTS:
            if attr in part:
                found.append(f"{label} `{part[attr]}`" if attr == "pattern" else f"{label} {part[attr]}")
    return ", ".join(found)


def _follow(schema: Schema, defs: Schema) -> Schema:
    """The definition a `$ref` points at (a model's own schema, its docstring as description)."""
    while isinstance(ref := schema.get("$ref"), str):
        schema = defs[ref.rsplit("/", 1)[-1]]
    return schema


def _resolve(schema: Schema, defs: Schema) -> Schema:
    """A field's schema: its definition, with the keys beside a `$ref` (the field's description,
    default) winning over the definition's."""
    return {**_follow(schema, defs), **{k: v for k, v in schema.items() if k != "$ref"}}


def _members(prop: Schema) -> list[Schema]:
    """A union's members other than null."""
    return [v for v in prop.get("anyOf") or prop.get("oneOf") or () if v.get("type") != "null"]


def _is_table(schema: Schema) -> bool:
    return schema.get("type") == "object" and "properties" in schema


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _doc(schema: Schema) -> str:
    return " ".join(str(schema.get("description", "")).split())


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, `<` outside code spans escaped (not an HTML tag)."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


if __name__ == "__main__":
    sys.stdout.write(render())
