"""App settings: every one documented for local runs, bad values named by variable."""

from __future__ import annotations

import json

import pytest

from shared.config.settings import APP_ROOT, Settings
from shared.errors import ConfigError


def test_local_settings_example_lists_every_setting_the_app_reads() -> None:
    values = json.loads((APP_ROOT / "local.settings.example.json").read_text())["Values"]
    missing = [field.alias for field in Settings.model_fields.values() if field.alias not in values]
    assert missing == []
    # Safe local values: the example itself is a valid local configuration.
    settings = Settings.from_env({k: v for k, v in values.items() if v})
    assert settings.environment.value == "dev"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"APP_ENVIRONMENT": "production", "LANDING_CONNECTION_STRING": "x"}, "APP_ENVIRONMENT"),
        (
            {"LANDING_CONNECTION_STRING": "x", "LANDING_CREATE_CONTAINER": "perhaps"},
            "LANDING_CREATE_CONTAINER",
        ),
        ({}, "LANDING_CONNECTION_STRING"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)
