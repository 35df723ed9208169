"""No secret leaves memory: not in logs, errors, durable history, run output or landed blobs.

One successful and two failing runs (an API key the gateway refuses, AWS credentials refused
even after renewal) on a route that takes SigV4 *and* an API key, with every logger at DEBUG.
The secrets searched for are the very ones the runs used: the AWS credentials STS issued, the
Entra tokens the app's credential holds, the API key, and the SigV4 signatures it sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import json
import logging
import re
import subprocess
import time
from typing import Any
from urllib.parse import quote, quote_plus

import azure.functions as func
import httpx
import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus
from azure.storage.blob import BlobServiceClient

from localcloud import Dataset, Fault, LocalCloud
from localcloud.keyvault import VAULT_RESOURCE
from localcloud.stack import orders_source
from shared import api, runtime
from shared.observability.logs import JsonFormatter
from shared.observability.redaction import REDACTED

from fixtures import App, run_python

LOGGERS = ("", "shared", "azure", "msal", "botocore", "boto3", "urllib3", "httpx", "httpcore")
SECRET_NAME = "hygiene-api-key"
API_KEY = "hygiene-k3y-0f-the-usage-plan-2f9c"
PATH = "/dev/orders-hygiene"
SIGNATURE = re.compile(r"Signature=([0-9a-f]{64})")


def record_sent_signatures() -> set[str]:
    """Every SigV4 signature the app's HTTP client sends from now on, read off the requests."""
    signatures: set[str] = set()

    def note(request: httpx.Request) -> None:
        signatures.update(SIGNATURE.findall(request.headers.get("Authorization", "")))

    runtime.current().http.event_hooks["request"].append(note)
    return signatures


def keyed_route(app: App, caplog: pytest.LogCaptureFixture, path: str, key: str) -> float:
    """Every logger at DEBUG, and the orders source moved to a new route taking SigV4 and `key`
    (read from the vault); returns the time just before, from which credentials count as the runs'."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    cloud = app.stack.cloud
    started = time.time()
    cloud.publish_keyed(
        path, Dataset(name=path.removeprefix("/dev/")), auth="aws_iam+api_key", key=key, secret=SECRET_NAME
    )
    source = orders_source(cloud.gateway_url, path=path.removeprefix("/dev"))
    source["auth"]["api_key_secret"] = SECRET_NAME
    app.write_sources(orders=source)
    return started


def secrets_used(cloud: LocalCloud, since: float, api_key: str, sent_signatures: set[str]) -> dict[str, str]:
    """The secrets the runs since `since` held, by name: AWS credentials, Entra tokens, key, signatures."""
    return {
        **aws_credentials_issued_since(cloud, since),
        **entra_tokens_the_app_holds(cloud),
        "the API key": api_key,
        **{f"SigV4 signature {s[:8]}…": s for s in sent_signatures},
    }


def test_no_secret_reaches_logs_errors_history_output_or_blobs(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = app.stack.cloud
    started = keyed_route(app, caplog, PATH, API_KEY)
    sent_signatures = record_sent_signatures()

    landed = app.ingest(pipelineRunId="hygiene-landed")
    cloud.gateway.inject(Fault("expired_credentials", page=2), times=2)
    expired = app.ingest(
        window=("2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"), pipelineRunId="hygiene-expired"
    )
    cloud.gateway.set_api_keys(["a-key-the-app-does-not-have"])
    refused = app.ingest(
        window=("2024-01-01T02:00:00Z", "2024-01-01T03:00:00Z"), pipelineRunId="hygiene-refused"
    )
    assert landed.runtime_status == "Completed", landed.output
    assert expired.runtime_status == "Failed" and "ExpiredTokenException" in expired.output
    assert refused.runtime_status == "Failed" and "ForbiddenException" in refused.output

    secrets = secrets_used(cloud, started, API_KEY, sent_signatures)
    # The search is for something real, in logs that would hold it: botocore at DEBUG logs STS
    # answers and canonical requests.
    assert len(sent_signatures) > 36 and len(secrets) > 40
    assert any(r.name == "botocore.parsers" and r.levelno == logging.DEBUG for r in caplog.records)
    places = {
        "log records": log_text(caplog),
        "run output": json.dumps([i.to_json() for i in (landed, expired, refused)]),
        "durable journal": "\n".join(p.read_text() for p in app.state_dir.rglob("*") if p.is_file()),
        "landed blobs": blob_text(app),
    }
    leaks = [
        f"{kind} in {where}"
        for kind, value in secrets.items()
        for where, text in places.items()
        if value in text
    ]
    assert leaks == [], "\n".join(leaks)


def aws_credentials_issued_since(cloud: LocalCloud, since: float) -> dict[str, str]:
    found: dict[str, str] = {}
    for issued in cloud.credentials.all():
        if issued.issued_at >= since:
            key_id = issued.access_key_id
            found[f"access key id {key_id}"] = key_id
            found[f"secret access key of {key_id}"] = issued.secret_access_key
            found[f"session token of {key_id}"] = issued.session_token
    assert len(found) >= 6, "the failing runs renewed credentials: at least two sets were issued"
    return found


def entra_tokens_the_app_holds(cloud: LocalCloud) -> dict[str, str]:
    """The tokens the app used, from its own credential's cache (asserted: no new token minted)."""
    credential = runtime.current().credentials.token_source
    issued = cloud.identity.tokens_issued
    tokens = {
        f"Entra token for {resource}": credential.get_token(f"{resource}/.default").token
        for resource in (cloud.audience, VAULT_RESOURCE)
    }
    assert cloud.identity.tokens_issued == issued, "these must be the cached tokens the runs used"
    return tokens


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as any handler would render it, with exception texts."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


def blob_text(app: App) -> str:
    """Names, metadata (raw and base64-decoded) and content of every blob the runs wrote."""
    container = BlobServiceClient.from_connection_string(
        app.stack.azurite.connection_string
    ).get_container_client(app.container)
    texts: list[str] = []
    for blob in container.list_blobs(include=["metadata"]):
        texts.append(blob.name)
        for value in (blob.metadata or {}).values():
            texts += [value, _b64_text(value)]
        data = container.download_blob(blob.name).readall()
        texts.append(
            (gzip.decompress(data) if blob.name.endswith(".gz") else data).decode("utf-8", "replace")
        )
    assert any(name.endswith("_manifest.json") for name in texts)
    return "\n".join(texts)


def _b64_text(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


# -- echoed credentials: scrubbed by value, whatever their shape -----------------------------

ECHO_KEY = "plain words key 7 not shaped like any secret"  # no pattern would ever catch this
ECHO_PATH = "/dev/orders-echo"
# Runs the CLI with every logger at DEBUG (the CLI itself goes no lower than INFO with -v).
DEBUG_CLI = (
    "import logging, sys\n"
    "import shared.cli as cli\n"
    "configure = cli.configure_logging\n"
    "def everything(*args, **kwargs):\n"
    "    configure(*args, **kwargs)\n"
    f"    for name in {LOGGERS!r}:\n"
    "        logging.getLogger(name).setLevel(logging.DEBUG)\n"
    "cli.configure_logging = everything\n"
    "sys.exit(cli.main(sys.argv[1:]))\n"
)


def forms_of(value: str) -> dict[str, str]:
    """A secret as a careless service may quote it (computed here, not by the code under test)."""
    raw = value.encode()
    return {
        "raw": value,
        "url-encoded": quote(value, safe=""),
        "form-encoded": quote_plus(value),
        "JSON-escaped": json.dumps(value)[1:-1],
        "base64": base64.b64encode(raw).decode(),
        "urlsafe base64": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


@pytest.fixture
def echoing(cloud: LocalCloud) -> LocalCloud:
    cloud.gateway.echo_credentials = True  # the `cloud` fixture puts it back
    return cloud


def test_credentials_an_api_echoes_are_scrubbed_by_value_in_every_channel(
    app: App, echoing: LocalCloud, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = echoing
    started = keyed_route(app, caplog, ECHO_PATH, ECHO_KEY)
    cloud.gateway.set_api_keys(["a-key-the-app-does-not-have"])  # every request refused, quoted
    sent_signatures = record_sent_signatures()

    refused = app.ingest(pipelineRunId="echo-refused")
    assert refused.runtime_status == "Failed" and "ForbiddenException" in refused.output
    probe_body = asyncio.run(_probe_body())
    status_body = asyncio.run(_status_body(refused))
    clis = {
        fmt: debug_cli(app, fmt, "ingest", "--source", "orders", *SECOND_HOUR) for fmt in ("text", "json")
    }
    for fmt, result in clis.items():
        assert result.returncode != 0 and "ForbiddenException" in result.stderr, (fmt, result.stderr)
    # The echo is real: the gateway quoted the key it refused in every answer.
    assert cloud.gateway.count(status=403, path=ECHO_PATH) >= 3

    secrets = secrets_used(cloud, started, ECHO_KEY, sent_signatures)
    json_formatter = JsonFormatter()
    places = {
        "log records (text)": log_text(caplog),
        "log records (json)": "\n".join(json_formatter.format(r) for r in caplog.records),
        "run output": json.dumps(refused.to_json()),
        "durable journal": "\n".join(p.read_text() for p in app.state_dir.rglob("*") if p.is_file()),
        "GET /api/runs body": status_body,
        "probe body": probe_body,
        "CLI stderr (text)": clis["text"].stderr,
        "CLI stderr (json)": clis["json"].stderr,
        "CLI stdout": clis["text"].stdout + clis["json"].stdout,
    }
    assert "Invalid credentials" not in probe_body or REDACTED in probe_body
    leaks = [
        f"{kind} ({form}) in {where}"
        for kind, value in secrets.items()
        for form, text_form in forms_of(value).items()
        for where, text in places.items()
        if text_form in text
    ]
    assert leaks == [], "\n".join(leaks)
    # The scrubbed text still says what happened.
    assert "ForbiddenException" in status_body and REDACTED in status_body


SECOND_HOUR = ("--from", "2024-01-01T01:00:00Z", "--to", "2024-01-01T02:00:00Z")


def debug_cli(app: App, log_format: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as its own process with -v, every logger at DEBUG, in the given LOG_FORMAT."""
    return run_python("-c", DEBUG_CLI, "-v", *args, env={**app._process_env(), "LOG_FORMAT": log_format})


async def _probe_body() -> str:
    request = func.HttpRequest(
        method="POST",
        url="http://localhost/api/probe",
        body=json.dumps({"source": "orders"}).encode(),
        headers={"x-functions-key": "a-function-key-for-the-probe"},
    )
    return api.run_probe(request).get_body().decode()


async def _status_body(instance: Any) -> str:
    """GET /api/runs/{id} over a Durable client answering with the failed run's journal entry."""

    class Status:
        runtime_status = OrchestrationRuntimeStatus.Failed
        output = instance.output
        custom_status = None

    class Client:
        async def get_status(self, instance_id: str) -> Status:
            return Status()

    request = func.HttpRequest(
        method="GET",
        url=f"http://localhost/api/runs/{instance.instance_id}",
        body=b"",
        route_params={"id": instance.instance_id},
        params={"report": "always"},
    )
    response = await api.run_status(request, Client())  # type: ignore[arg-type]
    return response.get_body().decode()
