"""All three stand-ins wired together the way the deployed app sees the real cloud."""

from __future__ import annotations

from typing import Self

from localcloud.credstore import CredentialStore
from localcloud.datasets import Dataset
from localcloud.gateway import GatewayServer
from localcloud.gateway_auth import AuthMode
from localcloud.identity import IdentityServer
from localcloud.keyvault import KeyVaultServer
from localcloud.server import Service
from localcloud.sts import StsServer

__all__ = ["LocalCloud"]

ACCOUNT_ID = "123456789012"
AUDIENCE = "api://apigw-adf-bridge"
REGION = "eu-west-1"
INGEST_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/adf-ingest"
ORDERS_DAILY_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/adf-orders-daily"
ORDERS_PATH = "/dev/orders"


class LocalCloud(Service):
    """Managed identity endpoint, STS and API Gateway sharing one credential store, and Key Vault.

    STS trusts the identity server's issuer and key; the roles ``adf-ingest`` and
    ``adf-orders-daily`` trust tokens for :attr:`audience`; ``orders`` (next_token,
    3600 records/hour) is published at ``/dev/orders`` with IAM auth, and the gateway's JWT
    authorizer accepts the identity server's tokens for :attr:`audience`.  Key Vault lets the
    managed identity (and only it) read secrets.
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
        self.keyvault = KeyVaultServer(
            tenant_id=self.identity.tenant_id,
            issuer=self.identity.issuer,
            public_keys=keys,
            allowed_object_ids=[self.identity.object_id],
        )

    def start(self) -> Self:
        """Start every server (stopping any already started if one fails)."""
        try:
            for server in (self.identity, self.sts, self.gateway, self.keyvault):
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every server.  Idempotent."""
        for server in (self.keyvault, self.gateway, self.sts, self.identity):
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

    def publish_keyed(self, path: str, dataset: Dataset, *, auth: AuthMode, key: str, secret: str) -> None:
        """Publish ``dataset`` behind an API key, handed over as API owners do: the gateway
        accepts exactly ``key`` and Key Vault holds it as ``secret``."""
        self.gateway.add_dataset(path, dataset, auth=auth)
        self.gateway.set_api_keys([key])
        self.keyvault.set_secret(secret, key)

    def rotate_api_key(self, secret: str, new_key: str) -> None:
        """Rotate the key in ``secret`` as an operator does: a new secret version, and the
        gateway accepting the new key instead of the old one from now on."""
        old_key = self.keyvault.value(secret)
        self.keyvault.set_secret(secret, new_key)
        if old_key is not None:
            self.gateway.rotate_api_key(old_key, new_key)

    def keyvault_env(self) -> dict[str, str]:
        """Settings for reading secrets from the Key Vault stand-in: its URL, and its CA as the
        bundle requests (under the Azure SDK) trusts, since the SDK only talks TLS to a vault."""
        return {"KEY_VAULT_URL": self.keyvault.url, "REQUESTS_CA_BUNDLE": str(self.keyvault.ca_bundle)}
