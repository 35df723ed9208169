"""HTTP stand-ins for the cloud side of apigw-adf-bridge, for tests and demos only.

Each server listens on ``127.0.0.1`` on a free port, runs in a background thread, and
validates requests the way the real service does:

* :class:`IdentityServer` -- Azure App Service managed identity endpoint (RS256 JWTs).
* :class:`StsServer` -- AWS STS ``AssumeRoleWithWebIdentity``.
* :class:`GatewayServer` -- AWS API Gateway with SigV4/API-key/JWT auth, paged synthetic
  datasets, throttling and fault injection.
* :class:`LocalCloud` -- all three wired together.

Production code must never import this package.
"""

from __future__ import annotations

from localcloud.cloud import LocalCloud
from localcloud.credstore import CredentialStore, IssuedCredentials
from localcloud.datasets import Dataset
from localcloud.faults import Fault
from localcloud.gateway import GatewayServer
from localcloud.gateway_auth import JwtSettings
from localcloud.identity import IdentityServer
from localcloud.observe import RequestRecord
from localcloud.sts import StsCall, StsServer
from localcloud.tokens import SigningKey

__all__ = [
    "CredentialStore",
    "Dataset",
    "Fault",
    "GatewayServer",
    "IdentityServer",
    "IssuedCredentials",
    "JwtSettings",
    "LocalCloud",
    "RequestRecord",
    "SigningKey",
    "StsCall",
    "StsServer",
]
