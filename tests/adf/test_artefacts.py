"""adf/: the Data Factory artefacts agree with each other, with function_app.py and with the app.

The pipelines' expressions are evaluated by a small interpreter of the ADF expression subset
they use, so the request bodies are checked against the real request models and the `_SUCCESS`
path against the real landing layout, not against copies of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest
from azure.functions.decorators.http import HttpTrigger
from pydantic import TypeAdapter

import function_app
import shared.ingest.requests
from shared.config.catalog import load_catalog
from shared.config.settings import Settings
from shared.ingest.layout import window_prefix
from shared.ingest.requests import IngestRequest, WindowBody
from shared.ingest.window import Window
from shared.landing.blobs import SUCCESS

ROOT = Path(__file__).resolve().parent.parent
ADF = ROOT / "adf"
KINDS = {"linkedService", "dataset", "pipeline", "trigger"}
REFERENCE_KINDS = {
    "LinkedServiceReference": "linkedService",
    "DatasetReference": "dataset",
    "PipelineReference": "pipeline",
}
# Routes the artefacts call that another change is adding; their checks skip until it lands.
PENDING_ROUTES = {"backfill": "POST /api/backfill (DESIGN.md section 3) is not in function_app.py yet"}
BACKFILL_FIELDS = {"source", "from", "to", "every", "maxParallel"}
SAMPLE_WINDOW = ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")
RUN_ID = "8d3b2a4e-0f51-4c57-9a4c-3f2e1b0c9d8e"


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


# --- a small interpreter of ADF expressions ---------------------------------------------------


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_]\w*)|(?P<op>\?\.|[().,\[\]]))"
)
_NET_FORMAT = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}


def _net_to_strftime(fmt: str) -> str:
    """A .NET custom date format (the subset used here) as a strftime format."""
    out, i = [], 0
    while i < len(fmt):
        token = next((t for t in _NET_FORMAT if fmt.startswith(t, i)), None)
        if token:
            out.append(_NET_FORMAT[token])
            i += len(token)
        elif fmt[i] == "'":
            end = fmt.index("'", i + 1)
            out.append(fmt[i + 1 : end].replace("%", "%%"))
            i = end + 1
        elif fmt[i] in "dfFghHKmMstyz":
            raise AssertionError(f"format {fmt!r}: specifier {fmt[i]!r} is not understood by this test")
        else:
            out.append(fmt[i].replace("%", "%%"))
            i += 1
    return "".join(out)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)  # ADF renders booleans as True/False
    return value if isinstance(value, str) else json.dumps(value)


FUNCTIONS = {
    "concat": lambda *a: "".join(_text(x) for x in a),
    "string": _text,
    "toLower": lambda s: s.lower(),
    "toUpper": lambda s: s.upper(),
    "equals": lambda a, b: a == b,
    "not": lambda a: not a,
    "and": lambda a, b: a and b,
    "or": lambda a, b: a or b,
    "if": lambda c, a, b: a if c else b,
    "coalesce": lambda *a: next((x for x in a if x is not None), None),
    "json": json.loads,
    "formatDateTime": lambda ts, fmt="yyyy-MM-ddTHH:mm:ss.fffffffZ": (
        datetime.fromisoformat(ts).astimezone(UTC).strftime(_net_to_strftime(fmt))
    ),
}


@dataclass
class Scope:
    """What `pipeline()`, `activity()`, `variables()`, `dataset()` and `trigger()` return."""

    pipeline: dict[str, Any]
    activities: dict[str, Any]
    variables: dict[str, Any]
    dataset: dict[str, Any]
    trigger: dict[str, Any]


class _Parser:
    def __init__(self, text: str, scope: Scope) -> None:
        self.tokens = [(m.lastgroup, m.group(m.lastgroup or "")) for m in _TOKEN.finditer(text)]
        assert "".join(t for _, t in self.tokens).replace(" ", "") == text.replace(" ", ""), text
        self.scope = scope
        self.i = 0

    def take(self, text: str | None = None) -> tuple[str | None, str]:
        kind, value = self.tokens[self.i]
        assert text is None or value == text, f"expected {text!r}, got {value!r}"
        self.i += 1
        return kind, value

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def expression(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            result: Any = value[1:-1].replace("''", "'")
        elif kind == "num":
            result = float(value) if "." in value else int(value)
        elif value in ("true", "false", "null") and self.peek() != "(":
            result = {"true": True, "false": False, "null": None}[value]
        else:
            self.take("(")
            args = []
            while self.peek() != ")":
                args.append(self.expression())
                if self.peek() == ",":
                    self.take(",")
            self.take(")")
            result = self.call(value, args)
        while self.peek() in (".", "?.", "["):
            op = self.take()[1]
            key = self.expression() if op == "[" else self.take()[1]
            if op == "[":
                self.take("]")
            if result is None and op == "?.":
                continue
            assert isinstance(result, dict) and key in result, f"no {key!r} in {result!r}"
            result = result[key]
        return result

    def call(self, name: str, args: list[Any]) -> Any:
        scope = self.scope
        lookups = {
            "pipeline": lambda: scope.pipeline,
            "activity": lambda n: scope.activities[n],
            "variables": lambda n: scope.variables[n],
            "dataset": lambda: scope.dataset,
            "trigger": lambda: scope.trigger,
        }
        handler = lookups.get(name) or FUNCTIONS.get(name)
        assert handler is not None, f"function {name}() is not understood by this test"
        return handler(*args)


def evaluate(value: Any, scope: Scope) -> Any:
    """An ADF property value: a literal, an Expression object, `@expr`, or a string with `@{...}`."""
    if isinstance(value, dict) and value.get("type") == "Expression":
        value = value["value"]
    if not isinstance(value, str):
        return value
    if value.startswith("@@"):
        return value[1:]
    if value.startswith("@") and not value.startswith("@{"):
        parser = _Parser(value[1:], scope)
        result = parser.expression()
        assert parser.peek() is None, f"trailing text in {value!r}"
        return result
    out, i = [], 0
    while (start := value.find("@{", i)) >= 0:
        end = _closing_brace(value, start + 2)
        out += [value[i:start], _text(evaluate("@" + value[start + 2 : end], scope))]
        i = end + 1
    return "".join(out) + value[i:]


def _closing_brace(text: str, i: int) -> int:
    depth, quoted = 0, False
    for j in range(i, len(text)):
        char = text[j]
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "{":
            depth += 1
        elif not quoted and char == "}":
            if depth == 0:
                return j
            depth -= 1
    raise AssertionError(f"unclosed @{{ in {text!r}")


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


def _scope(pipeline: str, **parameters: Any) -> Scope:
    declared = PIPELINES[pipeline].get("parameters", {})
    values = {name: spec.get("defaultValue") for name, spec in declared.items()}
    values.update(source="orders", windowStart=SAMPLE_WINDOW[0], windowEnd=SAMPLE_WINDOW[1])
    values.update(parameters)
    window = Window.parse(values["windowStart"], values["windowEnd"])
    instance = f"dev-{values['source']}-{window.folder}"
    names = [a["name"] for a in _activities(PIPELINES[pipeline]["activities"])]
    outputs = {"id": instance, "statusUrl": f"https://app/api/runs/{instance}", "runtimeStatus": "Completed"}
    error = {"message": "RunFailed", "errorCode": "3608"}
    activities = {n: {"output": outputs, "error": error} for n in names}
    variables = {n: v.get("defaultValue") for n, v in PIPELINES[pipeline].get("variables", {}).items()}
    return Scope(
        pipeline={"parameters": values, "RunId": RUN_ID, "Pipeline": pipeline},
        activities=activities,
        variables=variables,
        dataset={},
        trigger={},
    )


def _function_calls() -> list[tuple[str, dict[str, Any]]]:
    return [(p, a) for p, a in _all_activities() if a["type"] == "AzureFunctionActivity"]


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
    path = evaluate(props["functionName"], _scope(pipeline))
    found = _route_for(path)
    if found is None and path in PENDING_ROUTES:
        pytest.skip(PENDING_ROUTES[path])
    assert found is not None, f"{pipeline}/{activity['name']}: no route of function_app.py matches {path!r}"
    name, (route, methods, _) = found
    assert props["method"] in methods, f"{route} ({name}) accepts {methods}, not {props['method']}"


def test_linked_service_sends_a_key_vault_function_key_when_a_called_route_needs_one() -> None:
    levels = {}
    for pipeline, activity in _function_calls():
        found = _route_for(evaluate(activity["typeProperties"]["functionName"], _scope(pipeline)))
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


def test_ingest_body_is_exactly_an_ingest_request() -> None:
    activity = _only("pl_ingest_window", "AzureFunctionActivity", method="POST")
    for dry_run in (False, True):
        scope = _scope("pl_ingest_window", dryRun=dry_run)
        body = json.loads(evaluate(activity["typeProperties"]["body"], scope))
        aliases = {f.alias or n for n, f in IngestRequest.model_fields.items()}
        assert set(body) == aliases, "send every IngestRequest field, by its alias, and nothing else"
        assert set(body["window"]) == {f.alias or n for n, f in WindowBody.model_fields.items()}
        request = IngestRequest.model_validate(body)
        assert request.pipeline_run_id == RUN_ID
        assert request.pipeline_name == "pl_ingest_window"
        assert request.dry_run is dry_run
        assert request.mode == PIPELINES["pl_ingest_window"]["parameters"]["mode"]["defaultValue"]
        assert Window.parse(request.window.start, request.window.end) == Window.parse(*SAMPLE_WINDOW)


def test_waiting_for_the_run_fails_the_pipeline_with_the_run_error() -> None:
    for pipeline, properties in PIPELINES.items():
        fails = [a for a in properties["activities"] if a["type"] == "Fail"]
        assert fails, f"{pipeline}: no Fail activity"
        for fail in fails:
            failed_on = {d["activity"] for d in fail["dependsOn"] if d["dependencyConditions"] == ["Failed"]}
            message = fail["typeProperties"]["message"]["value"]
            assert re.fullmatch(r"@activity\('([^']+)'\)\.error\.message", message), message
            read = message.split("'")[1]
            assert read in failed_on, f"{pipeline}: {fail['name']} reads {read!r} but not after it failed"
        until = [a for a in properties["activities"] if a["type"] == "Until"]
        assert until and all(a["typeProperties"].get("timeout") for a in until), "wait with a timeout"


def test_success_marker_path_is_the_landing_layout() -> None:
    validation = _only("pl_ingest_window", "Validation")
    reference = validation["typeProperties"]["dataset"]
    dataset = ARTEFACTS["dataset"][reference["referenceName"]]
    fake_runtime = SimpleNamespace(settings=Settings(LANDING_ACCOUNT_URL="https://x.blob.core.windows.net"))
    assert PIPELINES["pl_ingest_window"]["parameters"]["container"]["defaultValue"] == (
        Settings.model_fields["landing_container"].default
    )
    assert PIPELINES["pl_ingest_window"]["parameters"]["environment"]["defaultValue"] == (
        fake_runtime.settings.environment.value
    )
    windows = [SAMPLE_WINDOW, ("2024-02-29T06:00:00.0000000Z", "2024-03-01T06:00:00.0000000Z")]
    for (start, end), dry_run in [(w, d) for w in windows for d in (False, True)]:
        scope = _scope("pl_ingest_window", windowStart=start, windowEnd=end, dryRun=dry_run)
        arguments = {k: evaluate(v, scope) for k, v in reference["parameters"].items()}
        dataset_scope = Scope({}, {}, {}, {**_dataset_defaults(dataset), **arguments}, {})
        location = {k: evaluate(v, dataset_scope) for k, v in dataset["typeProperties"]["location"].items()}
        environment = fake_runtime.settings.environment.value
        expected = window_prefix(environment, "orders", Window.parse(start, end), dry_run=dry_run)
        assert location["folderPath"] == expected
        assert location["fileName"] == SUCCESS
        assert location["container"] == "landing"
    assert re.fullmatch(r"\d{8}T\d{6}Z_\d{8}T\d{6}Z", Window.parse(*SAMPLE_WINDOW).folder)


def _dataset_defaults(dataset: dict[str, Any]) -> dict[str, Any]:
    return {k: v["defaultValue"] for k, v in dataset.get("parameters", {}).items() if "defaultValue" in v}


def test_backfill_body_is_the_backfill_contract() -> None:
    activity = _only("pl_backfill", "AzureFunctionActivity", method="POST")
    body = json.loads(evaluate(activity["typeProperties"]["body"], _scope("pl_backfill")))
    assert set(body) >= BACKFILL_FIELDS, "DESIGN.md section 3: {source, from, to, every, maxParallel}"
    assert Window.parse(body["from"], body["to"]) == Window.parse(*SAMPLE_WINDOW)
    assert TypeAdapter(timedelta).validate_python(body["every"]) == timedelta(days=1)
    assert isinstance(body["maxParallel"], int) and body["maxParallel"] >= 1
    assert (body.get("pipelineRunId"), body.get("pipelineName")) == (RUN_ID, "pl_backfill")
    model = getattr(shared.ingest.requests, "BackfillRequest", None)
    if model is None:
        pytest.skip("shared.ingest.requests.BackfillRequest does not exist yet; checked the DESIGN.md fields")
    aliases = {f.alias or n for n, f in model.model_fields.items()}
    assert set(body) <= aliases, f"the backfill route refuses unknown fields {set(body) - aliases}"
    model.model_validate(body)


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
        scope = _scope(target["pipelineReference"]["referenceName"])
        outputs = {"windowStartTime": "2024-01-01T00:00:00Z", "windowEndTime": "2024-01-02T00:00:00Z"}
        scope.trigger = {"outputs": outputs}
        window = {k: evaluate(parameters[k], scope) for k in ("windowStart", "windowEnd")}
        assert Window.parse(window["windowStart"], window["windowEnd"]).span == unit * props["interval"]


def test_the_interpreter_can_fail() -> None:
    """The checks above lean on `evaluate`; make sure it rejects what it does not know."""
    scope = _scope("pl_ingest_window")
    assert evaluate("@{pipeline().parameters.source}/x", scope) == "orders/x"
    shifted = "@formatDateTime('2024-01-01T01:00:00+01:00', 'yyyyMMddTHHmmssZ')"
    assert evaluate(shifted, scope) == "20240101T000000Z"
    with pytest.raises(AssertionError):
        evaluate("@pipeline().parameters.nope", scope)
    with pytest.raises(AssertionError):
        evaluate("@utcNow()", scope)
    with pytest.raises(AssertionError):
        evaluate("@formatDateTime('2024-01-01T00:00:00Z', 'yyyy-MM-dd hh tt')", scope)
    assert not _route_matches("runs/{id}", "runs/a/b")
    assert ROUTES["ingest"][0] == "ingest" and func.HttpMethod.POST.value in ROUTES["ingest"][1]


def _only(pipeline: str, kind: str, **match: str) -> dict[str, Any]:
    found = [
        a
        for a in _activities(PIPELINES[pipeline]["activities"])
        if a["type"] == kind and all(a["typeProperties"].get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, f"{pipeline}: expected one {kind} {match}, found {[a['name'] for a in found]}"
    return found[0]
