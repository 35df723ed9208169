"""Azure Key Vault's secrets data plane (``GET /secrets/{name}``), over HTTPS, with challenge auth.

azure-keyvault-secrets' ``SecretClient`` talks to it unmodified: its first request carries no
token; the 401 answer's ``WWW-Authenticate`` challenge names the tenant and the resource; the
client gets a token for ``https://vault.azure.net/.default`` from its credential (here the
managed identity stand-in) and sends the request again.  The SDK refuses to send bearer tokens
over plain http, so this stand-in serves TLS with a certificate from a throwaway CA whose PEM
file is :attr:`KeyVaultServer.ca_bundle` (clients trust it through ``REQUESTS_CA_BUNDLE``).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localcloud.server import LocalServer, Request, Response, json_response
from localcloud.tokens import TokenError, decode_verified

__all__ = ["VAULT_RESOURCE", "KeyVaultServer"]

#: The resource Key Vault tokens are issued for (``aud``), as Key Vault's challenge names it.
VAULT_RESOURCE = "https://vault.azure.net"
_SECRET_PATH = re.compile(r"/secrets/([0-9A-Za-z-]{1,127})(?:/([0-9a-f]{32})?)?")


@dataclass(frozen=True)
class _Version:
    version: str
    value: str
    created: int


class KeyVaultServer(LocalServer):
    """Key Vault stand-in holding versioned secrets, readable by tokens of one tenant.

    Tokens must be signed by ``public_keys``, issued by ``issuer`` for :data:`VAULT_RESOURCE`
    in ``tenant_id``.  ``allowed_object_ids`` (a plain attribute, read per request) models the
    vault's access policy: ``None`` lets every identity of the tenant read, otherwise only
    those object ids (others get 403 ``Forbidden``).
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        issuer: str,
        public_keys: Mapping[str, RSAPublicKey],
        allowed_object_ids: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        self.tenant_id = tenant_id
        self.issuer = issuer
        self.public_keys = dict(public_keys)
        self.allowed_object_ids = None if allowed_object_ids is None else set(allowed_object_ids)
        self._lock = threading.Lock()
        self._secrets: dict[str, list[_Version]] = {}
        self._reads: Counter[str] = Counter()
        self._tls_dir: Path | None = None

    # -- lifecycle: TLS on top of the plain LocalServer ------------------------------------

    def start(self) -> Self:
        """Create a CA and a server certificate for 127.0.0.1, then serve HTTPS."""
        self._tls_dir = Path(tempfile.mkdtemp(prefix="localcloud-keyvault-"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*_write_tls_material(self._tls_dir))
        super().start()
        httpd = self._httpd
        if httpd is None:  # super().start() either sets it or raises
            raise RuntimeError("server did not start")
        # Same file descriptor, now speaking TLS; nothing has connected yet (start() has not
        # returned the address to anyone).  Handshakes happen in the handler threads.
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        return self

    def stop(self) -> None:
        """Stop serving and delete the TLS material.  Idempotent."""
        super().stop()
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir = None

    @property
    def url(self) -> str:
        """The vault URL, ``https://127.0.0.1:<port>`` (only while running)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_bundle(self) -> Path:
        """PEM file of the CA that issued the server certificate (only while running)."""
        if self._tls_dir is None:
            raise RuntimeError("KeyVaultServer is not running")
        return self._tls_dir / "ca.pem"

    # -- secrets ---------------------------------------------------------------------------

    def set_secret(self, name: str, value: str) -> str:
        """Add a new current version of ``name`` (creating the secret); returns the version id."""
        version = _Version(uuid.uuid4().hex, value, int(time.time()))
        with self._lock:
            self._secrets.setdefault(name, []).append(version)
        return version.version

    def value(self, name: str) -> str | None:
        """The current value of ``name``, or ``None`` when there is no such secret."""
        with self._lock:
            versions = self._secrets.get(name)
            return versions[-1].value if versions else None

    def delete_secret(self, name: str) -> None:
        """Remove ``name`` and all its versions (reads then get 404)."""
        with self._lock:
            self._secrets.pop(name, None)

    def reads(self, name: str) -> int:
        """How many authorised reads of ``name`` were answered (found or not)."""
        with self._lock:
            return self._reads[name]

    # -- request handling ----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer ``GET /secrets/{name}[/{version}]?api-version=...`` as Key Vault does."""
        match = _SECRET_PATH.fullmatch(request.path)
        if request.method != "GET" or match is None:
            return _error(404, "NotFound", "The requested resource does not exist in this stand-in.")
        if not request.params().get("api-version"):
            return _error(400, "BadParameter", "The request is missing the api-version query parameter.")
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        try:
            claims = decode_verified(
                token.strip(), self.public_keys, issuer=self.issuer, audience=VAULT_RESOURCE
            )
        except TokenError as error:
            return self._challenge(f"AKV10032: Invalid token: {error}")
        if claims.get("tid") != self.tenant_id:
            return self._challenge("AKV10032: Invalid issuer for this vault's tenant.")
        allowed = self.allowed_object_ids
        if allowed is not None and claims.get("oid") not in allowed:
            return _error(
                403,
                "Forbidden",
                f"The user, group or application 'appid={claims.get('appid')};oid={claims.get('oid')}' "
                "does not have secrets get permission on this key vault.",
            )
        name, version = match[1], match[2]
        with self._lock:
            self._reads[name] += 1
            versions = self._secrets.get(name, [])
        found = next((v for v in reversed(versions) if version in (None, v.version)), None)
        if found is None:
            return _error(
                404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
            )
        return json_response(200, self._bundle(name, found))

    def _bundle(self, name: str, version: _Version) -> dict[str, Any]:
        return {
            "value": version.value,
            "id": f"{self.url}/secrets/{name}/{version.version}",
            "attributes": {
                "enabled": True,
                "created": version.created,
                "updated": version.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": {},
        }

    def _challenge(self, message: str) -> Response:
        # Every 401 carries the challenge: it is how the SDK learns the tenant and resource.
        challenge = (
            f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
            f'resource="{VAULT_RESOURCE}"'
        )
        response = _error(401, "Unauthorized", message)
        response.headers.append(("WWW-Authenticate", challenge))
        return response


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}})


def _write_tls_material(directory: Path) -> tuple[Path, Path]:
    """A CA (``ca.pem``) and a server certificate for 127.0.0.1/localhost it signed; returns
    ``(certificate chain file, key file)`` for ``SSLContext.load_cert_chain``."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())  # EC: key generation in microseconds
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localcloud Key Vault test CA")])
    ca_cert = (
        _certificate(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server_cert = (
        _certificate(server_name, ca_name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    chain, key_file = directory / "server.pem", directory / "server.key"
    chain.write_bytes(server_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return chain, key_file


def _certificate(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    # KeyUsage takes all nine bits by keyword. Only these three tell the CA (signs certificates)
    # from the server (signs handshakes); neither sets any of the other six.
    unset = ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement")
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        **dict.fromkeys((*unset, "encipher_only", "decipher_only"), False),
    )
