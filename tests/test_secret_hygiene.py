"""No secret leaves memory: not in logs, errors, durable history, run output or landed blobs.

One successful and two failing runs (an API key the gateway refuses, AWS credentials refused
even after renewal) on a route that takes SigV4 *and* an API key, with every logger at DEBUG.
The secrets searched for are the very ones the runs used: the AWS credentials STS issued, the
Entra tokens the app's credential holds, the API key, and the SigV4 signatures it sent.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import logging
import re
import time

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from localcloud import Dataset, Fault, LocalCloud
from localcloud.keyvault import VAULT_RESOURCE
from localcloud.stack import orders_source
from shared import runtime

from fixtures import App

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


def test_no_secret_reaches_logs_errors_history_output_or_blobs(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    cloud = app.stack.cloud
    started = time.time()
    cloud.publish_keyed(
        PATH, Dataset(name="orders-hygiene"), auth="aws_iam+api_key", key=API_KEY, secret=SECRET_NAME
    )
    source = orders_source(cloud.gateway_url, path=PATH.removeprefix("/dev"))
    source["auth"]["api_key_secret"] = SECRET_NAME
    app.write_sources(orders=source)
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

    secrets = {
        **aws_credentials_issued_since(cloud, started),
        **entra_tokens_the_app_holds(cloud),
        "the API key": API_KEY,
        **{f"SigV4 signature {s[:8]}…": s for s in sent_signatures},
    }
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
