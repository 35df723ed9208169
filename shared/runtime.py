"""Process-wide wiring: settings, catalog, credential cache, pooled HTTP client, landing clients.

Built once per worker process on first use and shared by every activity it runs, so STS calls,
TCP connections and rate-limit buckets are shared too.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import httpx

from shared import __version__
from shared.config.auth import ApiKeyAuth, AwsIamAuth, JwtAuth
from shared.config.catalog import Catalog, Source, load_catalog
from shared.config.settings import Settings
from shared.gateway.auth import ApiKey, BearerToken, GatewayAuth, SigV4
from shared.gateway.client import GatewayClient, RunContext
from shared.gateway.pagination import paginator_for
from shared.gateway.ratelimit import TokenBucket
from shared.identity.secrets import SecretProvider, secrets_from_settings
from shared.identity.sts import CredentialProvider, RoleSession
from shared.landing.blobs import Landing
from shared.landing.storage import blob_service
from shared.observability import otel
from shared.observability.logs import install_redaction

log = logging.getLogger(__name__)

#: What every request to an API says it comes from: this app and version, then the HTTP library.
USER_AGENT = f"apigw-adf-bridge/{__version__} python-httpx/{httpx.__version__}"


@dataclass
class Runtime:
    """Everything an activity needs, built from settings."""

    settings: Settings
    catalog: Catalog
    credentials: CredentialProvider = field(default_factory=CredentialProvider)
    #: Built on first use from SECRETS_PROVIDER / KEY_VAULT_URL; only sources with API keys need it.
    secrets: SecretProvider | None = None
    http: httpx.Client = field(
        default_factory=lambda: httpx.Client(
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            follow_redirects=False,
            # Named in API Gateway's access logs ($context.identity.userAgent) and in WAF rules.
            headers={"user-agent": USER_AGENT},
        )
    )
    _landings: dict[str, Landing] = field(default_factory=dict)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_env(cls) -> Runtime:
        # Every entry point (Functions host, CLI, tests) builds the runtime before any request.
        install_redaction()
        settings = Settings.from_env()
        # Exports to Application Insights only when its connection string is set; once per process.
        otel.ensure_configured(settings.applicationinsights_connection_string)
        return cls(settings=settings, catalog=load_catalog(settings.catalog_path))

    def source(self, name: str) -> Source:
        return self.catalog.get(name, self.settings.environment)

    def landing_for(self, source: Source) -> Landing:
        container = source.output.container or self.settings.landing_container
        with self._lock:
            landing = self._landings.get(container)
            if landing is None:
                connection_string = self.settings.landing_connection_string
                service = blob_service(
                    connection_string,
                    self.settings.landing_account_url,
                    # The one Entra credential of the process: STS and Key Vault use it too.
                    None if connection_string else self.credentials.token_source,
                )
                landing = Landing(service, container, create_container=self.settings.landing_create_container)
                self._landings[container] = landing
            return landing

    def role_session(
        self, source: Source, role_arn: str | None, session_name: str | None
    ) -> RoleSession | None:
        if not isinstance(source.auth, AwsIamAuth):
            return None
        return RoleSession(
            role_arn=role_arn or source.auth.role_arn,
            session_name=session_name or "apigw-adf-bridge",
            audience=source.auth.audience,
            region=source.auth.region,
            duration_seconds=source.auth.session_duration_seconds,
        )

    def prepare(self, source: Source) -> threading.Thread | None:
        """Start building the source's credential clients (CredentialProvider.prepare) on a thread
        of their own, so the first page does not wait for them; the thread, or None when there is
        nothing to build. Network calls (the Entra token, STS) stay with the first request, which
        raises whatever goes wrong: a failure here is only logged."""
        auth = source.auth
        if not isinstance(auth, AwsIamAuth) or self.credentials.prepared(auth.region):
            return None

        def build() -> None:
            try:
                self.credentials.prepare(auth.region)
            except Exception as exc:  # the first request builds them again and says what is wrong
                log.debug("could not prepare credentials for %s: %s", source.name, exc)

        thread = threading.Thread(target=build, name=f"prepare {source.name}", daemon=True)
        thread.start()
        return thread

    def gateway_client(
        self, source: Source, window_params: dict[str, str], run: RunContext, session: RoleSession | None
    ) -> GatewayClient:
        return GatewayClient(
            source,
            paginator_for(source),
            self.http,
            auth=self.gateway_auth(source, session),
            limiter=self.rate_limiter(source),
            run=run,
            window_params=window_params,
        )

    def gateway_auth(self, source: Source, session: RoleSession | None) -> GatewayAuth | None:
        """The source's credentials for its requests; AWS ones are obtained now, before any request."""
        auth = source.auth
        if isinstance(auth, JwtAuth):
            return GatewayAuth(bearer=BearerToken(self.credentials.entra_token, auth.audience))
        if not isinstance(auth, AwsIamAuth | ApiKeyAuth):
            return None
        api_key = ApiKey(self.secret_provider(), auth.api_key_secret) if auth.api_key_secret else None
        session = session or self.role_session(source, None, None)
        sigv4 = None
        if session is not None:
            sigv4 = SigV4(self.credentials.for_session(session), session.region)
        return GatewayAuth(sigv4=sigv4, api_key=api_key)

    def secret_provider(self) -> SecretProvider:
        """The process's secret provider (and its cache), built on first use."""
        with self._lock:
            if self.secrets is None:
                self.secrets = secrets_from_settings(self.settings, self.credentials.token_source)
            return self.secrets

    def rate_limiter(self, source: Source) -> TokenBucket:
        """The source's bucket, shared by every activity running in this worker process."""
        with self._lock:
            bucket = self._buckets.get(source.name)
            if bucket is None:
                limit = source.rate_limit
                bucket = self._buckets[source.name] = TokenBucket(limit.requests_per_second, limit.burst)
            return bucket

    def close(self) -> None:
        self.http.close()


_current: Runtime | None = None
_lock = threading.Lock()


def current() -> Runtime:
    """The worker's runtime, built from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = Runtime.from_env()
        return _current


def reset() -> None:
    """Drop the runtime so the next use re-reads settings (after the environment changed)."""
    global _current
    with _lock:
        if _current is not None:
            _current.close()
        _current = None
