"""A stand-in for the Functions host's HTTP side: function_app's HTTP triggers served by uvicorn.

`func start` serves every HTTP-triggered function at `http://127.0.0.1:7071/<routePrefix>/<route>`
and calls it with an `azure.functions.HttpRequest` and, for a durable client binding, the
binding JSON of the Durable extension. `FunctionsHost` does the same for the functions a
`FunctionApp` registered (read from the app's own index, so there is no second route table)
with `localcloud.durablehost` as the Durable extension: the real HTTP starters, the real
`DurableOrchestrationClient` and the real orchestrators and activities all run.

`python -m localcloud serve` (`make serve`) puts it on port 7071 over the local stack, or over
the settings of a `local.settings.json`, and stops everything it started on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl

import azure.functions as func
import httpx
import uvicorn

from localcloud import localsettings
from localcloud.azurite import REPO_ROOT
from localcloud.durablehost import DurableHost
from localcloud.process import LocalProcess, ShutdownSignals
from localcloud.server import Service
from localcloud.stack import FOREIGN_CREDENTIAL_VARS, Stack, orders_source
from shared import runtime
from shared.errors import BridgeError
from shared.observability.logs import configure_logging

__all__ = [
    "FunctionsHost",
    "HttpFunction",
    "RouteError",
    "ServeProcess",
    "http_functions",
    "route_prefix",
    "serve",
]

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_STARTUP_SECONDS = 30.0
#: The hour of the local gateway's `orders` that the hint printed at start-up ingests.
WINDOW = ("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z")
# Route constraints the host's routing knows, as patterns; an unknown one is refused rather
# than silently matching everything.
_CONSTRAINTS = {
    "": r"[^/]+",
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}",
}
_PARAMETER = re.compile(
    r"^\{(?P<star>\*?)(?P<name>[A-Za-z_]\w*)(?::(?P<constraint>\w+))?(?P<optional>\?)?\}$"
)


class RouteError(ValueError):
    """A function's route or bindings are beyond what this local host serves."""


@dataclass(frozen=True)
class HttpFunction:
    """One HTTP-triggered function as the host routes to it."""

    name: str
    route: str
    methods: frozenset[str] | None  # None: any method
    auth_level: str
    request_param: str
    client_params: tuple[str, ...]
    call: Callable[..., Any]
    pattern: re.Pattern[str]
    precedence: tuple[int, ...]

    def allows(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


def route_prefix(app_root: Path = REPO_ROOT) -> str:
    """host.json's `extensions.http.routePrefix` (default "api"), as the host reads it."""
    try:
        host = json.loads((app_root / "host.json").read_text())
    except FileNotFoundError:
        return "api"
    prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


def http_functions(app: func.FunctionApp, prefix: str = "api") -> list[HttpFunction]:
    """The app's HTTP-triggered functions, in the order the host matches them."""
    # Built from the app's own index, as the worker does when the host loads it. Not through
    # get_functions(): that also records every name in the app and refuses a second call in
    # the same process (the test suite indexes function_app itself); build() is the rest of it.
    builders = app._function_builders
    found: list[HttpFunction] = []
    for function in (builder.build(app.auth_level) for builder in builders):
        trigger = function.get_trigger()
        if trigger is None or trigger.type != "httpTrigger":
            continue  # orchestrators and activities run in the Durable host; timers are not fired here
        name = str(function.get_function_name())
        clients = []
        for binding in function.get_bindings():
            if binding is trigger or binding.type == "http":
                continue
            if binding.type != "durableClient":
                raise RouteError(f"{name}: a {binding.type!r} binding ({binding.name}) is not served locally")
            clients.append(binding.name)
        route = str(getattr(trigger, "route", None) or name)
        methods = getattr(trigger, "methods", None)
        pattern, precedence = compile_route(prefix, route)
        found.append(
            HttpFunction(
                name=name,
                route=route,
                methods=frozenset(_method_name(m) for m in methods) if methods else None,
                auth_level=_enum_name(getattr(trigger, "auth_level", None) or app.auth_level),
                request_param=trigger.name,
                client_params=tuple(clients),
                call=function.get_user_function(),
                pattern=pattern,
                precedence=precedence,
            )
        )
    # Literal segments win over parameters, as in the host's routing: runs/latest before runs/{id}.
    return sorted(found, key=lambda f: f.precedence)


def compile_route(prefix: str, template: str) -> tuple[re.Pattern[str], tuple[int, ...]]:
    """A route template (`runs/{id}`, `{id:int}`, `{name?}`, `{*rest}`) as a case-insensitive regex."""
    regex = ""
    precedence: list[int] = []
    for segment in (s for s in f"{prefix}/{template}".split("/") if s):
        match = _PARAMETER.match(segment)
        if match is None:
            if "{" in segment or "}" in segment:
                raise RouteError(f"route {template!r}: {segment!r} mixes text and a parameter")
            regex += "/" + re.escape(segment)
            precedence.append(0)
            continue
        name, constraint = match["name"], (match["constraint"] or "").lower()
        if constraint not in _CONSTRAINTS:
            raise RouteError(f"route {template!r}: constraint {constraint!r} is not served locally")
        if match["star"]:
            regex += f"(?:/(?P<{name}>.*))?"
            precedence.append(4)
        elif match["optional"]:
            regex += f"(?:/(?P<{name}>{_CONSTRAINTS[constraint]}))?"
            precedence.append(3)
        else:
            regex += f"/(?P<{name}>{_CONSTRAINTS[constraint]})"
            precedence.append(1 if constraint else 2)
    return re.compile(f"^{regex}/?$", re.IGNORECASE), tuple(precedence)


def _method_name(method: Any) -> str:
    return str(getattr(method, "value", method)).upper()


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value)).lower()


#: Where the host serves the Durable extension's webhooks: the `management` URLs of a 202.
WEBHOOKS = "/runtime/webhooks/durabletask/"


class FunctionsApp:
    """The ASGI application: request -> `func.HttpRequest` -> the function -> response.

    Requests for the Durable webhooks (statusQueryGetUri, terminatePostUri, ...) go to the
    Durable host stand-in, as the Functions host hands them to its Durable extension.
    """

    def __init__(self, functions: Iterable[HttpFunction], client_binding: Callable[[], str]) -> None:
        self.functions = list(functions)
        self._client_binding = client_binding
        self._webhooks: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        function, route_params, allowed = self._match(method, path)
        if path.startswith(WEBHOOKS):
            response = await self._webhook(method, path, scope.get("query_string", b""), body)
            name = "durable webhook"
        elif function is None:
            response = _json(405 if allowed else 404, _no_route(method, path, allowed))
            if allowed:
                response.headers["Allow"] = ", ".join(sorted(allowed))
            name = "-"
        else:
            request = func.HttpRequest(
                method,
                _url(scope),
                headers=_headers(scope),
                params=dict(
                    parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
                ),
                route_params=route_params,
                body=body,
            )
            response = await self._invoke(function, request)
            name = function.name
        log.info(
            "%s %s -> %d (%s, %.0f ms)",
            method,
            path,
            response.status_code,
            name,
            (time.perf_counter() - started) * 1000,
        )
        await _send(send, response)

    def _match(self, method: str, path: str) -> tuple[HttpFunction | None, dict[str, str], set[str]]:
        allowed: set[str] = set()
        for function in self.functions:
            match = function.pattern.match(path)
            if match is None:
                continue
            if function.allows(method):
                return function, {k: v for k, v in match.groupdict().items() if v is not None}, set()
            allowed |= function.methods or set()
        return None, {}, allowed

    async def _invoke(self, function: HttpFunction, request: func.HttpRequest) -> func.HttpResponse:
        invocation = uuid.uuid4()
        kwargs: dict[str, Any] = {function.request_param: request}
        if function.client_params:
            binding = self._client_binding()
            kwargs.update(dict.fromkeys(function.client_params, binding))
        try:
            if inspect.iscoroutinefunction(function.call):
                result = await function.call(**kwargs)
            else:
                # The Python worker runs sync functions on a thread pool, off the event loop.
                result = await asyncio.to_thread(function.call, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed, Id=%s)", function.name, invocation)
            return _json(
                500, {"error": "InternalError", "message": f"{function.name} failed; see the host log"}
            )
        if not isinstance(result, func.HttpResponse):
            log.error("'Functions.%s' returned %s, not an HttpResponse", function.name, type(result).__name__)
            return _json(
                500, {"error": "InternalError", "message": f"{function.name} returned no HttpResponse"}
            )
        return result

    async def _webhook(self, method: str, path: str, query: bytes, body: bytes) -> func.HttpResponse:
        rpc_base = json.loads(self._client_binding())["rpcBaseUrl"]
        if self._webhooks is None:
            self._webhooks = httpx.AsyncClient(timeout=30)
        url = rpc_base + path[len(WEBHOOKS) :] + (f"?{query.decode('latin-1')}" if query else "")
        answer = await self._webhooks.request(method, url, content=body)
        return func.HttpResponse(
            answer.content,
            status_code=answer.status_code,
            headers={k: v for k, v in answer.headers.items() if k.lower() == "content-type"},
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _close_durable_client_session()
                if self._webhooks is not None:
                    await self._webhooks.aclose()
                    self._webhooks = None
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _close_durable_client_session() -> None:
    # The Durable client keeps one aiohttp session per process, bound to this event loop; the
    # SDK has no shutdown hook (it says so), so close it here, before the loop goes away.
    from azure.durable_functions.models.utils import http_utils

    close = getattr(http_utils, "_close_session", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _url(scope: Scope) -> str:
    """The URL as the client addressed it (its Host header), so Location points where it called."""
    host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), None)
    if host is None:
        server_host, server_port = scope.get("server") or ("127.0.0.1", 0)
        host = f"{server_host}:{server_port}"
    path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")


def _json(status: int, body: dict[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def _no_route(method: str, path: str, allowed: set[str]) -> dict[str, Any]:
    if allowed:
        return {"error": "MethodNotAllowed", "message": f"{method} is not allowed on {path}"}
    return {"error": "NotFound", "message": f"no function serves {path}"}


async def _send(send: Send, response: func.HttpResponse) -> None:
    body = response.get_body() or b""
    headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in response.headers.items()]
    names = {k for k, _ in headers}
    if b"content-type" not in names and response.mimetype:
        charset = f"; charset={response.charset}" if response.charset else ""
        headers.append((b"content-type", f"{response.mimetype}{charset}".encode("latin-1")))
    headers = [(k, v) for k, v in headers if k != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    """uvicorn's server, telling the thread that started it once it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class FunctionsHost(Service):
    """The app's HTTP functions on `http://<host>:<port>/<routePrefix>/...`, served from a thread."""

    def __init__(
        self,
        app: func.FunctionApp,
        client_binding: Callable[[], str],
        *,
        host: str = "127.0.0.1",
        port: int = localsettings.DEFAULT_PORT,
        prefix: str | None = None,
    ) -> None:
        self.prefix = route_prefix() if prefix is None else prefix.strip("/")
        self.functions = http_functions(app, self.prefix)
        self._app = FunctionsApp(self.functions, client_binding)
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FunctionsHost is already running")
        sock = _bind(self._host, self._port)
        self._bound_port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            log_config=None,  # our handlers, our redaction
            access_log=False,  # FunctionsApp logs one line per request, with the function's name
            lifespan="on",
            ws="none",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=5,
        )
        server = self._server = _Server(config)
        # Off the main thread uvicorn leaves signals alone: the caller owns shutdown.
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="functions-host", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _STARTUP_SECONDS
        while not server.ready.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Functions host did not start; see the log above")
        return self

    def stop(self) -> None:
        """Stop accepting, finish requests in flight (5 s at most), release the port. Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(10)
        if thread.is_alive():
            server.force_exit = True
            thread.join()

    @property
    def port(self) -> int:
        if self._server is None or self._bound_port is None:
            raise RuntimeError("FunctionsHost is not running")
        return self._bound_port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def listing(self) -> str:
        """The functions and their URLs, laid out as func start prints them."""
        lines = ["Functions:", ""]
        for function in sorted(self.functions, key=lambda f: f.name):
            methods = ",".join(sorted(function.methods)) if function.methods else "ALL"
            path = "/".join(p for p in (self.prefix, function.route) if p)
            lines.append(f"        {function.name}: [{methods}] {self.url}/{path}")
        return "\n".join([*lines, ""])


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Like uvicorn's own bind: a restart right after a stop must not wait out TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(
            f"cannot listen on {host}:{port} ({exc.strerror}); is func start or another "
            "`make serve` running? pick another port with --port"
        ) from None
    sock.set_inheritable(False)
    return sock


# -- python -m localcloud serve ----------------------------------------------------------------


def _say(line: str) -> None:
    print(line, flush=True)


def serve(
    *,
    port: int | None = None,
    settings_path: Path | None = None,
    local_stack: bool = False,
    grace_seconds: float = 10.0,
) -> int:
    """Serve the function app's HTTP API until SIGINT or SIGTERM; 0 when stopped, 2 on bad settings.

    Settings: the local stack when asked for or when there is no local.settings.json, else
    that file's `Values` (names already set in the environment win, as with func start).
    """
    with ShutdownSignals() as signals:
        if settings_path is None and not local_stack and localsettings.DEFAULT_PATH.exists():
            settings_path = localsettings.DEFAULT_PATH
        if settings_path is not None and not local_stack:
            try:
                settings = localsettings.read(settings_path)
            except localsettings.LocalSettingsError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            skipped = localsettings.apply(settings.values, os.environ)
            _say(f"[serve] settings: {settings_path}")
            if settings.written_by_localcloud:
                _say(f"[serve]   {settings.values[localsettings.MARKER]}: that stack must still be up")
            if skipped:
                _say(f"[serve]   set in the environment, so not taken from the file: {', '.join(skipped)}")
            return _serve(None, settings.port if port is None else port, grace_seconds, signals)
        try:
            stack = Stack().start()
        except RuntimeError as exc:  # e.g. Azurite not installed: says to run npm ci
            print(f"error: the local stack did not start: {exc}", file=sys.stderr)
            return 1
        try:
            catalog = stack.write_catalog({"orders": orders_source(stack.cloud.gateway_url)})
            for name in FOREIGN_CREDENTIAL_VARS:
                os.environ.pop(name, None)
            os.environ.update(stack.app_env(catalog))
            cloud = stack.cloud
            _say(
                f"[serve] settings: local stack (identity {cloud.identity.url}, STS {cloud.sts.url}, "
                f"API Gateway {cloud.gateway_url}, Key Vault {cloud.keyvault.url}, "
                f"Azurite :{stack.azurite.port}), catalog {catalog}"
            )
            return _serve(stack, port, grace_seconds, signals)
        finally:
            stack.stop()


def _serve(stack: Stack | None, port: int | None, grace_seconds: float, signals: ShutdownSignals) -> int:
    try:
        settings = runtime.current().settings
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(verbose=True)
    # Its start-up and shutdown chatter repeats what serve prints; its warnings and errors stay.
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    app = importlib.import_module("function_app").app

    durable = DurableHost(state_dir=settings.state_dir).start()
    host: FunctionsHost | None = None
    try:
        _say(f"[serve] durable: in-process engine, journals in {settings.state_dir}")
        resumed = durable.resume()
        if resumed:
            _say(f"[serve]   resumed {len(resumed)} run(s) left active: {', '.join(resumed)}")
        try:
            host = FunctionsHost(
                app, durable.binding, port=localsettings.DEFAULT_PORT if port is None else port
            )
            host.start()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        _say(host.listing())
        _say("[serve] auth levels are not enforced locally (nor by func start); in Azure, function keys are")
        if stack is not None:
            body = json.dumps({"source": "orders", "window": {"from": WINDOW[0], "to": WINDOW[1]}})
            _say(f"[serve] try: curl -i -X POST {host.url}/{host.prefix}/ingest -d '{body}'")
        _say(f"[serve] ready on {host.url} (Ctrl-C to stop)")
        signals.wait()
        _say(f"[serve] {signals.received[0]}: stopping")
        host.stop()
        # Over the local stack a run cannot outlive this process (its data goes with the stack).
        left = _drain(durable, 0.0 if stack is not None else grace_seconds, signals)
        if left:
            _abandon(left, durable, stack)
        return 0
    finally:
        if host is not None:
            host.stop()
        durable.stop()
        runtime.reset()
        _say("[serve] stopped")


def _drain(durable: DurableHost, grace_seconds: float, signals: ShutdownSignals) -> int:
    """Wait up to `grace_seconds` (or a second signal) for running orchestrations; returns those left."""
    running = durable.in_flight()
    if running and grace_seconds > 0:
        _say(
            f"[serve] waiting up to {grace_seconds:g}s for {running} running orchestration(s) "
            "(Ctrl-C again to leave them)"
        )
        deadline = time.monotonic() + grace_seconds
        while not signals.forced.is_set() and time.monotonic() < deadline:
            if durable.wait_idle(0.2):
                break
    return durable.in_flight()


def _abandon(left: int, durable: DurableHost, stack: Stack | None) -> None:
    """Exit now, leaving `left` runs to the threads driving them, which die with the process.

    Closing what those threads use first (the runtime's clients, the journal) would turn an
    interrupted run into a failed one; the journal keeps it active, so it resumes next start.
    """
    where = "their data goes with the local stack" if stack is not None else "they resume on the next start"
    _say(f"[serve] left {left} run(s) unfinished; {where}")
    logging.disable(logging.CRITICAL)  # their errors from here on are the shutdown, not news
    durable.stop()
    if stack is not None:
        stack.stop()
    _say("[serve] stopped")
    sys.stderr.flush()
    os._exit(0)


class ServeProcess(LocalProcess):
    """`python -m localcloud serve ...` as a child process; `url` is where it serves once started."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None, cwd: Path = REPO_ROOT) -> None:
        super().__init__(
            "serve", *args, ready=re.compile(r"^\[serve\] ready on (?P<url>http://\S+)"), env=env, cwd=cwd
        )

    @property
    def url(self) -> str:
        return self.ready_match["url"] if self.ready_match else ""
