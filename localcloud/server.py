"""A minimal in-process HTTP server base shared by the local cloud stand-ins.

Each stand-in subclasses :class:`LocalServer` and implements :meth:`LocalServer.handle`,
a pure function from :class:`Request` to :class:`Response`.  This module owns everything
about sockets and threads so the stand-ins contain only service behaviour.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

__all__ = ["LocalServer", "Request", "Response", "Service", "json_response"]

# How often serve_forever() checks for shutdown; the default 0.5 s would make every
# stop() in the test suite take half a second.
_POLL_INTERVAL_SECONDS = 0.02


@dataclass(frozen=True)
class Request:
    """One HTTP request exactly as it arrived (path and query still percent-encoded)."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or ``None``."""
        return _first_header(self.headers, name)

    def params(self) -> dict[str, str]:
        """Decoded query parameters; for a repeated key the first value wins."""
        params: dict[str, str] = {}
        for key, value in parse_qsl(self.query, keep_blank_values=True):
            params.setdefault(key, value)
        return params


@dataclass
class Response:
    """What a stand-in wants written back, including deliberate wire-level misbehaviour.

    ``declared_length`` lets a fault announce more bytes than it sends (the connection is
    then closed so the client sees a short body); ``reset_after`` sends that many body
    bytes and then aborts the TCP connection with an RST.
    """

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    declared_length: int | None = None
    reset_after: int | None = None
    #: Send the body one byte every this many milliseconds (a drip), when set.
    drip_ms: float | None = None

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or ``None``."""
        return _first_header(self.headers, name)


def _first_header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers if key.lower() == wanted), None)


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """Build a JSON response with compact separators, as AWS and Azure services send."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, [("Content-Type", "application/json"), *headers])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without TCP_NODELAY every keep-alive response waits for the client's delayed ACK
    # (~40 ms on Linux), which makes page-heavy tests and benchmarks meaningless.
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_GET(self) -> None:  # name fixed by BaseHTTPRequestHandler
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default one-line-per-request stderr log."""

    def _dispatch(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # Neither botocore nor httpx chunk small bodies; refusing keeps body handling simple.
            self._write(json_response(411, {"message": "Length Required"}))
            self.close_connection = True
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=path,
            query=query,
            headers=tuple(self.headers.items()),
            body=self.rfile.read(length) if length else b"",
        )
        try:
            response = self.server.owner.handle(request)
        except Exception:
            # A bug in a stand-in must be loud, but the client still gets a well-formed 500.
            traceback.print_exc(file=sys.stderr)
            response = json_response(500, {"message": "Internal server error (local stand-in bug)"})
        self._write(response)

    def _write(self, response: Response) -> None:
        body = response.body
        declared = len(body) if response.declared_length is None else response.declared_length
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        if response.reset_after is not None:
            self.wfile.write(body[: response.reset_after])
            self._abort_connection()
            return
        if response.drip_ms is not None:
            for index in range(len(body)):
                try:
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up on the drip, as it should
                    self.close_connection = True
                    return
                time.sleep(response.drip_ms / 1000)
        else:
            self.wfile.write(body)
        if declared != len(body):
            # The body is short of what was announced; closing is the only way to end it.
            self.close_connection = True

    def _abort_connection(self) -> None:
        # SO_LINGER with a zero timeout turns close() into an RST instead of a FIN, which is
        # what a crashing load balancer or a NAT timeout looks like to the client.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: LocalServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut idle keep-alive connections, so a stopped server really refuses service."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # OSError: the handler thread closed it meanwhile.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up early (timeouts, resets) is normal in fault tests.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class Service(ABC):
    """Something a test or the demo starts, uses, and stops: also a context manager."""

    @abstractmethod
    def start(self) -> Self:
        """Start serving; returns ``self``."""

    @abstractmethod
    def stop(self) -> object:
        """Stop serving.  Idempotent.  What it returns (a child's exit code) is the subclass's to say."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class LocalServer(Service):
    """Base for a stand-in served on ``127.0.0.1:<free port>`` from a background thread.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.  Subclasses implement
    :meth:`handle`; it is called concurrently from one thread per connection.
    """

    def __init__(self) -> None:
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    def handle(self, request: Request) -> Response:
        """Answer one request.  Called from server threads, so must be thread-safe."""

    def start(self) -> Self:
        """Bind a free port and serve in a daemon thread.  Returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._httpd = _HttpServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_SECONDS},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and release the port.  Idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        thread.join()

    @property
    def running(self) -> bool:
        """Whether the server is currently accepting connections."""
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The bound TCP port (only while running)."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>`` (only while running)."""
        return f"http://127.0.0.1:{self.port}"
