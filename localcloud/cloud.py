"""All three stand-ins wired together the way the deployed app sees the real cloud."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from localcloud.credstore import CredentialStore
from localcloud.datasets import Dataset
from localcloud.gateway import GatewayServer
from localcloud.identity import IdentityServer
from localcloud.sts import StsServer

__all__ = ["LocalCloud"]

ACCOUNT_ID = "123456789012"
AUDIENCE = "api://apigw-adf-bridge"
REGION = "eu-west-1"
INGEST_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/adf-ingest"
ORDERS_DAILY_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/adf-orders-daily"
ORDERS_PATH = "/dev/orders"


class LocalCloud:
    """Managed identity endpoint, STS and API Gateway sharing one credential store.

    STS trusts the identity server's issuer and key; the roles ``adf-ingest`` and
    ``adf-orders-daily`` trust tokens for :attr:`audience`; ``orders`` (next_token,
    3600 records/hour) is published at ``/dev/orders`` with IAM auth, and the gateway's JWT
    authorizer accepts the identity server's tokens for :attr:`audience`.
    """

    account_id = ACCOUNT_ID
    audience = AUDIENCE
    region = REGION
    role_arn = INGEST_ROLE_ARN
    orders_role_arn = ORDERS_DAILY_ROLE_ARN
    orders_path = ORDERS_PATH

    def __init__(self) -> None:
        self.credentials = CredentialStore()
        self.identity = IdentityServer()
        self.sts = StsServer(self.credentials)
        self.gateway = GatewayServer(self.credentials, region=REGION)
        keys = self.identity.signing_key.public_keys()
        self.sts.add_trusted_issuer(self.identity.issuer, keys)
        for role_arn in (INGEST_ROLE_ARN, ORDERS_DAILY_ROLE_ARN):
            self.sts.add_role(role_arn, audiences=[AUDIENCE], issuer=self.identity.issuer)
        self.gateway.configure_jwt(keys, self.identity.issuer, AUDIENCE)
        self.gateway.add_dataset(ORDERS_PATH, Dataset(name="orders", records_per_hour=3600))

    def start(self) -> Self:
        """Start all three servers (stopping any already started if one fails)."""
        try:
            for server in (self.identity, self.sts, self.gateway):
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop all three servers.  Idempotent."""
        for server in (self.gateway, self.sts, self.identity):
            server.stop()

    @property
    def gateway_url(self) -> str:
        """Base URL of the API Gateway, e.g. ``http://127.0.0.1:PORT``."""
        return self.gateway.url

    def env(self) -> dict[str, str]:
        """Environment an app needs to talk to this cloud.

        Never contains AWS access keys or a profile: the app must obtain credentials
        through the identity endpoint and STS, exactly as in Azure.
        """
        return {
            "IDENTITY_ENDPOINT": self.identity.endpoint,
            "IDENTITY_HEADER": self.identity.identity_header,
            "AWS_ENDPOINT_URL_STS": self.sts.url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
