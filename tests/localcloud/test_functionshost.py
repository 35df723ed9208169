"""The Functions host stand-in's HTTP side on a small app of its own: routing as the host does it,
`azure.functions.HttpRequest` in, `HttpResponse` out, over real HTTP.

function_app.py itself, with the Durable host and the local stack, is tests/test_serve.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import azure.functions as func
import httpx
import pytest

from localcloud.functionshost import FunctionsHost, RouteError, compile_route

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
threads: list[str] = []


def _echo(req: func.HttpRequest, **extra: str) -> func.HttpResponse:
    body = {
        "method": req.method,
        "url": req.url,
        "route": dict(req.route_params),
        "params": dict(req.params),
        "body": req.get_body().decode(),
        "header": req.headers.get("x-test"),
        **extra,
    }
    return func.HttpResponse(json.dumps(body), mimetype="application/json", headers={"X-Served-By": "echo"})


@app.route(route="items/{id:int}", methods=["GET"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    return _echo(req, function="item")


@app.route(route="items/latest", methods=["GET"])
def latest(req: func.HttpRequest) -> func.HttpResponse:
    return _echo(req, function="latest")


@app.route(route="files/{*path}", methods=["GET", "PUT"])
async def files(req: func.HttpRequest) -> func.HttpResponse:
    return _echo(req, function="files")


@app.route(route="blocking", methods=["POST"])
def blocking(req: func.HttpRequest) -> func.HttpResponse:
    threads.append(threading.current_thread().name)
    return _echo(req, function="blocking")


@app.route(route="broken", methods=["GET"])
def broken(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret-ish internals")


@app.route(route="optional/{name?}")
def optional(req: func.HttpRequest) -> func.HttpResponse:
    return _echo(req, function="optional")


@pytest.fixture(scope="module")
def host() -> Iterator[FunctionsHost]:
    with FunctionsHost(app, lambda: "{}", port=0, prefix="api") as started:
        yield started


@pytest.fixture(scope="module")
def http(host: FunctionsHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.url, timeout=10) as client:
        yield client


def test_route_parameters_constraints_and_literal_precedence(http: httpx.Client) -> None:
    first = http.get("/api/items/42").json()
    assert first["function"] == "item" and first["route"] == {"id": "42"}
    # `latest` is not an int, and a literal segment wins over a parameter anyway.
    assert http.get("/api/items/latest").json()["function"] == "latest"
    assert http.get("/api/items/abc").status_code == 404
    assert http.get("/api/files/a/b/c.json").json()["route"] == {"path": "a/b/c.json"}
    assert http.get("/API/Items/7").json()["function"] == "item"  # the host's routing ignores case
    assert http.get("/api/optional").json()["route"] == {}
    assert http.get("/api/optional/x").json()["route"] == {"name": "x"}


def test_the_function_gets_the_request_as_the_host_builds_it(http: httpx.Client) -> None:
    headers = {"X-Test": "yes", "Host": "example.test:9"}
    answer = http.put("/api/files/report.csv?a=1&b=", content=b"payload", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    assert answer.headers["x-served-by"] == "echo"
    body = answer.json()
    assert body["method"] == "PUT"
    assert body["url"] == "http://example.test:9/api/files/report.csv?a=1&b="  # as the client addressed it
    assert body["params"] == {"a": "1", "b": ""}
    assert body["body"] == "payload"
    assert body["header"] == "yes"


def test_sync_functions_run_off_the_event_loop(http: httpx.Client) -> None:
    threads.clear()
    assert http.post("/api/blocking", content=b"{}").status_code == 200
    assert threads and threads[0] != "functions-host"


def test_no_route_is_404_and_a_wrong_method_405_with_allow(http: httpx.Client) -> None:
    missing = http.get("/api/nowhere")
    assert missing.status_code == 404 and missing.json()["error"] == "NotFound"
    wrong = http.delete("/api/files/x")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, PUT"


def test_a_function_that_raises_is_a_500_without_its_internals(http: httpx.Client) -> None:
    answer = http.get("/api/broken")
    assert answer.status_code == 500
    assert answer.json()["error"] == "InternalError"
    assert "secret-ish" not in answer.text and "Traceback" not in answer.text


def test_routes_the_local_host_cannot_serve_are_refused_up_front() -> None:
    with pytest.raises(RouteError, match="mixes text"):
        compile_route("api", "items/v{id}")
    with pytest.raises(RouteError, match="constraint"):
        compile_route("api", "items/{id:datetime}")
    other = func.FunctionApp()

    @other.route(route="upload")
    @other.blob_input(arg_name="blob", path="c/b", connection="X")
    def upload(req: func.HttpRequest, blob: str) -> func.HttpResponse:
        return func.HttpResponse("")

    with pytest.raises(RouteError, match="blob"):
        FunctionsHost(other, lambda: "{}", port=0)


def test_stop_releases_the_port_and_a_new_host_can_take_it() -> None:
    first = FunctionsHost(app, lambda: "{}", port=0).start()
    port = first.port
    first.stop()
    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{port}/api/items/1")
    with FunctionsHost(app, lambda: "{}", port=port) as second:
        assert httpx.get(f"{second.url}/api/items/1").status_code == 200


def test_a_port_in_use_is_refused_naming_it(host: FunctionsHost) -> None:
    with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{host.port}.*--port"):
        FunctionsHost(app, lambda: "{}", port=host.port).start()
