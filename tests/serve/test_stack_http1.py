"""The in-process stack forwards the production way: through http1, over a loopback socket."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from shim import xmlrpc
from shim.keap import http1
from tests.support.stack import Stack

pytestmark = pytest.mark.anyio


async def test_forwarded_calls_take_http1_and_keep_one_connection(stack: Stack) -> None:
    assert await stack.call("DataService.echo", "a") == "a"
    assert await stack.call("DataService.echo", "b") == "b"
    services = stack.app.services
    assert services is not None
    pool = services.upstream._http1
    assert pool is not None, "forwarding fell back to httpx"
    [conn] = pool._open  # both calls on one kept-alive connection
    assert conn.origin == ("http", "127.0.0.1", urlsplit(stack.base).port)
    assert conn.state is http1.State.IDLE
    assert stack.sim.stats()["xmlrpc_calls"] == 2


async def test_a_reset_mid_answer_breaks_the_answer_and_costs_the_connection(
    stack: Stack,
) -> None:
    """The simulator's reset breaks its answer on the wire (uvicorn closes the connection part
    way through the promised length): http1 reports it, keyshim's answer, already started,
    stops part way, the connection is dropped, and the next call opens a new one."""
    assert await stack.call("DataService.echo", "warm") == "warm"
    services = stack.app.services
    assert services is not None and services.upstream._http1 is not None
    [first] = services.upstream._http1._open
    stack.sim.fail_xmlrpc_requests("reset")
    body = xmlrpc.dumps_call("DataService.echo", [stack.key, "a"])
    messages: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop() if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/api/xmlrpc",
        "raw_path": b"/api/xmlrpc",
        "query_string": b"",
        "headers": [(b"content-type", b"text/xml"), (b"content-length", b"%d" % len(body))],
        "client": ("127.0.0.1", 1),
        "server": ("shim.test", 80),
        "scheme": "http",
        "root_path": "",
    }
    await stack.app(scope, receive, send)
    assert messages[0]["type"] == "http.response.start" and messages[0]["status"] == 200
    assert all(m.get("more_body") for m in messages[1:])  # never completed
    assert first.state is http1.State.CLOSED
    assert await stack.call("DataService.echo", "b") == "b"
    [second] = services.upstream._http1._open
    assert second is not first
