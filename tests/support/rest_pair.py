"""Two simulated Keap apps behind one in-process keyshim: account ``legacy`` routed ``xmlrpc``
and account ``modern`` routed ``rest``. Both simulators start identical and share a frozen
clock, so the same legacy session must give the same answers (values, XML-RPC types,
faults) through either route: that is the equivalence the REST translation promises.

Each simulator also listens on loopback (``sim_server``) and each account's XML-RPC URL points
there, so forwarded XML-RPC calls (the legacy route, and the REST route's fallbacks) take
``shim.keap.http1`` as in production; token grants and REST v2 reach the simulator named by
the URL's host in-process (``Dispatch``), as httpx does them in production too.

Two routes failing alike are equivalent too, so ``Pair.same`` also checks the answer itself:
every case says what it expects, and a route that refuses everything cannot pass.

* ``await pair.same(method, *params)``: a success whose value has the XML-RPC type Keap
  documents for ``method`` (``RETURNS``; a method not listed there: any success).
* ``await pair.same(method, *params, expect=int)``: a success of exactly that type.
* ``await pair.same(method, *params, expect=Fault(5, "RecordNotFound"))``: exactly that fault
  code, and a fault string starting with the tag in brackets.

A case that expects a fault must say so with ``expect=Fault(...)``: before this API had
``expect``, ``same`` accepted any two identical faults (adapt old calls by adding it). After
every call ``same`` also checks the keys the simulated XML-RPC endpoints saw: only the
placeholder through route ``xmlrpc``, nothing through route ``rest`` (its calls never reach
XML-RPC), never a local key.

The pair lifts keyshim's Keap rate budget (``keap_limits="off"``): its pacing (one OAuth
request every 40 ms) is tested in tests/keap, and here it only made every REST call wait.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
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


@dataclass(frozen=True)
class Fault:
    """The fault a case expects: its code, and its tag ("RecordNotFound" for a fault string
    ``[RecordNotFound]Record was not found``)."""

    code: int
    tag: str


Expect = type | tuple[type, ...] | Fault | None

# The XML-RPC type of each method's successful answer (Keap's documentation, and the simulator).
# A translation added for a method not listed here should add it.
RETURNS: dict[str, type] = {
    "DiscountService.getProductTotalDiscount": dict,
    "InvoiceService.addPaymentPlan": bool,
    "ProductService.deactivateCreditCard": bool,
    "ProductService.getInventory": int,
    "InvoiceService.updateJobRecurringNextBillDate": bool,
    "APIEmailService.getEmailTemplate": dict,
    "APIEmailService.getOptStatus": int,
    "APIEmailService.optIn": bool,
    "APIEmailService.optOut": bool,
    "APIEmailService.sendEmail": bool,
    "ContactService.add": int,
    "ContactService.addToGroup": bool,
    "ContactService.addWithDupCheck": int,
    "ContactService.findByEmail": list,
    "ContactService.linkContacts": bool,
    "ContactService.load": dict,
    "ContactService.merge": bool,
    "ContactService.removeFromGroup": bool,
    "ContactService.runActionSequence": list,
    "ContactService.update": int,
    "DataService.add": int,
    "DataService.addCustomField": int,
    "DataService.count": int,
    "DataService.delete": bool,
    "DataService.echo": str,
    "DataService.findByField": list,
    "DataService.getAppSetting": str,
    "DataService.getUserInfo": dict,
    "DataService.load": dict,
    "DataService.query": list,
    "DataService.update": int,
    "DataService.updateCustomField": bool,
    "FileService.getFile": str,
    "FileService.renameFile": bool,
    "FileService.replaceFile": bool,
    "FileService.uploadFile": int,
    "FunnelService.achieveGoal": list,
    "InvoiceService.addManualPayment": bool,
    "InvoiceService.addOrderItem": bool,
    "InvoiceService.addRecurringOrder": int,
    "InvoiceService.calculateAmountOwed": float,
    "InvoiceService.chargeInvoice": dict,
    "InvoiceService.createBlankOrder": int,
    "InvoiceService.createInvoiceForRecurring": int,
    "InvoiceService.deleteInvoice": bool,
    "InvoiceService.getOrderId": int,
    "InvoiceService.getPayments": list,
    "OrderService.placeOrder": dict,
    "WebFormService.getHTML": str,
    "WebFormService.getMap": dict,
    # saved searches (rest-catalog3)
    "SearchService.getAllReportColumns": dict,
    "SearchService.getSavedSearchResults": list,
    "SearchService.getSavedSearchResultsAllFields": list,
}


class Pair:
    def __init__(
        self,
        settings: Settings,
        store: SqliteStore,
        sims: dict[str, Simulator],
        xmlrpc_bases: dict[str, str],
    ) -> None:
        settings = replace(settings, keap_limits="off")  # no pacing: see the module docstring
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

    async def same(self, method: str, *params: xmlrpc.Value, expect: Expect = None) -> Any:
        """Run the call through both routes; the answers must be identical, types included,
        and be what ``expect`` says (see the module docstring). Returns the value, or the
        ("fault", code, string) answer when a fault was expected."""
        legacy = await self.call("xmlrpc", method, *params)
        modern = await self.call("rest", method, *params)
        assert typed(legacy) == typed(modern), (
            f"{method}{params!r}\n  xmlrpc: {legacy!r}\n  rest:   {modern!r}"
        )
        check_answer(method, params, legacy, expect)
        self.check_keys_seen()
        self.compared += 1
        return legacy[1] if legacy[0] == "ok" else legacy

    def check_keys_seen(self) -> None:
        """Keap saw the placeholder through route ``xmlrpc`` and no XML-RPC call from route
        ``rest``: the local keys never leave keyshim."""
        legacy = self.sims["xmlrpc"].xmlrpc_endpoint.private_keys_seen
        modern = self.sims["rest"].xmlrpc_endpoint.private_keys_seen
        assert set(legacy) <= {self.settings.placeholder}, legacy
        assert modern == [], modern

    def rest_requests(self) -> int:
        return self.sims["rest"].rest_endpoint.calls

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.app.shutdown()


def check_answer(method: str, params: Any, answer: Answer, expect: Expect) -> None:
    """``answer`` is what ``expect`` says it must be (module docstring)."""
    where = f"{method}{params!r}: {answer!r}"
    if isinstance(expect, Fault):
        assert answer[0] == "fault", f"expected {expect}, got a success: {where}"
        assert (answer[1], answer[2].partition("]")[0] + "]") == (expect.code, f"[{expect.tag}]"), (
            f"expected {expect}: {where}"
        )
        return
    assert answer[0] == "ok", f"expected a success: {where}"
    kind = expect if expect is not None else RETURNS.get(method, object)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # exact types: a bool is not an int answer, an int is not a bool
    assert any(
        type(answer[1]) is k or (k is object) or (k is dict and isinstance(answer[1], dict))
        for k in kinds
    ), f"expected a {kind} answer: {where}"


def typed(value: Any) -> Any:
    """``value`` with every scalar tagged by its exact type (True != 1, "1" != 1)."""
    if isinstance(value, dict):
        return ("struct", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, datetime.datetime):
        return ("dateTime", value.isoformat())
    return (type(value).__name__, value)
