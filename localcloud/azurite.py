"""Azurite (the Azure Storage emulator from npm) as a child process on free 127.0.0.1 ports.

Blob only by default (all the app itself uses); with queue and table too for the Functions
host, whose Durable extension keeps its task hub in all three (`localcloud up`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from localcloud.server import Service

REPO_ROOT = Path(__file__).resolve().parent.parent
# Azurite's documented, public development account; it guards nothing.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_STARTUP_SECONDS = 30.0
SERVICES = ("blob", "queue", "table")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def azurite_binary(name: str = "azurite-blob") -> Path:
    """An Azurite launcher installed by `npm ci` (see package.json): azurite-blob or azurite."""
    binary = REPO_ROOT / "node_modules" / ".bin" / name
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: run `npm ci` in {REPO_ROOT} (make test/demo do)")
    return binary


class Azurite(Service):
    """Start, stop and restart an Azurite whose data survives restarts in `location`."""

    def __init__(self, location: Path | None = None, services: tuple[str, ...] = ("blob",)) -> None:
        unknown = set(services) - set(SERVICES)
        if unknown or "blob" not in services:
            raise ValueError(f"services must include blob and be among {SERVICES}, not {services}")
        self._own_location = location is None
        self.location = location or Path(tempfile.mkdtemp(prefix="azurite-"))
        self.ports = {service: free_port() for service in SERVICES if service in services}
        self.port = self.ports["blob"]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        """An explicit connection string naming each running service's endpoint."""
        endpoints = "".join(
            f"{service.capitalize()}Endpoint=http://127.0.0.1:{port}/{ACCOUNT};"
            for service, port in self.ports.items()
        )
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};{endpoints}"

    def start(self) -> Self:
        if self._process is not None:
            return self
        log = open(self.location / "azurite.log", "ab")  # noqa: SIM115 - lives as long as the process
        binary = azurite_binary("azurite-blob" if list(self.ports) == ["blob"] else "azurite")
        listen = [
            arg
            for service, port in self.ports.items()
            for arg in (f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port))
        ]
        self._process = subprocess.Popen(
            [
                str(binary),
                *listen,
                "--location",
                str(self.location),
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                # Azurite reports usage to Microsoft unless told not to; nothing leaves 127.0.0.1.
                "--disableTelemetry",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _STARTUP_SECONDS
        waiting = list(self.ports.values())
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"azurite exited with {self._process.returncode}; see {self.location / 'azurite.log'}"
                )
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5):
                    waiting.pop(0)
                    if not waiting:
                        return
            except OSError:
                time.sleep(0.05)  # polling a port that is not bound yet; there is nothing to wait on
        self.stop()
        raise RuntimeError(f"azurite did not listen on ports {waiting} within {_STARTUP_SECONDS:.0f}s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # Azurite shuts down cleanly (flushing its metadata store) on SIGINT, not SIGTERM; it
        # then waits for clients' idle keep-alive connections, which we do not wait out.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Stop and remove the data directory if this object created it."""
        self.stop()
        if self._own_location:
            shutil.rmtree(self.location, ignore_errors=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Leaving the block ends this Azurite for good; stop() alone keeps the data for a restart.
        self.close()
