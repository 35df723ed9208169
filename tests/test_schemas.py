"""host.json and local.settings.example.json against the published Functions schemas (SchemaStore).

The schemas are vendored in tests/schemas/ (source and commit in its README). Where a schema is
wrong the gap is listed here with the reason, and the test proves the gap is still there, so the
list cannot outlive it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared.config.catalog import FUNCTION_TIMEOUT_SECONDS

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# Settings the Functions host reads that SchemaStore's host.json schema does not declare. Its
# `durableTask` object has `additionalProperties: false`, so each one fails validation.
HOST_JSON_SCHEMA_GAPS: dict[tuple[str, ...], str] = {
    ("extensions", "durableTask", "overridableExistingInstanceStates"): (
        "Durable Functions 2.x: which states of an existing instance a start with the same id may "
        "replace (docs: durable-functions-bindings, host.json settings). The app starts one instance "
        "per (source, window) and relies on `NonRunningStates` to start a finished window afresh "
        "while never replacing a running one; the schema's durableTask definition lacks it"
    ),
}


def _schema(name: str) -> dict[str, Any]:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    assert isinstance(schema, dict)
    jsonschema.validators.validator_for(schema).check_schema(schema)
    return schema


def _errors(schema: dict[str, Any], document: Any) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    found = []
    for error in validator.iter_errors(document):
        # host.json's root is a oneOf (v1 or v2 layout): report the branch closest to matching.
        leaves = [error] if not error.context else sorted(error.context, key=lambda e: -len(e.absolute_path))
        found += [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in leaves[:1]]
    return found


def _without(document: dict[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    trimmed = copy.deepcopy(document)
    for path in paths:
        node = trimmed
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1])
    return trimmed


def _host_json() -> dict[str, Any]:
    document = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_host_json_is_valid_but_for_the_listed_schema_gaps() -> None:
    host = _host_json()
    gaps = [path for path in HOST_JSON_SCHEMA_GAPS if _has(host, path)]
    errors = _errors(_schema("host.schema.json"), _without(host, gaps))
    assert not errors, "host.json breaks the published schema:\n" + "\n".join(errors)


@pytest.mark.parametrize("path", sorted(HOST_JSON_SCHEMA_GAPS), ids="/".join)
def test_each_listed_gap_is_still_a_gap_of_the_schema(path: tuple[str, ...]) -> None:
    host = _host_json()
    assert _has(host, path), f"host.json no longer sets {'/'.join(path)}: drop it from HOST_JSON_SCHEMA_GAPS"
    others = [p for p in HOST_JSON_SCHEMA_GAPS if p != path and _has(host, p)]
    errors = _errors(_schema("host.schema.json"), _without(host, others))
    assert errors and all(path[-1] in e for e in errors), (
        f"the vendored schema now accepts {'/'.join(path)}: drop it from HOST_JSON_SCHEMA_GAPS ({errors})"
    )


def _has(document: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = document
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": "3.0"}, "version"),
        ({"functionTimeout": "ten minutes"}, "functionTimeout"),
        (
            {"extensions": {"durableTask": {"maxConcurrentActivityFunctions": "four"}}},
            "maxConcurrentActivityFunctions",
        ),
        ({"logging": {"logLevel": {"default": "Loud"}}}, "Loud"),
    ],
    ids=["version", "timeout", "activity-concurrency", "log-level"],
)
def test_the_host_json_schema_refuses_what_the_host_refuses(change: dict[str, Any], expected: str) -> None:
    """The check above means something only if the schema rejects a broken host.json."""
    host = _without(_host_json(), [p for p in HOST_JSON_SCHEMA_GAPS if _has(_host_json(), p)])
    broken = _merged(host, change)
    errors = _errors(_schema("host.schema.json"), broken)
    assert any(expected in e for e in errors), errors


def _merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def test_the_catalog_bounds_activities_by_the_function_timeout_host_json_sets() -> None:
    hours, minutes, seconds = (int(part) for part in _host_json()["functionTimeout"].split(":"))
    assert hours * 3600 + minutes * 60 + seconds == FUNCTION_TIMEOUT_SECONDS


def test_local_settings_example_is_valid() -> None:
    example = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))
    errors = _errors(_schema("local.settings.schema.json"), example)
    assert not errors, "local.settings.example.json breaks the published schema:\n" + "\n".join(errors)
    # The schema describes, but does not enforce, that every value is a string (the host refuses
    # anything else). Its other prose rule, no `__` in names, is wrong: identity-based connections
    # such as AzureWebJobsStorage__accountName (main.bicep) are spelled that way.
    values = example["Values"]
    assert all(isinstance(v, str) for v in values.values()), {
        k: v for k, v in values.items() if not isinstance(v, str)
    }
    assert not [k for k in values if ":" in k], "a colon in a setting name is reserved by the host"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_the_local_settings_schema_refuses_a_wrong_worker_runtime() -> None:
    example = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))
    example["Values"]["FUNCTIONS_WORKER_RUNTIME"] = "python3"
    example["IsEncrypted"] = "no"
    errors = _errors(_schema("local.settings.schema.json"), example)
    assert any("FUNCTIONS_WORKER_RUNTIME" in e for e in errors) and any("IsEncrypted" in e for e in errors), (
        errors
    )
