from __future__ import annotations

from pathlib import Path

import pytest

from shared.config.catalog import load_catalog
from shared.config.settings import APP_ROOT, Environment
from shared.errors import ConfigError, RequestError

VALID = """
[sources.orders]
environment = "dev"
base_url = "https://abc.execute-api.eu-west-1.amazonaws.com/dev/"
path = "/orders"
[sources.orders.auth]
type = "aws_iam"
role_arn = "arn:aws:iam::123456789012:role/adf-ingest"
region = "eu-west-1"
audience = "api://apigw-adf-bridge"
pipeline_roles = { "pl_daily" = "arn:aws:iam::123456789012:role/adf-daily" }
require_pipeline_role = false

[sources.public]
environment = "prod"
base_url = "https://example.org"
path = "/feed"
auth = { type = "none" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


def test_shipped_catalog_is_valid() -> None:
    catalog = load_catalog(APP_ROOT / "catalog.toml")
    assert "orders" in catalog.sources


def test_valid_catalog_normalises_base_url_and_names_sources(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, VALID))
    orders = catalog.get("orders", Environment.dev)
    assert orders.name == "orders"
    assert orders.endpoint == "https://abc.execute-api.eu-west-1.amazonaws.com/dev/orders"
    assert orders.origin == ("https", "abc.execute-api.eu-west-1.amazonaws.com", 443)


def test_a_base_url_carrying_credentials_is_refused_without_repeating_them(tmp_path: Path) -> None:
    url = 'base_url = "https://abc.execute-api.eu-west-1.amazonaws.com/dev/"'
    path = write(tmp_path, VALID.replace(url, 'base_url = "https://reader:s3cr3t-pw@abc.example.com/dev"'))
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    message = str(caught.value)
    assert "base_url" in message and "user:password@" in message and "orders" in message
    assert "s3cr3t-pw" not in message


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('role_arn = "arn:aws:iam::123456789012:role/adf-ingest"', 'role_arn = "adf-ingest"', "auth"),
        ('region = "eu-west-1"', 'region = "Ireland"', "region"),
        ('path = "/orders"', 'path = "orders"', "field path"),
        (
            'base_url = "https://abc.execute-api.eu-west-1.amazonaws.com/dev/"',
            'base_url = "ftp://x"',
            "base_url",
        ),
        ('audience = "api://apigw-adf-bridge"\n', "", "audience"),
        ("[sources.orders]", "[sources.Orders]", "lowercase"),
    ],
)
def test_invalid_catalog_names_file_source_and_field(
    tmp_path: Path, replace: str, by: str, expected: str
) -> None:
    path = write(tmp_path, VALID.replace(replace, by))
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    message = str(caught.value)
    assert str(path) in message
    assert "source 'orders'" in message or "source 'Orders'" in message
    assert expected in message


def test_an_activity_that_could_outlast_the_function_timeout_is_refused(tmp_path: Path) -> None:
    fits = VALID + "[sources.orders.output]\nactivity_seconds = 420\n"
    assert load_catalog(write(tmp_path, fits)).sources["orders"].output.activity_seconds == 420
    with pytest.raises(ConfigError) as caught:
        load_catalog(write(tmp_path, fits.replace("= 420", "= 500")))
    message = str(caught.value)
    assert "source 'orders'" in message
    assert "output.activity_seconds (500) + retry.max_elapsed_seconds (120) = 620 s" in message
    assert "host.json functionTimeout" in message and "under 540 s" in message


def test_unknown_field_is_refused_not_ignored(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rate_limt"):
        load_catalog(write(tmp_path, VALID + "\n[sources.orders.rate_limt]\nrequests_per_second = 5\n"))


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[sources.orders\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_catalog(path)


def test_missing_catalog_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SOURCE_CATALOG_PATH"):
        load_catalog(tmp_path / "nope.toml")


def test_source_for_another_environment_is_refused(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, VALID))
    with pytest.raises(RequestError) as caught:
        catalog.get("public", Environment.dev)
    assert caught.value.field == "source"
    assert "labelled 'prod'" in caught.value.reason


def test_unknown_source_lists_the_known_ones(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, VALID))
    with pytest.raises(RequestError, match=r"unknown source 'nope' \(known: orders, public\)"):
        catalog.get("nope", Environment.dev)


def test_pipeline_role_mapping(tmp_path: Path) -> None:
    auth = load_catalog(write(tmp_path, VALID)).sources["orders"].auth
    assert auth.type == "aws_iam"
    assert auth.role_for("pl_daily", "orders").endswith("role/adf-daily")
    assert auth.role_for("pl_other", "orders").endswith("role/adf-ingest")
    strict = load_catalog(
        write(tmp_path, VALID.replace("require_pipeline_role = false", "require_pipeline_role = true"))
    )
    strict_auth = strict.sources["orders"].auth
    assert strict_auth.type == "aws_iam"
    with pytest.raises(RequestError, match="pipelineName"):
        strict_auth.role_for("pl_other", "orders")
