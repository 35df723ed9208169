"""infra/: the Bicep template sets what the app reads; the CloudFormation template trusts exactly it.

The Bicep CLI downloads a binary of its own and cannot be installed here, so main.bicep is read
as text: its resource blocks, parameters, app settings and role assignments. The CloudFormation
template is parsed as YAML (intrinsic tags such as !Sub kept as tagged values), and its trust and
permission policies are rendered with sample parameters and checked against catalog.toml.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.config.auth import AwsIamAuth
from shared.config.catalog import Source, load_catalog
from shared.config.settings import Environment, Settings

ROOT = Path(__file__).resolve().parent.parent
BICEP = ROOT / "infra" / "azure" / "main.bicep"
BICEP_PARAMETERS = ROOT / "infra" / "azure" / "main.parameters.example.json"
CLOUDFORMATION = ROOT / "infra" / "aws" / "federation.yaml"
CATALOG = load_catalog(ROOT / "catalog.toml")
HOST = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))

# Settings the app reads that stay unset in Azure, and why.
LOCAL_ONLY = {
    "LANDING_CONNECTION_STRING": "Azurite only; the account has shared keys disabled",
    "LANDING_CREATE_CONTAINER": "the template creates the landing container",
    "RUN_STATE_DIR": "journals of the CLI's in-process runner; the Functions host keeps its own",
    "LOG_FORMAT": "the CLI's stderr lines; in Azure the Functions host ships log records itself",
}
# Settings read by the Functions host, the Durable extension, azure-identity or botocore.
PLATFORM = {
    "AZURE_CLIENT_ID",
    "AWS_REGION",
    "DURABLE_TASK_HUB",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
}
BUILT_IN_ROLES = {
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageBlobDataContributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "storageBlobDataReader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
}
APP, ADF = "identity.properties.principalId", "dataFactoryPrincipalId"


# --- Bicep, read as text ----------------------------------------------------------------------


def _code(text: str) -> str:
    """The template with comments blanked and string contents replaced by x, lengths kept."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text[i] == "'":
            end = i + 1
            while text[end] != "'":
                end += 2 if text[end] == "\\" else 1
            out.append("'" + "x" * (end - i - 1) + "'")
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


TEXT = BICEP.read_text(encoding="utf-8")
CODE = _code(TEXT)


def _block(start: int) -> str:
    """The text of the {...} that opens at or after `start`, braces included."""
    open_at = CODE.index("{", start)
    depth = 0
    for i in range(open_at, len(CODE)):
        depth += {"{": 1, "}": -1}.get(CODE[i], 0)
        if depth == 0:
            return TEXT[open_at : i + 1]
    raise AssertionError("unbalanced braces in main.bicep")


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str
    body: str

    def entries(self, key: str = "") -> dict[str, str]:
        """`name: value` lines directly inside the body, or inside its `key: {...}` object."""
        body = self.body
        if key:
            match = re.search(rf"^\s*{key}:\s*{{", body, re.MULTILINE)
            assert match, f"{self.symbol} has no {key}"
            offset = TEXT.index(body) + match.start()
            body = _block(offset)
        found, depth = {}, 0
        for line in body.splitlines():
            if depth == 1 and (entry := re.match(r"^\s*([A-Za-z_]\w*)\s*:\s*(.*?)\s*$", line)):
                found[entry.group(1)] = entry.group(2)
            depth += line.count("{") + line.count("[") - line.count("}") - line.count("]")
        return found


def _resources() -> dict[str, Resource]:
    found = {}
    for match in re.finditer(r"^resource (\w+) '([^']+)'", TEXT, re.MULTILINE):
        found[match.group(1)] = Resource(match.group(1), match.group(2), _block(match.end()))
    return found


RESOURCES = _resources()
PARAMS = {m.group(1): m.group(3) for m in re.finditer(r"^param (\w+) (\w+)(?: = (.+))?$", TEXT, re.MULTILINE)}


def _of_type(prefix: str) -> list[Resource]:
    return [r for r in RESOURCES.values() if r.type.startswith(prefix + "@")]


def _app_settings() -> dict[str, str]:
    [resource] = [r for r in _of_type("Microsoft.Web/sites/config") if "name: 'appsettings'" in r.body]
    return resource.entries("properties")


def _settings_aliases() -> set[str]:
    return {field.alias or name for name, field in Settings.model_fields.items()}


def test_bicep_is_balanced_and_versions_every_resource() -> None:
    for opening, closing in ("{}", "[]", "()"):
        assert CODE.count(opening) == CODE.count(closing), f"unbalanced {opening}{closing} in main.bicep"
    assert len(RESOURCES) >= 10
    for resource in RESOURCES.values():
        assert re.fullmatch(r"[\w.]+/[\w/]+@\d{4}-\d{2}-\d{2}(-preview)?", resource.type), resource.type
    symbols = set(RESOURCES) | set(PARAMS) | set(re.findall(r"^var (\w+)", TEXT, re.MULTILINE))
    used = set(re.findall(r"\b([A-Za-z_]\w*)\.(?:id|name|properties)\b", CODE))
    assert used <= symbols, f"main.bicep uses undeclared symbols {sorted(used - symbols)}"


def test_app_settings_are_exactly_what_the_app_and_its_host_read() -> None:
    aliases = _settings_aliases()
    stale = set(LOCAL_ONLY) - aliases
    assert not stale, f"LOCAL_ONLY in tests/test_infra.py names settings the app no longer reads: {stale}"
    expected = (aliases - set(LOCAL_ONLY)) | PLATFORM
    actual = set(_app_settings())
    assert not expected - actual, (
        f"infra/azure/main.bicep does not set {sorted(expected - actual)}: add them to the appsettings "
        "resource (or, for a local-only setting, to LOCAL_ONLY in tests/test_infra.py with the reason)"
    )
    unknown = sorted(actual - expected)
    assert not unknown, f"infra/azure/main.bicep sets settings nothing reads: {unknown}"


def test_host_json_finds_its_settings() -> None:
    settings = _app_settings()
    placeholders = set(re.findall(r"%(\w+)%", json.dumps(HOST)))
    assert placeholders and placeholders <= set(settings), placeholders
    connection = HOST["extensions"]["durableTask"]["storageProvider"]["connectionStringName"]
    identity_based = {f"{connection}__{part}" for part in ("accountName", "credential", "clientId")}
    assert identity_based <= set(settings)
    assert connection not in settings, "an identity-based connection has no connection string"
    assert settings[f"{connection}__credential"] == "'managedidentity'"


def test_the_app_runs_as_its_user_assigned_identity() -> None:
    settings = _app_settings()
    client_id = "identity.properties.clientId"
    assert settings["AZURE_CLIENT_ID"] == settings["AzureWebJobsStorage__clientId"] == client_id
    app = RESOURCES["functionApp"]
    assert app.entries("identity")["type"] == "'UserAssigned'"
    assert "'${identity.id}': {}" in app.body
    deployment = _block(TEXT.index("authentication:", TEXT.index("functionAppConfig")))
    assert "type: 'UserAssignedIdentity'" in deployment and "identity.id" in deployment


def test_runtime_is_python_3_11_on_flex_consumption() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    runtime = RESOURCES["functionApp"].entries("runtime")
    assert runtime == {"name": "'python'", "version": f"'{pyproject['tool']['mypy']['python_version']}'"}
    assert RESOURCES["plan"].entries("sku") == {"tier": "'FlexConsumption'", "name": "'FC1'"}


def test_storage_is_identity_only_and_holds_landing() -> None:
    storage = RESOURCES["storage"].entries("properties")
    assert storage["allowSharedKeyAccess"] == "false"
    assert storage["allowBlobPublicAccess"] == "false"
    landing = RESOURCES["landingContainer"]
    assert landing.entries()["name"] == "landingContainerName"
    assert PARAMS["landingContainerName"] == f"'{Settings.model_fields['landing_container'].default}'"
    settings = _app_settings()
    assert settings["LANDING_CONTAINER"] == "landingContainer.name"
    assert settings["LANDING_ACCOUNT_URL"] == "storage.properties.primaryEndpoints.blob"
    assert "LANDING_CONNECTION_STRING" not in settings


def test_environment_choices_are_the_apps() -> None:
    allowed = re.search(r"@allowed\(\[([^\]]*)\]\)\s*param environmentName", TEXT)
    assert allowed, "environmentName must be limited to the app's environments"
    assert re.findall(r"'(\w+)'", allowed.group(1)) == [e.value for e in Environment]
    assert _app_settings()["APP_ENVIRONMENT"] == "environmentName"


def test_role_assignments_grant_what_each_identity_needs() -> None:
    roles = re.search(r"^var roles = ", TEXT, re.MULTILINE)
    assert roles
    declared = {k: v.strip("'") for k, v in Resource("roles", "", _block(roles.end())).entries().items()}
    assert declared == BUILT_IN_ROLES, "role definition ids are fixed by Azure"
    granted = set()
    for assignment in _of_type("Microsoft.Authorization/roleAssignments"):
        body = assignment.body
        role = re.search(r"roleDefinitionId: .*roles\.(\w+)\)", body)
        scope = re.search(r"^\s*scope: (\w+)", body, re.MULTILINE)
        principal = re.search(r"principalId: (\S+)", body)
        assert role and scope and principal, assignment.symbol
        assert "principalType: 'ServicePrincipal'" in body, assignment.symbol
        granted.add((role.group(1), scope.group(1), principal.group(1)))
    assert granted == {
        ("storageBlobDataOwner", "storage", APP),
        ("storageQueueDataContributor", "storage", APP),
        ("storageTableDataContributor", "storage", APP),
        ("storageBlobDataContributor", "landingContainer", APP),
        ("keyVaultSecretsUser", "keyVault", APP),
        ("keyVaultSecretsUser", "keyVault", ADF),
        ("storageBlobDataReader", "landingContainer", ADF),
    }


def test_key_vault_is_rbac_only() -> None:
    vault = RESOURCES["keyVault"].entries("properties")
    assert vault["enableRbacAuthorization"] == "true"
    assert "accessPolicies" not in vault
    assert vault["enablePurgeProtection"] == "true"


def test_outputs_feed_the_aws_template() -> None:
    outputs = dict(re.findall(r"^output (\w+) string = (.+)$", TEXT, re.MULTILINE))
    assert outputs["identityPrincipalId"] == "identity.properties.principalId"
    assert outputs["tenantId"] == "tenant().tenantId"
    assert "defaultHostName" in outputs["functionAppUrl"]


def test_parameters_example_fits_the_template() -> None:
    example = json.loads(BICEP_PARAMETERS.read_text(encoding="utf-8"))["parameters"]
    assert set(example) <= set(PARAMS), f"unknown parameters {set(example) - set(PARAMS)}"
    required = {name for name, default in PARAMS.items() if default is None}
    assert required <= set(example), f"the example misses required parameters {required - set(example)}"
    assert example["environmentName"]["value"] in {e.value for e in Environment}
    storage = example["storageAccountName"]["value"]
    assert re.fullmatch(r"[a-z0-9]{3,24}", storage), "storage account names: 3-24 lowercase letters, digits"
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,44}", example["durableTaskHub"]["value"])


def test_adf_linked_services_point_at_the_deployed_resources() -> None:
    example = {k: v["value"] for k, v in json.loads(BICEP_PARAMETERS.read_text())["parameters"].items()}
    services = {
        path.stem: json.loads(path.read_text())["properties"]["typeProperties"]
        for path in (ROOT / "adf" / "linkedService").glob("*.json")
    }
    app_url = f"https://{example['appName']}.azurewebsites.net"
    assert services["ls_apigw_adf_bridge"]["functionAppUrl"] == app_url
    assert services["ls_landing_blob"]["serviceEndpoint"] == (
        f"https://{example['storageAccountName']}.blob.core.windows.net/"
    )
    assert services["ls_keyvault"]["baseUrl"] == f"https://{example['keyVaultName']}.vault.azure.net/"


# --- CloudFormation, parsed as YAML -----------------------------------------------------------


@dataclass(frozen=True)
class Tag:
    """An intrinsic function written with its short form, such as !Sub or !Ref."""

    name: str
    value: Any


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        pytest.fail(
            "PyYAML is not installed: add PyYAML==6.0.3 to requirements-dev.txt "
            "(tests/test_infra.py parses infra/aws/federation.yaml with it)"
        )

    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tag:
        if isinstance(node, yaml.ScalarNode):
            return Tag(suffix, loader.construct_scalar(node))
        if isinstance(node, yaml.SequenceNode):
            return Tag(suffix, loader.construct_sequence(node, deep=True))
        return Tag(suffix, loader.construct_mapping(node, deep=True))

    Loader.add_multi_constructor("!", tagged)
    text = CLOUDFORMATION.read_text(encoding="utf-8")
    document = yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    assert isinstance(document, dict)
    return document


def _aws_sources() -> list[Source]:
    sources = [s for s in CATALOG.sources.values() if isinstance(s.auth, AwsIamAuth)]
    assert sources, "catalog.toml has no aws_iam source to check the roles against"
    return sources


def _auth(source: Source) -> AwsIamAuth:
    assert isinstance(source.auth, AwsIamAuth)
    return source.auth


def _role_name(arn: str) -> str:
    return arn.split(":role/", 1)[1].rsplit("/", 1)[-1]


def _account() -> str:
    accounts = {
        arn.split(":")[4]
        for s in _aws_sources()
        for arn in [_auth(s).role_arn, *_auth(s).pipeline_roles.values()]
    }
    assert len(accounts) == 1, f"the template creates roles in one account; the catalog names {accounts}"
    return accounts.pop()


def _catalog_roles() -> dict[str, list[Source]]:
    """Role name -> the sources it must be able to read."""
    roles: dict[str, list[Source]] = {}
    for source in _aws_sources():
        auth = _auth(source)
        for arn in {auth.role_arn, *auth.pipeline_roles.values()}:
            roles.setdefault(_role_name(arn), []).append(source)
    return roles


def _api(source: Source) -> tuple[str, str, str]:
    """(api id, region, stage) of an execute-api base URL."""
    parts = urlsplit(source.base_url)
    host = (parts.hostname or "").split(".")
    assert host[1:2] == ["execute-api"], f"{source.name}: base_url is no execute-api URL; extend this test"
    return host[0], host[2], parts.path.strip("/").split("/")[0]


def _values(cfn: dict[str, Any]) -> dict[str, str]:
    """What ${...} resolves to, with sample values for the parameters without defaults."""
    samples = {
        "TenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "ManagedIdentityObjectId": "0d7e3f4a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
    }
    values = {name: str(spec.get("Default", samples.get(name))) for name, spec in cfn["Parameters"].items()}
    _, region, _ = _api(_aws_sources()[0])
    values.update({"AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": _account()})
    provider = f"arn:aws:iam::{_account()}:oidc-provider/sts.windows.net/{values['TenantId']}/"
    for name, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::IAM::OIDCProvider":
            values[name] = provider
    return values


def _sub(value: Any, values: dict[str, str]) -> str:
    assert isinstance(value, Tag) and value.name == "Sub" and isinstance(value.value, str), value

    def lookup(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"!Sub names unknown {match.group(1)!r}"
        return values[match.group(1)]

    return re.sub(r"\$\{([\w:]+)\}", lookup, value.value)


def _roles(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    roles = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    return {role["RoleName"]: role for role in roles}


def _provider(cfn: dict[str, Any]) -> dict[str, Any]:
    [provider] = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::IAM::OIDCProvider"]
    return provider


def test_roles_are_the_catalogs(cfn: dict[str, Any]) -> None:
    assert set(_roles(cfn)) == set(_catalog_roles()), "one IAM role per role ARN in catalog.toml, no more"
    assert {"adf-ingest", "adf-orders-daily"} <= set(_roles(cfn))


def test_provider_is_the_tenant_issuer_for_the_audience(cfn: dict[str, Any]) -> None:
    provider = _provider(cfn)
    assert provider["Url"] == Tag("Sub", "https://sts.windows.net/${TenantId}/")
    assert provider["ClientIdList"] == [Tag("Ref", "Audience")]
    audiences = {_auth(s).audience for s in _aws_sources()}
    assert audiences == {cfn["Parameters"]["Audience"]["Default"]}


def test_trust_policies_pin_audience_and_subject(cfn: dict[str, Any]) -> None:
    values = _values(cfn)
    issuer = _sub(_provider(cfn)["Url"], values).removeprefix("https://")
    for name, role in _roles(cfn).items():
        policy = json.loads(_sub(role["AssumeRolePolicyDocument"], values))
        [statement] = policy["Statement"]
        assert statement["Effect"] == "Allow", name
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity", name
        assert statement["Principal"] == {"Federated": values["EntraOidcProvider"]}, name
        assert statement["Condition"] == {
            "StringEquals": {
                f"{issuer}:aud": values["Audience"],
                f"{issuer}:sub": values["ManagedIdentityObjectId"],
            }
        }, f"{name}: trust exactly the audience and the app's managed identity"


def test_each_role_invokes_exactly_its_sources(cfn: dict[str, Any]) -> None:
    values = _values(cfn)
    for name, sources in _catalog_roles().items():
        role = _roles(cfn)[name]
        granted = set()
        for policy in role["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                assert statement["Effect"] == "Allow" and statement["Action"] == "execute-api:Invoke", name
                resources = statement["Resource"]
                for resource in resources if isinstance(resources, list) else [resources]:
                    granted.add(_sub(resource, values))
        expected = set()
        for source in sources:
            api, region, stage = _api(source)
            assert region == _auth(source).region, f"{source.name}: base_url region differs from auth.region"
            assert (api, stage) == (values["ApiId"], values["StageName"]), "defaults: the catalog's API"
            resource = f"{api}/{stage}/{source.method}{source.path}"
            expected.add(f"arn:aws:execute-api:{region}:{_account()}:{resource}")
        assert all("*" not in arn for arn in granted), f"{name}: no wildcard on stage, method or path"
        assert granted == expected, f"{name}: invoke exactly the catalog's resources"
        longest = max(_auth(s).session_duration_seconds for s in sources)
        assert role["MaxSessionDuration"] >= longest, f"{name}: STS refuses sessions longer than the role's"


def test_usage_plan_throttles_at_least_what_the_app_may_send(cfn: dict[str, Any]) -> None:
    [plan] = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::UsagePlan"]
    defaults = {name: spec.get("Default") for name, spec in cfn["Parameters"].items()}
    [stage] = plan["ApiStages"]
    assert (stage["ApiId"], stage["Stage"]) == (Tag("Ref", "ApiId"), Tag("Ref", "StageName"))
    limits = {"RateLimit": Tag("Ref", "ThrottleRateLimit"), "BurstLimit": Tag("Ref", "ThrottleBurstLimit")}
    assert plan["Throttle"] == limits
    for source in _aws_sources():
        assert stage["Throttle"][f"{source.path}/{source.method}"] == limits
        # README "Rate limits": a source's bucket is set to the stage's own limit (the activities
        # of one instance share one bucket, and instances find their share from the 429s), so
        # the stage must allow at least what one bucket may send.
        assert defaults["ThrottleRateLimit"] >= source.rate_limit.requests_per_second
        assert defaults["ThrottleBurstLimit"] >= source.rate_limit.burst
