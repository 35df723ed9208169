"""Every way the catalog can authenticate to API Gateway, against routes that demand it.

The gateway stand-in enforces each mode as API Gateway does; API keys are read from the Key
Vault stand-in through the real SecretClient (or from the environment for local runs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud import Dataset, LocalCloud
from localcloud.gateway_auth import AuthMode
from localcloud.server import LocalServer, Request, Response
from localcloud.stack import catalog_toml, orders_source
from shared import runtime
from shared.config.catalog import load_catalog
from shared.errors import ConfigError
from shared.identity.secrets import env_variable_for
from shared.landing.verify import read_records

from fixtures import HOUR, App

SECRET = "orders-api-key"
KEY = "k3y-0f-the-usage-plan"
PATH = "/dev/orders-auth"


IAM: dict[str, Any] = {
    "type": "aws_iam",
    "role_arn": LocalCloud.role_arn,
    "region": LocalCloud.region,
    "audience": LocalCloud.audience,
}


def configure(
    app: App, mode: AuthMode, catalog_auth: dict[str, Any], dataset: Dataset | None = None, **source: Any
) -> None:
    """Publish orders data at PATH behind `mode` and point the `orders` source at it."""
    cloud = app.stack.cloud
    cloud.publish_keyed(PATH, dataset or Dataset(name="orders-auth"), auth=mode, key=KEY, secret=SECRET)
    body = orders_source(cloud.gateway_url, path=PATH.removeprefix("/dev"), **source)
    body["auth"] = catalog_auth
    app.write_sources(orders=body)


MODES: dict[str, tuple[AuthMode, dict[str, Any]]] = {
    "aws_iam": ("aws_iam", IAM),
    "aws_iam + api_key": ("aws_iam+api_key", {**IAM, "api_key_secret": SECRET}),
    "api_key": ("api_key", {"type": "api_key", "api_key_secret": SECRET}),
    "jwt": ("jwt", {"type": "jwt", "audience": "api://apigw-adf-bridge"}),
    "none": ("none", {"type": "none"}),
}


@pytest.mark.parametrize("name", list(MODES))
def test_each_auth_mode_lands_the_window_with_only_the_credentials_it_needs(app: App, name: str) -> None:
    mode, catalog_auth = MODES[name]
    configure(app, mode, catalog_auth)
    cloud = app.stack.cloud
    sts_before, reads_before = cloud.sts.call_count, cloud.keyvault.reads(SECRET)
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    ids = Counter(r["id"] for r in read_records(app.landing, instance.output["prefix"]))
    assert set(ids) == cloud.gateway.expected_ids(PATH, *HOUR) and max(ids.values()) == 1
    requests = cloud.gateway.requests
    signed, keyed = "aws_iam" in mode, "api_key" in mode
    assert {r.access_key_id is not None for r in requests} == {signed}
    assert {r.api_key_present for r in requests} == {keyed}
    assert cloud.sts.call_count - sts_before == int(signed)
    # 36 keyed requests, one Key Vault read: the key is cached.
    assert cloud.keyvault.reads(SECRET) - reads_before == int(keyed)


def test_a_refused_key_that_was_not_rotated_fails_once_saying_what_to_check(app: App) -> None:
    configure(app, "api_key", MODES["api_key"][1])
    app.stack.cloud.gateway.set_api_keys(["the-key-the-api-really-wants"])
    instance = app.ingest()
    assert instance.runtime_status == "Failed"
    assert "HTTP 403 ForbiddenException" in instance.output
    assert f"API key from secret '{SECRET}', also after the secret was read again" in instance.output
    # The secret was re-read, still held the refused key, so the request was not sent again.
    assert app.stack.cloud.gateway.count(status=403) == 1


def test_a_jwt_audience_the_authorizer_does_not_accept_fails_clearly(app: App) -> None:
    configure(app, "jwt", {"type": "jwt", "audience": "api://another-app"})
    instance = app.ingest()
    assert instance.runtime_status == "Failed"
    assert "HTTP 401 UnauthorizedException" in instance.output
    assert "JWT authorizer refused the Entra token for audience 'api://another-app'" in instance.output


def test_a_missing_secret_fails_naming_the_secret_and_the_vault_before_any_request(app: App) -> None:
    configure(app, "api_key", {"type": "api_key", "api_key_secret": "no-such-secret"})
    instance = app.ingest()
    assert instance.runtime_status == "Failed"
    assert (
        f"secret 'no-such-secret' in Key Vault {app.stack.cloud.keyvault.url} does not exist"
        in instance.output
    )
    assert app.stack.cloud.gateway.requests == []


def test_local_runs_read_the_key_from_the_environment(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(app, "api_key", MODES["api_key"][1])
    reads_before = app.stack.cloud.keyvault.reads(SECRET)
    monkeypatch.setenv("SECRETS_PROVIDER", "env")  # undone after the test, unlike App.set_env
    monkeypatch.setenv(env_variable_for(SECRET), KEY)
    runtime.reset()
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    assert app.stack.cloud.keyvault.reads(SECRET) == reads_before


class _Recorder(LocalServer):
    """Another origin on this machine, noting every request that reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Request] = []

    def handle(self, request: Request) -> Response:
        self.received.append(request)
        return Response(200, b"{}")


@pytest.fixture
def elsewhere() -> Iterator[_Recorder]:
    with _Recorder() as recorder:
        yield recorder


def test_keyed_requests_never_follow_a_next_link_off_the_sources_origin(
    app: App, elsewhere: _Recorder
) -> None:
    foreign = Dataset(name="orders-auth", pagination="next_url", foreign_next_url=f"{elsewhere.url}/dev/x")
    next_url = {"type": "next_url", "records_path": "data", "next_url_path": "links.next"}
    configure(app, "aws_iam+api_key", MODES["aws_iam + api_key"][1], foreign, pagination=next_url)
    instance = app.ingest()
    assert instance.runtime_status == "Failed"
    assert "UnsafeUrlError" in instance.output and elsewhere.url.removeprefix("http://") in instance.output
    assert elsewhere.received == []


@pytest.mark.parametrize(
    ("auth", "complaint"),
    [
        ({"type": "api_key", "api_key_secret": SECRET, "api_key": KEY}, "Extra inputs are not permitted"),
        ({"type": "api_key", "api_key_secret": "orders_api_key"}, "should match pattern"),
        ({**IAM, "source_identity": "adf"}, "takes them only from the Entra token's claims"),
    ],
)
def test_keys_and_client_side_session_claims_cannot_be_put_in_the_catalog(
    tmp_path: Path, auth: dict[str, Any], complaint: str
) -> None:
    source = orders_source("https://abc.execute-api.eu-west-1.amazonaws.com")
    source["auth"] = auth
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(catalog_toml({"orders": source}))
    with pytest.raises(ConfigError, match="source 'orders' field auth") as refused:
        load_catalog(catalog)
    assert complaint in str(refused.value)
    assert KEY not in str(refused.value)
