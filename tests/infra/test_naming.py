"""The names main.bicep gives its resources by default, for dev, stage and prod, against Azure's rules.

A default that breaks a rule fails the first deployment of that environment (issue 15: the Key
Vault name for `stage` was 25 characters). The names are computed from the template's own
parameter defaults and name expressions; rules from Azure's "Naming rules and restrictions for
Azure resources" (and the Durable Functions task hub rules).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from bicep_text import Bicep

from shared.config.settings import Environment

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = [e.value for e in Environment]
# What `environment().suffixes.storage` is in Azure's public cloud.
STORAGE_SUFFIX = "core.windows.net"


@dataclass(frozen=True)
class Rule:
    pattern: str
    low: int
    high: int
    text: str

    def problems(self, name: str) -> list[str]:
        found = []
        if not self.low <= len(name) <= self.high:
            found.append(f"{len(name)} characters, allowed {self.low}-{self.high}")
        if not re.fullmatch(self.pattern, name):
            found.append(self.text)
        return found


_NETWORK = Rule(
    r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?",
    2,
    64,
    "letters, digits, _ . -; alphanumeric first, no . or - last",
)
RULES: dict[str, Rule] = {
    "Microsoft.Web/sites": Rule(
        r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?",
        2,
        60,
        "letters, digits, hyphens; no hyphen first or last",
    ),
    "Microsoft.Web/serverfarms": Rule(r"[A-Za-z0-9-]+", 1, 60, "letters, digits, hyphens"),
    "Microsoft.Storage/storageAccounts": Rule(r"[a-z0-9]+", 3, 24, "lowercase letters and digits only"),
    "Microsoft.Storage/storageAccounts/blobServices/containers": Rule(
        r"[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]",
        3,
        63,
        "lowercase letters, digits, single hyphens; alphanumeric first and last",
    ),
    "Microsoft.KeyVault/vaults": Rule(
        r"[A-Za-z](?:[A-Za-z0-9]|-(?!-))*[A-Za-z0-9]",
        3,
        24,
        "letters, digits, single hyphens; a letter first, no hyphen last",
    ),
    "Microsoft.ManagedIdentity/userAssignedIdentities": Rule(
        r"[A-Za-z0-9][A-Za-z0-9_-]*", 3, 128, "letters, digits, hyphens, underscores; alphanumeric first"
    ),
    "Microsoft.OperationalInsights/workspaces": Rule(
        r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?",
        4,
        63,
        "letters, digits, hyphens; alphanumeric first and last",
    ),
    "Microsoft.Insights/components": Rule(
        r"[^%&\\?/]*[^%&\\?/. ]", 1, 260, "no % & \\ ? /, not ending in a space or period"
    ),
    "Microsoft.Network/virtualNetworks": _NETWORK,
    "Microsoft.Network/privateEndpoints": _NETWORK,
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks": Rule(_NETWORK.pattern, 1, 80, _NETWORK.text),
    "Microsoft.Network/natGateways": Rule(_NETWORK.pattern, 1, 80, _NETWORK.text),
    "Microsoft.Network/publicIPAddresses": Rule(_NETWORK.pattern, 1, 80, _NETWORK.text),
}
# Resources whose names the template does not choose.
FIXED = {
    "Microsoft.Storage/storageAccounts/blobServices": "always `default`",
    "Microsoft.Web/sites/config": "the name of a configuration section (appsettings, authsettingsV2)",
    "Microsoft.Network/privateDnsZones": "Azure's privatelink zone names",
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups": "a child named `default`",
    "Microsoft.Authorization/roleAssignments": "a GUID, guid() of the scope, principal and role",
}
TASK_HUB = Rule(r"[A-Za-z][A-Za-z0-9]*", 3, 45, "letters and digits, a letter first")


def _evaluate(expression: str, values: dict[str, str], item: dict[str, str] | None = None) -> str:
    """A name expression: a parameter or variable, or a string with ${...} over those."""
    expression = expression.strip()
    if re.fullmatch(r"[A-Za-z_]\w*", expression):
        assert expression in values, f"{expression}: not a parameter or variable with a string value"
        return values[expression]
    literal = re.fullmatch(r"'([^']*)'", expression)
    assert literal, f"{expression}: extend tests/infra/test_naming.py to compute such a name"

    def part(match: re.Match[str]) -> str:
        inner = match.group(1)
        if inner == "environment().suffixes.storage":
            return STORAGE_SUFFIX
        if "." in inner and item is not None:
            key = inner.split(".", 1)[1]
            assert key in item, f"{inner}: the loop's items have no literal {key!r}"
            return item[key]
        return _evaluate(inner, values)

    return re.sub(r"\$\{([^}]*)\}", part, literal.group(1))


def default_names(bicep: Bicep, environment: str) -> dict[str, list[tuple[str, str]]]:
    """type -> [(what, name)] of everything the template names, with every parameter at its default."""
    values = {"environmentName": environment}
    for name, param in bicep.params.items():
        if name not in values and param.type == "string" and param.default and "(" not in param.default:
            values[name] = _evaluate(param.default, values)
    for name, expression in bicep.variables.items():
        if re.fullmatch(r"'[^']*'", expression.strip()):
            values[name] = _evaluate(expression, values)
    names: dict[str, list[tuple[str, str]]] = {}
    for resource in bicep.resources.values():
        if resource.type in FIXED:
            continue
        items = bicep.array_of_objects(resource.loop_array) if resource.loop_array else [None]
        for item in items:
            name = _evaluate(resource.name, values, item)
            names.setdefault(resource.type, []).append((resource.symbol, name))
    names["task hub"] = [("durableTaskHub", values["durableTaskHub"])]
    names["params"] = [(p, values[p]) for p in bicep.params if p in values]
    return names


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_default_names_keep_azures_naming_rules(bicep: Bicep, environment: str) -> None:
    names = default_names(bicep, environment)
    problems = []
    for kind, found in names.items():
        if kind == "params":
            continue
        rule = TASK_HUB if kind == "task hub" else RULES.get(kind)
        assert rule is not None, f"{kind}: add Azure's naming rule for it to RULES (or to FIXED, with why)"
        problems += [f"{what} {name!r}: {p}" for what, name in found for p in rule.problems(name)]
    assert not problems, f"{environment}:\n" + "\n".join(problems)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_default_names_fit_the_templates_own_length_bounds(bicep: Bicep, environment: str) -> None:
    for name, value in default_names(bicep, environment)["params"]:
        param = bicep.params[name]
        if param.min_length is not None:
            assert len(value) >= param.min_length, f"{environment}: {name} {value!r} under @minLength"
        if param.max_length is not None:
            assert len(value) <= param.max_length, (
                f"{environment}: {name} {value!r} is {len(value)} > @maxLength({param.max_length})"
            )


def test_the_environments_get_names_of_their_own(bicep: Bicep) -> None:
    """Globally unique names must differ between dev, stage and prod; the Function App's first 32
    characters too, the host id Functions derives from it (apps sharing a storage account collide)."""
    per_environment = {e: default_names(bicep, e) for e in ENVIRONMENTS}
    for kind in ("Microsoft.Web/sites", "Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults"):
        names = [dict(per_environment[e])[kind][0][1] for e in ENVIRONMENTS]
        assert len(set(names)) == len(names), f"{kind}: {names}"
    host_ids = {dict(per_environment[e])["Microsoft.Web/sites"][0][1][:32] for e in ENVIRONMENTS}
    assert len(host_ids) == len(ENVIRONMENTS), host_ids


def test_the_environment_parameter_offers_the_apps_environments(bicep: Bicep) -> None:
    assert bicep.params["environmentName"].allowed == tuple(ENVIRONMENTS)


def test_the_example_parameters_keep_the_rules_too() -> None:
    example = json.loads((ROOT / "infra" / "azure" / "main.parameters.example.json").read_text())[
        "parameters"
    ]
    checks = {
        "appName": RULES["Microsoft.Web/sites"],
        "storageAccountName": RULES["Microsoft.Storage/storageAccounts"],
        "keyVaultName": RULES["Microsoft.KeyVault/vaults"],
        "landingContainerName": RULES["Microsoft.Storage/storageAccounts/blobServices/containers"],
        "durableTaskHub": TASK_HUB,
    }
    problems = [
        f"{k} {example[k]['value']!r}: {p}"
        for k, rule in checks.items()
        if k in example
        for p in rule.problems(example[k]["value"])
    ]
    assert not problems, problems


def test_the_private_subnets_lie_inside_the_virtual_network(bicep: Bicep) -> None:
    network = ipaddress.ip_network(_evaluate(bicep.params["vnetAddressPrefix"].default or "", {}))
    subnets = [
        ipaddress.ip_network(_evaluate(bicep.params[p].default or "", {}))
        for p in ("appSubnetPrefix", "endpointSubnetPrefix")
    ]
    assert all(s.subnet_of(network) for s in subnets), (network, subnets)
    assert not subnets[0].overlaps(subnets[1])


def test_the_rules_catch_the_defect_of_issue_15() -> None:
    assert RULES["Microsoft.KeyVault/vaults"].problems("kv-apigw-adf-bridge-stage") == [
        "25 characters, allowed 3-24"
    ]
    assert RULES["Microsoft.Storage/storageAccounts"].problems("st-apigw") == [
        "lowercase letters and digits only"
    ]
    assert RULES["Microsoft.KeyVault/vaults"].problems("kv--x-dev")
    assert RULES["Microsoft.Web/sites"].problems("func-")
