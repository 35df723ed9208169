"""AWS credentials the way the app gets them: managed-identity token, then STS web identity.

Used by bench/ceiling.py (inside its own process, whose environment is the stack's app env)
and by bench/throughput.py (to hand the dlt peer the same kind of temporary credentials).
Not run on its own.  Nothing here prints or logs a credential.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import boto3
import botocore
from botocore.config import Config
from botocore.credentials import Credentials

# Environment variables under which the peer process receives its temporary credentials.
# Not the standard AWS_* names, so no library in that process picks them up by itself.
PEER_ACCESS_KEY = "BENCH_AWS_ACCESS_KEY_ID"
PEER_SECRET_KEY = "BENCH_AWS_SECRET_ACCESS_KEY"  # noqa: S105 (a variable name)
PEER_SESSION_TOKEN = "BENCH_AWS_SESSION_TOKEN"  # noqa: S105 (a variable name)


def assume_role(role_arn: str, audience: str, region: str, session_name: str) -> Credentials:
    """Entra token from the managed-identity endpoint (IDENTITY_ENDPOINT/IDENTITY_HEADER in
    os.environ), exchanged at STS (AWS_ENDPOINT_URL_STS) by an unsigned boto3 client."""
    from azure.identity import ManagedIdentityCredential

    token = ManagedIdentityCredential().get_token(f"{audience}/.default").token
    sts = boto3.session.Session().client(
        "sts", region_name=region, config=Config(signature_version=botocore.UNSIGNED)
    )
    answer = sts.assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName=session_name, WebIdentityToken=token, DurationSeconds=3600
    )
    creds = answer["Credentials"]
    return Credentials(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])


@contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """Temporarily set environment variables in this process (restored afterwards)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def peer_env(credentials: Credentials) -> dict[str, str]:
    """The variables bench/peer_dlt.py reads its temporary credentials from."""
    return {
        PEER_ACCESS_KEY: credentials.access_key,
        PEER_SECRET_KEY: credentials.secret_key,
        PEER_SESSION_TOKEN: credentials.token or "",
    }
