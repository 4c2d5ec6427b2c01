"""Routes ``rest`` and ``auto`` end to end: brownouts, refused connections, calls that may
have run, requests counted per call (nothing runs twice), the quota budget, the audit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from shim import xmlrpc
from shim.models import TokenPair
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.rest_pair import add_account
from tests.support.stack import issue_key

pytestmark = pytest.mark.anyio

UNTRANSLATED = ("ContactService.addToCampaign", 1, 5)


class Wire(httpx.AsyncBaseTransport):
    """The simulator behind a transport that counts requests and can break XML-RPC the ways
    a network does: ``refuse`` (never left), ``timeout`` (sent and run, answer lost)."""

    def __init__(self, sim: Simulator) -> None:
        self.inner = httpx.ASGITransport(app=sim.app)
        self.log: list[tuple[str, str]] = []
        self.xmlrpc_failure: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        kind = "rest" if "/rest/v2/" in request.url.path else "xmlrpc"
        if request.url.path == "/token":
            kind = "token"
        self.log.append((kind, f"{request.method} {request.url.path}"))
        if kind == "xmlrpc" and self.xmlrpc_failure == "refuse":
            raise httpx.ConnectError("Connection refused", request=request)
        response = await self.inner.handle_async_request(request)
        if kind == "xmlrpc" and self.xmlrpc_failure == "timeout":
            await response.aread()
            raise httpx.ReadTimeout("timed out", request=request)
        return response

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.log if k == kind)


class Auto:
    def __init__(self, settings: Settings, store: SqliteStore, route: str) -> None:
        self.sim = Simulator(SimConfig())
        self.wire = Wire(self.sim)
        self.store = store
        self.app = KeyshimApp(settings, lambda s: build_services(s, transport=self.wire))
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://shim.test"
        )
        self.account = add_account(store, self.sim, "prod", route)
        self.key = issue_key(store, settings, "prod")

    async def call(self, method: str, *params: xmlrpc.Value) -> Any:
        body = xmlrpc.dumps_call(method, [self.key, *params])
        response = await self.client.post(
            "/api/xmlrpc", content=body, headers={"Content-Type": "text/xml"}
        )
        try:
            return xmlrpc.parse_response(response.content)
        except xmlrpc.Fault as fault:
            return fault

    async def counted(self, method: str, *params: xmlrpc.Value) -> tuple[Any, int, int]:
        """The answer, and how many XML-RPC and REST requests the call made upstream."""
        x, r = self.wire.count("xmlrpc"), self.wire.count("rest")
        answer = await self.call(method, *params)
        return answer, self.wire.count("xmlrpc") - x, self.wire.count("rest") - r

    def keys_seen(self) -> list[str]:
        """The private keys Keap's XML-RPC endpoint was sent (the placeholder, never a key)."""
        return self.sim.xmlrpc_endpoint.private_keys_seen

    def records(self) -> list[Any]:
        assert self.app.services is not None
        self.app.services.audit.flush_now()
        return self.store.usage(0)


@pytest.fixture
async def auto(settings: Settings, store: SqliteStore) -> AsyncIterator[Auto]:
    a = Auto(replace(settings), store, "auto")
    await a.app.startup()
    yield a
    await a.client.aclose()
    await a.app.shutdown()
    assert a.keys_seen() == [settings.placeholder]  # every test sends XML-RPC at least once


@pytest.fixture
async def rest(settings: Settings, store: SqliteStore) -> AsyncIterator[Auto]:
    a = Auto(replace(settings), store, "rest")
    await a.app.startup()
    yield a
    await a.client.aclose()
    await a.app.shutdown()
    assert a.keys_seen() == []  # route rest never calls XML-RPC


async def test_auto_uses_xmlrpc_while_it_is_up(auto: Auto) -> None:
    cid, x, r = await auto.counted("ContactService.add", {"FirstName": "A", "Email": "a@x.io"})
    assert (cid, x, r) == (1, 1, 0)
    assert auto.keys_seen() == ["keyshim"]  # the placeholder, not the script's key
    fault, x, r = await auto.counted(*UNTRANSLATED)  # Keap's own answer, passed on
    assert isinstance(fault, xmlrpc.Fault) and "No such handler" in fault.string
    assert (x, r) == (1, 0)
    rows = auto.records()
    assert all(row["via_rest"] == 0 for row in rows)


@pytest.mark.parametrize("mode", ["off", "503", "404", "410", "refuse"])
async def test_auto_brownout(auto: Auto, mode: str) -> None:
    cid = await auto.call("ContactService.add", {"FirstName": "Ada", "Email": "a@x.io"})
    if mode == "refuse":
        auto.wire.xmlrpc_failure = "refuse"
    else:
        auto.sim.config.xmlrpc_mode = mode  # type: ignore[assignment]
    # the first call finds XML-RPC down (1 attempt, which proves nothing ran) and answers
    # through REST; for the next DOWN_HOLD seconds translated calls skip XML-RPC
    answer, x, r = await auto.counted("ContactService.load", cid, ["Id", "FirstName"])
    assert (answer, x, r) == ({"Id": cid, "FirstName": "Ada"}, 1, 1)
    new, x, r = await auto.counted("ContactService.add", {"FirstName": "Bo", "Email": "b@x.io"})
    assert (new, x, r) == (2, 0, 1)
    assert sorted(auto.sim.db.tables["Contact"]) == [1, 2]  # added once, not twice
    assert await auto.call("ContactService.addToGroup", new, 100) is True
    rows = await auto.call("DataService.query", "Contact", 10, 0, {"Id": "%"}, ["Id"])
    assert rows == [{"Id": 1}, {"Id": 2}]
    fault, x, r = await auto.counted(*UNTRANSLATED)
    assert isinstance(fault, xmlrpc.Fault) and (x, r) == (1, 0)
    assert fault.code == 112 and fault.string.startswith("[NoRestTranslation]")
    assert "ContactService.addToCampaign" in fault.string and "unavailable" in fault.string
    usage = {row["method"]: row for row in auto.records()}
    assert usage["ContactService.load"]["via_rest"] == 1
    assert usage["ContactService.add"]["via_rest"] == 1  # the first add went to XML-RPC
    assert usage["ContactService.addToCampaign"]["via_rest"] == 0
    # what reached XML-RPC (the first add) carried the placeholder, never the local key
    assert auto.keys_seen() == ["keyshim"]


async def test_auto_back_to_xmlrpc_after_the_hold(auto: Auto) -> None:
    auto.sim.config.xmlrpc_mode = "503"
    assert await auto.call("DataService.echo", "x") == "x"
    auto.sim.config.xmlrpc_mode = "on"
    assert auto.app.services is not None
    auto.app.services.rest.state.down_until.clear()  # the hold has passed
    _, x, r = await auto.counted("DataService.echo", "y")
    assert (x, r) == (1, 0)
    assert auto.keys_seen() == ["keyshim"]


@pytest.mark.parametrize("failure", ["500-after", "timeout"])
async def test_auto_never_runs_a_call_twice(auto: Auto, failure: str) -> None:
    """A 500 or a timeout after sending: the call may have run. Only read-only and idempotent
    methods go on to REST; an add does not (the contact exists once, the script gets the
    XML-RPC fault)."""
    cid = await auto.call("ContactService.add", {"FirstName": "Ada", "Email": "a@x.io"})

    def breaks() -> None:
        if failure == "timeout":
            auto.wire.xmlrpc_failure = "timeout"
        else:
            auto.sim.fail_xmlrpc_requests(failure)

    breaks()
    fault, x, r = await auto.counted("ContactService.add", {"FirstName": "Bo", "Email": "b@x"})
    assert isinstance(fault, xmlrpc.Fault) and (x, r) == (1, 0)
    assert fault.string.startswith(
        "[UpstreamTimeout]" if failure == "timeout" else "[UpstreamError]"
    )
    assert len(auto.sim.db.tables["Contact"]) == 2  # it ran upstream, once
    breaks()
    answer, x, r = await auto.counted("ContactService.load", cid, ["FirstName"])
    assert (answer, x, r) == ({"FirstName": "Ada"}, 1, 1)
    breaks()
    answer, x, r = await auto.counted("ContactService.update", cid, {"LastName": "L"})
    assert (answer, x, r) == (cid, 1, 1)
    # a call that may have run does not mark XML-RPC down: the next call tries it again
    auto.wire.xmlrpc_failure = None
    _, x, r = await auto.counted("ContactService.load", cid, ["FirstName"])
    assert (x, r) == (1, 0)
    assert auto.keys_seen() == ["keyshim"]  # including the calls that fell back to REST


async def test_auto_passes_xmlrpc_answers_on(auto: Auto) -> None:
    """A Keap fault, a 429 or a 401 is XML-RPC answering, not XML-RPC being down."""
    fault, x, r = await auto.counted("ContactService.load", 999, ["Id"])
    assert isinstance(fault, xmlrpc.Fault) and fault.code == 5 and (x, r) == (1, 0)
    auto.sim.fail_xmlrpc_requests("429")
    fault, x, r = await auto.counted("DataService.echo", "x")
    assert isinstance(fault, xmlrpc.Fault) and fault.string.startswith("[Throttled]")
    assert (x, r) == (1, 0)
    assert auto.keys_seen() == ["keyshim"]


async def test_rest_route_sends_nothing_for_untranslated_calls(rest: Auto) -> None:
    fault, x, r = await rest.counted(*UNTRANSLATED)
    assert isinstance(fault, xmlrpc.Fault) and fault.code == 112 and (x, r) == (0, 0)
    assert "has no REST v2 translation" in fault.string
    fault, x, r = await rest.counted("DataService.query", "CProgram", 10, 0, {}, ["Id"])
    assert isinstance(fault, xmlrpc.Fault) and fault.code == 112 and (x, r) == (0, 0)
    fault, x, r = await rest.counted("FileService.getDownloadUrl", 1)  # no REST equivalent
    assert isinstance(fault, xmlrpc.Fault) and fault.code == 112 and (x, r) == (0, 0)
    echo, x, r = await rest.counted("DataService.echo", "local")
    assert (echo, x, r) == ("local", 0, 0)


async def test_fan_out_is_counted_against_the_budget(rest: Auto) -> None:
    assert rest.app.services is not None
    budget = rest.app.services.budget
    turns: list[str] = []
    acquire = budget.acquire

    async def counting(account: Any) -> None:
        turns.append(account.name)
        await acquire(account)

    budget.acquire = counting  # type: ignore[method-assign]
    cid = await rest.call("ContactService.add", {"FirstName": "A", "Email": "a@x.io"})
    assert len(turns) == 1
    # an array field: read, merge, write, re-check = 3 REST requests, 3 turns of the budget
    _, x, r = await rest.counted("ContactService.update", cid, {"EmailAddress2": "b@x.io"})
    assert (x, r) == (0, 3) and len(turns) == 4
    # a custom field adds the model (cached afterwards)
    _, x, r = await rest.counted("ContactService.update", cid, {"_ShoeSize": "9"})
    assert r == 4 and len(turns) == 8
    _, x, r = await rest.counted("ContactService.update", cid, {"_Notes": "n"})
    assert r == 3 and len(turns) == 11
    # a budget that has no turn left refuses the whole fan-out before Keap sees it
    budget.max_wait = 0.0
    for cred in budget._credentials.values():
        cred.paused_until = time.time() + 60
    fault = await rest.call("ContactService.update", cid, {"EmailAddress3": "c@x.io"})
    assert isinstance(fault, xmlrpc.Fault) and fault.string.startswith("[Throttled]")


async def test_rest_uses_the_chain_and_the_401_rule(rest: Auto) -> None:
    chain = rest.store.get_chain("prod")
    assert chain is not None
    rest.store.put_tokens(
        "prod", TokenPair("bogus", chain.refresh_token, time.time() + 9999), time.time()
    )
    before = rest.sim.stats()["refreshes_served"]
    assert await rest.call("DataService.getAppSetting", "Contact", "phonetypes") == (
        "Work,Home,Mobile,Other"
    )
    assert rest.sim.stats()["refreshes_served"] == before + 1
    assert rest.wire.count("token") == 1


async def test_rest_with_a_service_key(settings: Settings, store: SqliteStore) -> None:
    sim = Simulator(SimConfig())
    wire = Wire(sim)
    app = KeyshimApp(replace(settings), lambda s: build_services(s, transport=wire))
    add_account(store, sim, "sak", "rest", service_key=True)
    key = issue_key(store, settings, "sak")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shim.test"
    ) as client:
        body = xmlrpc.dumps_call("ContactService.add", [key, {"Email": "k@x.io"}])
        response = await client.post("/api/xmlrpc", content=body)
        assert xmlrpc.parse_response(response.content) == 1
    await app.shutdown()
    assert wire.count("rest") == 1 and wire.count("xmlrpc") == 0
    assert sim.xmlrpc_endpoint.private_keys_seen == []
