"""adf/: the Data Factory artefacts agree with each other and with function_app.py.

Structure only: references resolve, parameters and variables are declared, every Azure Function
activity calls a route the app has, with the key it needs. What the pipelines do, their
expressions evaluated by ADF's own engine against the app's answers, is tests/adf/test_pipelines.py.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.functions.decorators.http import HttpTrigger

import function_app
from shared.config.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]
ADF = ROOT / "adf"
KINDS = {"linkedService", "dataset", "pipeline", "trigger"}
REFERENCE_KINDS = {
    "LinkedServiceReference": "linkedService",
    "DatasetReference": "dataset",
    "PipelineReference": "pipeline",
}


def _load() -> dict[str, dict[str, dict[str, Any]]]:
    found: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
    for path in sorted(ADF.rglob("*.json")):
        kind = path.parent.name
        assert kind in KINDS, f"{path.relative_to(ROOT)}: ADF keeps artefacts in one of {sorted(KINDS)}"
        document = json.loads(path.read_text(encoding="utf-8"))
        assert set(document) <= {"name", "properties", "type"}, f"{path.name}: not an ADF export"
        assert document["name"] == path.stem, f"{path.name}: ADF names the file after the artefact"
        found[kind][document["name"]] = document["properties"]
    return found


ARTEFACTS = _load()
PIPELINES = ARTEFACTS["pipeline"]


def _http_routes() -> dict[str, tuple[str, set[str], str]]:
    """function name -> (route, methods, auth level), read without indexing the app.

    `app.get_functions()` may run once per process and tests/test_function_app.py runs it, so
    the decorators' records are read as they are.
    """
    routes = {}
    for builder in function_app.app._function_builders:
        function = builder._function
        trigger = function.get_trigger()
        if isinstance(trigger, HttpTrigger):
            name = function.get_function_name()
            methods = {str(getattr(m, "value", m)).upper() for m in trigger.methods or []}
            level = trigger.auth_level or function_app.app._auth_level
            routes[name] = (trigger.route or name, methods, str(getattr(level, "value", level)).upper())
    return routes


ROUTES = _http_routes()


# --- walking artefacts ------------------------------------------------------------------------


def _walk(node: Any) -> Any:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from _walk(child)


def _strings(node: Any) -> list[str]:
    return [item for item in _walk(node) if isinstance(item, str)]


def _nested_lists(activity: dict[str, Any]) -> list[list[dict[str, Any]]]:
    props = activity.get("typeProperties", {})
    keys = ("activities", "ifTrueActivities", "ifFalseActivities", "defaultActivities")
    lists = [props.get(key) for key in keys]
    lists += [case.get("activities") for case in props.get("cases", [])]
    return [found for found in lists if found]


def _without_nested(activity: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in activity.get("typeProperties", {}).items() if not k.endswith("ctivities")}
    return {**activity, "typeProperties": props}


def _activities(activities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for activity in activities:
        found.append(activity)
        for inner in _nested_lists(activity):
            found += _activities(inner)
    return found


def _all_activities() -> list[tuple[str, dict[str, Any]]]:
    return [(name, a) for name, p in PIPELINES.items() for a in _activities(p["activities"])]


def _upstream(level: list[dict[str, Any]]) -> dict[str, set[str]]:
    direct = {a["name"]: {d["activity"] for d in a.get("dependsOn", [])} for a in level}
    closure: dict[str, set[str]] = {}

    def visit(name: str) -> set[str]:
        if name not in closure:
            closure[name] = set()
            for parent in direct[name]:
                closure[name] |= {parent} | visit(parent)
        return closure[name]

    for name in direct:
        visit(name)
    return closure


def _function_calls() -> list[tuple[str, dict[str, Any]]]:
    return [(p, a) for p, a in _all_activities() if a["type"] == "AzureFunctionActivity"]


def _path(function_name: Any) -> str:
    """The route part of an activity's functionName: interpolations stand for one path segment."""
    value = function_name["value"] if isinstance(function_name, dict) else function_name
    return re.sub(r"@\{[^}]*\}", "x", value).split("?", 1)[0]


def _route_matches(route: str, path: str) -> bool:
    pattern = re.sub(r"\{[^}]+\}", "[^/]+", route)
    return re.fullmatch(pattern, path) is not None


def _route_for(path: str) -> tuple[str, tuple[str, set[str], str]] | None:
    return next(((n, r) for n, r in ROUTES.items() if _route_matches(r[0], path)), None)


# --- the artefacts as a set -------------------------------------------------------------------


def test_there_is_something_to_check() -> None:
    assert {"pl_ingest_window", "pl_backfill"} <= set(PIPELINES)
    assert ARTEFACTS["trigger"] and ARTEFACTS["dataset"] and ARTEFACTS["linkedService"]


def test_every_reference_resolves_to_a_defined_artefact() -> None:
    problems = []
    for kind, artefacts in ARTEFACTS.items():
        for name, properties in artefacts.items():
            for node in _walk(properties):
                if not (isinstance(node, dict) and "referenceName" in node):
                    continue
                target = REFERENCE_KINDS.get(node.get("type", ""))
                if target is None:
                    problems.append(f"{kind} {name}: unknown reference type {node.get('type')!r}")
                elif node["referenceName"] not in ARTEFACTS[target]:
                    problems.append(f"{kind} {name}: {target} {node['referenceName']!r} is not defined")
    assert not problems, "\n".join(problems)


def test_dataset_and_trigger_arguments_match_declared_parameters() -> None:
    problems = []
    calls = [
        (name, node, "dataset")
        for name, activity in _all_activities()
        for node in _walk(activity)
        if _is_ref(node, "Dataset")
    ]
    for name, trigger in ARTEFACTS["trigger"].items():
        pipelines = trigger.get("pipelines", []) + ([trigger["pipeline"]] if "pipeline" in trigger else [])
        for target in pipelines:
            reference = {**target["pipelineReference"], "parameters": target.get("parameters", {})}
            calls.append((name, reference, "pipeline"))
    assert calls
    for caller, reference, kind in calls:
        declared = ARTEFACTS[kind][reference["referenceName"]].get("parameters", {})
        given = set(reference.get("parameters", {}))
        required = {p for p, spec in declared.items() if "defaultValue" not in spec}
        if unknown := given - set(declared):
            problems.append(f"{caller}: {reference['referenceName']} has no parameter {sorted(unknown)}")
        if required - given:
            problems.append(f"{caller}: {reference['referenceName']} needs {sorted(required - given)}")
    assert not problems, "\n".join(problems)


def _is_ref(node: Any, kind: str) -> bool:
    return isinstance(node, dict) and node.get("type") == f"{kind}Reference"


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_expressions_name_declared_parameters_variables_and_upstream_activities(pipeline: str) -> None:
    properties = PIPELINES[pipeline]
    everything = _activities(properties["activities"])
    names = [a["name"] for a in everything]
    assert len(names) == len(set(names)), f"activity names repeat: {names}"
    parameters, variables = set(properties.get("parameters", {})), set(properties.get("variables", {}))
    text = "\n".join(_strings(properties["activities"]))
    assert set(re.findall(r"pipeline\(\)\.parameters\.(\w+)", text)) <= parameters
    assert set(re.findall(r"variables\('([^']+)'\)", text)) <= variables
    assigned = {a["typeProperties"]["variableName"] for a in everything if a["type"] == "SetVariable"}
    assert assigned <= variables
    problems: list[str] = []
    _check_activity_references(properties["activities"], set(), problems)
    assert not problems, "\n".join(problems)


def _check_activity_references(level: list[dict[str, Any]], inherited: set[str], problems: list[str]) -> None:
    upstream = _upstream(level)
    for activity in level:
        for dependency in activity.get("dependsOn", []):
            if dependency["activity"] not in upstream:
                problems.append(f"{activity['name']} depends on unknown {dependency['activity']!r}")
        allowed = inherited | upstream[activity["name"]]
        inner = {a["name"] for lst in _nested_lists(activity) for a in _activities(lst)}
        for ref in re.findall(r"activity\('([^']+)'\)", "\n".join(_strings(_without_nested(activity)))):
            if ref not in allowed | inner:
                problems.append(f"{activity['name']} reads activity({ref!r}), which does not run before it")
        for nested in _nested_lists(activity):
            _check_activity_references(nested, allowed, problems)


def test_dataset_expressions_name_declared_parameters() -> None:
    for name, dataset in ARTEFACTS["dataset"].items():
        used = set(re.findall(r"dataset\(\)\.(\w+)", "\n".join(_strings(dataset))))
        assert used <= set(dataset.get("parameters", {})), name


# --- against function_app.py ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pipeline", "activity"), _function_calls(), ids=lambda x: x if isinstance(x, str) else x["name"]
)
def test_function_calls_hit_a_route_of_function_app(pipeline: str, activity: dict[str, Any]) -> None:
    props = activity["typeProperties"]
    path = _path(props["functionName"])
    found = _route_for(path)
    assert found is not None, f"{pipeline}/{activity['name']}: no route of function_app.py matches {path!r}"
    name, (route, methods, _) = found
    assert props["method"] in methods, f"{route} ({name}) accepts {methods}, not {props['method']}"


def test_linked_service_sends_a_key_vault_function_key_when_a_called_route_needs_one() -> None:
    levels = {}
    for _, activity in _function_calls():
        found = _route_for(_path(activity["typeProperties"]["functionName"]))
        if found is not None:
            levels[activity["linkedServiceName"]["referenceName"]] = found[1][2]
    assert levels, "no Azure Function activity calls a known route"
    for service, level in levels.items():
        props = ARTEFACTS["linkedService"][service]["typeProperties"]
        assert ARTEFACTS["linkedService"][service]["type"] == "AzureFunction"
        if level != "ANONYMOUS":
            key = props.get("functionKey")
            assert key, f"{service}: the routes use AuthLevel.{level}, so the host wants a function key"
            assert key["type"] == "AzureKeyVaultSecret", "the function key comes from Key Vault, not inline"
        if props.get("authentication") == "MSI":
            assert props.get("resourceId"), f"{service}: MSI needs the resourceId to ask a token for"


def test_tumbling_window_trigger_feeds_the_window() -> None:
    catalog = load_catalog(ROOT / "catalog.toml")
    triggers = [t for t in ARTEFACTS["trigger"].values() if t["type"] == "TumblingWindowTrigger"]
    assert triggers
    for trigger in triggers:
        target = trigger["pipeline"]
        parameters = target["parameters"]
        assert parameters["windowStart"] == "@trigger().outputs.windowStartTime"
        assert parameters["windowEnd"] == "@trigger().outputs.windowEndTime"
        props = trigger["typeProperties"]
        unit = {"Minute": timedelta(minutes=1), "Hour": timedelta(hours=1)}[props["frequency"]]
        source = catalog.sources[parameters["source"]]
        assert unit * props["interval"] <= source.window.max_span, "one trigger window must fit one run"


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_every_wait_has_a_timeout(pipeline: str) -> None:
    """The evaluator in test_pipelines.py runs a loop until its condition holds; in ADF an Until
    or Validation without a timeout would wait on a stuck run for days (an Until: 7)."""
    activities = _activities(PIPELINES[pipeline]["activities"])
    loops = [a for a in activities if a["type"] in {"Until", "Validation"}]
    assert loops, f"{pipeline} waits for nothing"
    for activity in loops:
        assert activity["typeProperties"].get("timeout"), f"{pipeline}/{activity['name']}: no timeout"
