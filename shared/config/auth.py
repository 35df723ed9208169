"""How a source proves who is calling: IAM (SigV4), an API key, an Entra bearer token, or nothing.

A discriminated union on `type`; the catalog names secrets, never their values.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from shared.config.model import Model as _Model
from shared.errors import RequestError

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
# Key Vault's rule for secret names.
KEY_VAULT_NAME = r"^[0-9A-Za-z-]{1,127}$"


class AwsIamAuth(_Model):
    """IAM authorisation: Entra token -> STS AssumeRoleWithWebIdentity -> SigV4 for execute-api.

    With `api_key_secret` the request also carries `x-api-key` (REST APIs with a usage plan),
    signed with the rest. SourceIdentity and session tags cannot be configured here:
    AssumeRoleWithWebIdentity takes them only from the Entra token's claims
    `https://aws.amazon.com/source_identity` and `https://aws.amazon.com/tags`.
    """

    type: Literal["aws_iam"]
    role_arn: str = Field(description="Default role assumed for this source.")
    pipeline_roles: dict[str, str] = Field(
        default_factory=dict, description="ADF pipeline name -> role ARN, so CloudTrail shows who did what."
    )
    require_pipeline_role: bool = Field(False, description="Refuse pipelines without their own role.")
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    audience: str = Field(min_length=1, description="Entra application ID URI the AWS OIDC provider trusts.")
    session_duration_seconds: int = Field(3600, ge=900, le=43200)
    api_key_secret: str | None = Field(
        None,
        pattern=KEY_VAULT_NAME,
        description="Secret (in the secret store) holding an x-api-key to send as well; none if unset.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_client_side_session_claims(cls, data: object) -> object:
        if isinstance(data, dict) and {"source_identity", "session_tags"} & data.keys():
            raise ValueError(
                "source_identity and session_tags cannot be set by the client: AssumeRoleWithWebIdentity "
                "takes them only from the Entra token's claims https://aws.amazon.com/source_identity "
                "and https://aws.amazon.com/tags"
            )
        return data

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str) -> str:
        if not ROLE_ARN.match(value):
            raise ValueError("must be an IAM role ARN like arn:aws:iam::123456789012:role/name")
        return value

    @field_validator("pipeline_roles")
    @classmethod
    def _pipeline_roles(cls, value: dict[str, str]) -> dict[str, str]:
        for pipeline, arn in value.items():
            if not ROLE_ARN.match(arn):
                raise ValueError(f"role for pipeline {pipeline!r} must be an IAM role ARN")
        return value

    def role_for(self, pipeline_name: str | None, source: str) -> str:
        """The role this pipeline runs as; refuses unmapped pipelines when the source requires it."""
        if pipeline_name and pipeline_name in self.pipeline_roles:
            return self.pipeline_roles[pipeline_name]
        if self.require_pipeline_role:
            raise RequestError(
                "pipelineName",
                f"pipeline {pipeline_name!r} has no role mapped for this source and it requires one",
                source=source,
            )
        return self.role_arn


class ApiKeyAuth(_Model):
    """An API key only: `x-api-key` from a secret. The catalog names the secret, never the key."""

    type: Literal["api_key"]
    api_key_secret: str = Field(
        pattern=KEY_VAULT_NAME, description="Secret (in the secret store) holding the x-api-key."
    )


class JwtAuth(_Model):
    """An HTTP API JWT authorizer: the app's Entra access token for `audience` as a bearer token."""

    type: Literal["jwt"]
    audience: str = Field(min_length=1, description="Entra application ID URI the JWT authorizer accepts.")


class NoAuth(_Model):
    """A public API (or one protected only by network rules)."""

    type: Literal["none"]


Auth = Annotated[AwsIamAuth | ApiKeyAuth | JwtAuth | NoAuth, Field(discriminator="type")]
