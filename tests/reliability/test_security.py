"""Who may call what, and what production refuses to run with."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config.catalog import load_catalog
from shared.config.settings import Settings
from shared.errors import ConfigError

PROD = {"APP_ENVIRONMENT": "prod", "LANDING_ACCOUNT_URL": "https://acct.blob.core.windows.net"}


def test_every_route_but_health_requires_a_function_key() -> None:
    import function_app  # noqa: F401 - indexed by the suite's function-app tests; read the builders here
    from function_app import app

    routes = {}
    for builder in app._function_builders:
        function = builder._function
        for binding in function.get_bindings():
            if binding.type == "httpTrigger":
                routes[function.get_function_name()] = str(binding.auth_level).lower()
    assert routes.pop("health").endswith("anonymous")
    assert routes and all(level.endswith("function") for level in routes.values()), routes


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"LANDING_CONNECTION_STRING": "UseDevelopmentStorage=true"},
            "LANDING_CONNECTION_STRING is for local runs",
        ),
        ({"SECRETS_PROVIDER": "env"}, "SECRETS_PROVIDER=env is for local runs"),
        ({"LANDING_ACCOUNT_URL": "http://127.0.0.1:10000/devstoreaccount1"}, "must be https in prod"),
        ({"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:4566"}, "AWS_ENDPOINT_URL_STS must be https in prod"),
    ],
)
def test_production_refuses_local_only_settings(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**PROD, **extra})


def test_production_settings_with_identities_only_are_accepted() -> None:
    settings = Settings.from_env({**PROD, "AWS_ENDPOINT_URL_STS": "https://sts.eu-west-1.amazonaws.com"})
    assert settings.environment.value == "prod"


def test_a_prod_source_over_plain_http_is_refused(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        '[sources.orders]\nenvironment = "prod"\nbase_url = "http://10.0.0.5/prod"\npath = "/orders"\n'
        'auth = { type = "none" }\n'
    )
    with pytest.raises(ConfigError, match="base_url must be https for a prod source"):
        load_catalog(catalog)


@pytest.mark.parametrize("name", ["../etc", "orders/../../x", "Orders", "a" * 70, "orders%2F..", ""])
def test_path_traversal_in_source_names_is_refused(tmp_path: Path, name: str) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[sources."{name}"]\nenvironment = "dev"\nbase_url = "https://a.example"\npath = "/x"\n'
        'auth = { type = "none" }\n'
    )
    with pytest.raises(ConfigError, match="blob path"):
        load_catalog(catalog)
