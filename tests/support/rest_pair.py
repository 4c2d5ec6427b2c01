"""Two simulated Keap apps behind one in-process keyshim: account ``legacy`` routed ``xmlrpc``
and account ``modern`` routed ``rest``. Both simulators start identical and share a frozen
clock, so the same legacy session must give the same answers (values, XML-RPC types,
faults) through either route: that is the equivalence the REST translation promises.

Each simulator also listens on loopback (``sim_server``) and each account's XML-RPC URL points
there, so forwarded XML-RPC calls (the legacy route, and the REST route's fallbacks) take
``shim.keap.http1`` as in production; token grants and REST v2 reach the simulator named by
the URL's host in-process (``Dispatch``), as httpx does them in production too.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from shim import xmlrpc
from shim.models import Account, TokenPair
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.sim_server import serve_simulator
from tests.support.stack import issue_key

FROZEN = 1_790_000_000.0
ROUTES = ("xmlrpc", "rest")


class Dispatch:
    """An ASGI app sending each request to the simulator named by its host."""

    def __init__(self, sims: dict[str, Simulator]) -> None:
        self.sims = sims

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        host = dict(scope["headers"]).get(b"host", b"").decode().split(":")[0]
        await self.sims[host.split(".")[0]].app(scope, receive, send)


def add_account(
    store: SqliteStore,
    sim: Simulator,
    name: str,
    route: str,
    service_key: bool = False,
    xmlrpc_base: str | None = None,
) -> Account:
    base = f"http://{route}.test"
    common: dict[str, Any] = {
        "name": name,
        "created_at": time.time(),
        "xmlrpc_url": (xmlrpc_base or base) + "/crm/xmlrpc/v1",
        "rest_url": base + "/crm/rest/v2",
        "route": route,
    }
    if service_key:
        account = Account(kind="service_key", service_key=sim.add_service_key(), **common)
        store.add_account(account)
        return account
    client_id, secret = sim.add_client()
    account = Account(
        kind="oauth",
        client_id=client_id,
        client_secret=secret,
        token_url=base + "/token",
        **common,
    )
    store.add_account(account)
    pair = sim.issue_tokens(client_id)
    now = time.time()
    store.put_tokens(name, TokenPair(pair["access_token"], pair["refresh_token"], now + 86400), now)
    return account


Answer = tuple[Any, ...]


@contextlib.asynccontextmanager
async def open_pair(
    settings: Settings, store: SqliteStore, config: dict[str, Any]
) -> AsyncIterator[Pair]:
    """A started ``Pair`` whose simulators listen on loopback for the block."""
    sims = {r: Simulator(SimConfig(**config), clock=lambda: FROZEN) for r in ROUTES}
    async with serve_simulator(sims["xmlrpc"]) as legacy, serve_simulator(sims["rest"]) as modern:
        pair = Pair(settings, store, sims, {"xmlrpc": legacy, "rest": modern})
        try:
            await pair.app.startup()
            yield pair
        finally:
            await pair.aclose()


class Pair:
    def __init__(
        self,
        settings: Settings,
        store: SqliteStore,
        sims: dict[str, Simulator],
        xmlrpc_bases: dict[str, str],
    ) -> None:
        self.settings = settings
        self.store = store
        self.sims = sims
        dispatch = Dispatch(self.sims)
        self.app = KeyshimApp(
            settings,
            lambda s: build_services(
                s, transport=httpx.ASGITransport(app=dispatch), forward_http1=True
            ),
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://shim.test"
        )
        self.keys = {}
        for route in ROUTES:
            add_account(store, self.sims[route], route, route, xmlrpc_base=xmlrpc_bases[route])
            self.keys[route] = issue_key(store, settings, route)
        self.compared = 0

    async def call(self, route: str, method: str, *params: xmlrpc.Value) -> Answer:
        """("ok", value) or ("fault", code, string)."""
        body = xmlrpc.dumps_call(method, [self.keys[route], *params])
        response = await self.client.post(
            "/api/xmlrpc", content=body, headers={"Content-Type": "text/xml"}
        )
        assert response.status_code == 200, response.text
        try:
            return ("ok", xmlrpc.parse_response(response.content))
        except xmlrpc.Fault as fault:
            return ("fault", fault.code, fault.string)

    async def same(self, method: str, *params: xmlrpc.Value) -> Any:
        """Run the call through both routes; the answers must be identical, types included."""
        legacy = await self.call("xmlrpc", method, *params)
        modern = await self.call("rest", method, *params)
        assert typed(legacy) == typed(modern), (
            f"{method}{params!r}\n  xmlrpc: {legacy!r}\n  rest:   {modern!r}"
        )
        self.compared += 1
        return legacy[1] if legacy[0] == "ok" else legacy

    def rest_requests(self) -> int:
        return self.sims["rest"].rest_endpoint.calls

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.app.shutdown()


def typed(value: Any) -> Any:
    """``value`` with every scalar tagged by its exact type (True != 1, "1" != 1)."""
    if isinstance(value, dict):
        return ("struct", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, datetime.datetime):
        return ("dateTime", value.isoformat())
    return (type(value).__name__, value)
