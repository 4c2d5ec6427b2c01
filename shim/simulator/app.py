"""``Simulator``: one simulated Keap (state, endpoints, test hooks) and its ASGI app.

``sim.app`` is a plain ASGI 3 callable: tests mount it in-process with
``httpx.ASGITransport(app=sim.app)``; ``serve`` runs it under uvicorn for process tests and
``shim demo``. Time comes from ``clock() + clock_offset`` so tests can move it both ways.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from shim.serve.asgi import Receive, Scope, Send
from shim.simulator.asgi import json_answer, read_request, send_answer
from shim.simulator.config import SimConfig
from shim.simulator.control import control
from shim.simulator.data import Database
from shim.simulator.endpoint import XmlRpcEndpoint
from shim.simulator.rest.endpoint import PREFIX as REST_PREFIX
from shim.simulator.rest.endpoint import RestEndpoint
from shim.simulator.state import AuthState
from shim.simulator.tokens import TokenEndpoint

XMLRPC_PATHS = frozenset({"/crm/xmlrpc/v1", "/crm/xmlrpc"})
CONTROL_PREFIX = "/_sim/"


class Simulator:
    def __init__(self, config: SimConfig | None = None, clock: Callable[[], float] = time.time):
        self.config = config if config is not None else SimConfig()
        self.clock = clock
        self.clock_offset = 0.0
        self.auth = AuthState(self.config)
        self.db = Database(self.config)
        self.token_endpoint = TokenEndpoint(self.config, self.auth, self.now)
        self.xmlrpc_endpoint = XmlRpcEndpoint(self.config, self.auth, self.db, self.now)
        #: REST v2 over the same data, billed to the same quotas as XML-RPC.
        self.rest_endpoint = RestEndpoint(self.config, self.db, self.now, self.xmlrpc_endpoint)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await self._asgi(scope, receive, send)

        #: The ASGI 3 app. A plain coroutine function, not a bound method: uvicorn's interface
        #: detection takes a bound method for an ASGI 2 app.
        self.app = app

    def now(self) -> float:
        return self.clock() + self.clock_offset

    # --- for tests and the CLI ---

    def add_client(self) -> tuple[str, str]:
        client = self.auth.add_client()
        return client.client_id, client.secret

    def issue_tokens(self, client_id: str) -> dict[str, Any]:
        """A fresh token pair (a new chain) as the token endpoint would answer it.

        Raises KeyError for an unknown client.
        """
        now = self.now()
        return self.auth.issue(client_id, now, now + self.config.refresh_token_lifetime)

    def add_service_key(self) -> str:
        return self.auth.add_service_key()

    def add_file(self, contact_id: int | None, name: str, data: bytes) -> int:
        """Store a file directly (tests that need a big ``getFile`` skip the upload)."""
        return self.db.add_file(contact_id, name, data)

    def fail_token_requests(self, *failures: Any) -> None:
        """Queue failures for the token endpoint: ``"503"``, ``"reset-after"``, dicts..."""
        self.token_endpoint.failures.push(list(failures))

    def fail_xmlrpc_requests(self, *failures: Any) -> None:
        self.xmlrpc_endpoint.failures.push(list(failures))

    def release(self, count: int | None = None) -> int:
        """Let held refresh requests go on (oldest first); returns how many were released."""
        return self.token_endpoint.gate.release(count)

    @property
    def held(self) -> int:
        return self.token_endpoint.gate.held

    def stats(self) -> dict[str, Any]:
        tokens, rpc = self.token_endpoint, self.xmlrpc_endpoint
        return {
            "token_requests": tokens.requests,
            "refresh_requests": tokens.refresh_requests,
            "refreshes_served": tokens.refreshes_served,
            "code_exchanges": tokens.code_exchanges,
            "held_refreshes": tokens.gate.held,
            "token_failures_pending": len(tokens.failures),
            "xmlrpc_calls": rpc.calls,
            "xmlrpc_unauthorized": rpc.unauthorized,
            "xmlrpc_throttled": rpc.throttled,
            "xmlrpc_failures_pending": len(rpc.failures),
            "calls_by_method": dict(rpc.methods),
            "last_private_key": _jsonable(rpc.last_private_key),
            "private_keys_seen": list(rpc.private_keys_seen),
            "quota_used": self.xmlrpc_endpoint.quotas.used(),
            "now": self.now(),
        }

    # --- ASGI ---

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = await read_request(scope, receive)
        path, method = request.path, request.method
        if path in XMLRPC_PATHS and method == "POST":
            await self.xmlrpc_endpoint.handle(request, send)
        elif path == "/token" and method == "POST":
            await self.token_endpoint.token(request, send)
        elif path == "/app/oauth/authorize" and method == "GET":
            await self.token_endpoint.authorize(request, send)
        elif path.startswith(REST_PREFIX + "/"):
            await self.rest_endpoint.handle(request, scope.get("query_string", b""), send)
        elif path.startswith(CONTROL_PREFIX):
            try:
                body = request.json()
            except ValueError:
                await send_answer(send, json_answer(400, {"error": "the body is not JSON"}))
                return
            await send_answer(send, control(self, method, path[len(CONTROL_PREFIX) :], body))
        else:
            await send_answer(send, json_answer(404, {"error": f"no route {method} {path}"}))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
