"""Real client libraries through route ``rest``, over real loopback sockets: keyshim (uvicorn)
in front of the simulator (uvicorn), an account routed ``rest``, and a whole legacy session
from Python's ``xmlrpc.client`` and from the PyPI wrapper ``infusionsoft-client`` (the
``test`` extra): connection test, add a contact, tag it, query, load. The same session runs
through route ``xmlrpc`` too, and both must answer alike.

Of the PyPI wrappers, ``infusionsoft-client`` (1.5.1) is the one that speaks XML-RPC on
Python 3: ``infusionsoft`` (0.2.0) imports Python 2's ``xmlrpclib`` and fails to import, and
``infusionsoft-python`` calls Keap's REST v1 API, not XML-RPC.
"""

from __future__ import annotations

import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from shim.models import Account
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.servers import BackgroundServer
from tests.support.stack import issue_key

pytestmark = pytest.mark.timeout(60)

ROUTES = ("xmlrpc", "rest")


@dataclass
class Live:
    sim: Simulator
    url: str
    key: str
    store: SqliteStore


@pytest.fixture
def live(settings: Settings, store: SqliteStore, request: pytest.FixtureRequest) -> Iterator[Live]:
    route = request.param
    before = set(threading.enumerate())
    sim = Simulator(SimConfig())
    servers = [BackgroundServer(sim.app)]
    try:
        servers[0].__enter__()
        base = servers[0].url
        store.add_account(
            Account(
                name="prod", kind="service_key", created_at=time.time(),
                service_key=sim.add_service_key(), xmlrpc_url=base + "/crm/xmlrpc/v1",
                rest_url=base + "/crm/rest/v2", route=route,
            )
        )  # fmt: skip
        key = issue_key(store, settings, "prod")
        servers.append(BackgroundServer(KeyshimApp(settings, build_services)))
        servers[1].__enter__()
        yield Live(sim, servers[1].url + "/api/xmlrpc", key, store)
    finally:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda s: s.__exit__(None, None, None), reversed(servers)))
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)


Call = Callable[..., Any]


def session(call: Call) -> dict[str, Any]:
    """A typical legacy script: ``call("Service.method", *args)`` sends one call (key added)."""
    out: dict[str, Any] = {}
    out["echo"] = call("DataService.echo", "hello")
    out["setting"] = call("DataService.getAppSetting", "Contact", "optiontypes")
    cid = call("ContactService.add", {"FirstName": "Ada", "Email": "ada@example.com"})
    tag = call("DataService.add", "ContactGroup", {"GroupName": "Members"})
    out["tagged"] = call("ContactService.addToGroup", cid, tag)
    out["assign"] = call(
        "DataService.query", "ContactGroupAssign", 10, 0, {"ContactId": cid}, ["GroupId"]
    )
    out["found"] = call(
        "DataService.query", "Contact", 10, 0, {"Email": "ada@example.com"}, ["Id", "FirstName"]
    )
    out["by_email"] = call("ContactService.findByEmail", "ada@example.com", ["Id"])
    out["loaded"] = call("ContactService.load", cid, ["FirstName", "Email", "Groups"])
    out["ids"] = (cid, tag)
    try:
        call("ContactService.load", 999_999, ["Id"])
    except xmlrpc.client.Fault as fault:
        out["missing"] = (fault.faultCode, fault.faultString)
    return out


def expected(result: dict[str, Any]) -> None:
    cid, tag = result["ids"]
    assert isinstance(cid, int) and isinstance(tag, int)
    assert result["echo"] == "hello" and isinstance(result["setting"], str)
    assert result["tagged"] is True
    assert result["assign"] == [{"GroupId": tag}]
    assert result["found"] == [{"Id": cid, "FirstName": "Ada"}]
    assert result["by_email"] == [{"Id": cid}]
    assert result["loaded"] == {"FirstName": "Ada", "Email": "ada@example.com", "Groups": str(tag)}
    assert result["missing"][1].startswith("[RecordNotFound]")


def _check_route(live: Live, route: str) -> None:
    stats = live.sim.stats()
    if route == "rest":
        assert stats["xmlrpc_calls"] == 0, "route rest must not call Keap's XML-RPC"
        assert live.sim.rest_endpoint.calls > 0
    else:
        assert stats["xmlrpc_calls"] > 0


@pytest.mark.parametrize("live", ROUTES, indirect=True)
def test_xmlrpc_client_session(live: Live, request: pytest.FixtureRequest) -> None:
    route = request.node.callspec.params["live"]
    proxy = xmlrpc.client.ServerProxy(live.url, use_builtin_types=True)
    with proxy:

        def call(method: str, *args: Any) -> Any:
            service, name = method.split(".")
            return getattr(getattr(proxy, service), name)(live.key, *args)

        result = session(call)
    expected(result)
    _check_route(live, route)


@pytest.mark.parametrize("live", ROUTES, indirect=True)
def test_infusionsoft_client_session(live: Live, request: pytest.FixtureRequest) -> None:
    infusionsoft_client = pytest.importorskip("infusionsoft.client")
    route = request.node.callspec.params["live"]
    # The library's own proxy (key as a default first argument, retries on [InvalidConfig]).
    # Its initialize() accepts only https URLs or an app name, so the proxy is built directly.
    api = infusionsoft_client.InfusionsoftServerProxy(
        live.url, default_args=[live.key], use_builtin_types=True
    )

    def call(method: str, *args: Any) -> Any:
        service, name = method.split(".")
        return getattr(getattr(api, service), name)(*args)

    result = session(call)
    expected(result)
    _check_route(live, route)
