"""The gateway: every request to Keap waits for the budget, carries the credential picked after
the wait, gets one refresh and one retry after a 401, and publishes Keap's quota figures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shim.errors import AccountTokenRefused
from shim.keap.budget import Budget
from shim.keap.client import UpstreamResponse
from shim.keap.gateway import Gateway
from shim.models import Account, TokenPair
from shim.oauth.health import account_healths
from shim.settings import Settings
from tests.support.stack import Stack, add_key_account, issue_key

pytestmark = pytest.mark.anyio

OAUTH = Account(name="a", kind="oauth", created_at=0, client_id="cid", client_secret="s")
KEY = Account(name="k", kind="service_key", created_at=0, service_key="KeapAK-secret")


class _Body:
    async def raw(self) -> AsyncIterator[bytes]:
        yield b"<methodResponse/>"

    async def decoded(self) -> AsyncIterator[bytes]:
        yield b"<methodResponse/>"

    async def aclose(self) -> None:
        return None


class Fakes:
    """Keap answering from a script, a chain that counts refreshes, a store that keeps quota."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.sent: list[dict[str, str]] = []
        self.refreshes = 0
        self.quota: list[dict[str, Any]] = []
        self.waits: list[float] = []

    # upstream
    async def open(self, url: str, body: bytes, headers: dict[str, str]) -> UpstreamResponse:
        self.sent.append(headers)
        quota = {"x-keap-product-quota-available": "99"}
        return UpstreamResponse(self.statuses.pop(0), quota, _Body())

    # chains
    async def access_token(self, account: Account) -> tuple[str, int]:
        return f"token-{self.refreshes}", self.refreshes

    async def refresh(self, account: Account, *, seen_generation: int, reason: str) -> None:
        assert reason == "401" and seen_generation == self.refreshes
        self.refreshes += 1

    # store
    def put_quota(self, figures: dict[str, Any]) -> None:
        self.quota.append(figures)

    # observer
    def observe_upstream(self, seconds: float) -> None:
        return None

    def observe_budget_wait(self, seconds: float) -> None:
        self.waits.append(seconds)


def gateway(fakes: Fakes, limits: str = "off") -> Gateway:
    budget = Budget(
        share=1.0, max_wait=10, clock=time.monotonic, limits=Settings(keap_limits=limits).limits()
    )
    return Gateway(fakes, fakes, budget, fakes, fakes)  # type: ignore[arg-type]


async def test_401_means_one_refresh_and_one_retry() -> None:
    fakes = Fakes(401, 200)
    response = await gateway(fakes).send(OAUTH, "http://keap/xmlrpc", b"x", {"A": "1"})
    assert response.status == 200 and fakes.refreshes == 1
    assert [h["Authorization"] for h in fakes.sent] == ["Bearer token-0", "Bearer token-1"]
    assert all(h["A"] == "1" for h in fakes.sent)


async def test_a_second_401_is_a_fault_not_retried_again() -> None:
    """Keap's 401 to the token a refresh just produced is the legacy ``[InvalidKey]`` (code 2),
    in words that say whose credential it is: the account's, not the script's key."""
    fakes = Fakes(401, 401, 200)
    with pytest.raises(AccountTokenRefused) as info:
        await gateway(fakes).send(OAUTH, "http://keap/xmlrpc", b"x", {})
    assert fakes.refreshes == 1 and len(fakes.sent) == 2
    refused = info.value
    assert refused.fault_code == 2 and refused.fault_string.startswith("[InvalidKey]")
    assert "keyshim account a" in refused.message
    assert "not your keyshim key" in refused.message
    assert "shim account authorize a" in refused.message


async def test_a_token_refreshed_for_a_401_is_not_refreshed_for_another() -> None:
    fakes = Fakes(401, 200, 401, 200)
    gw = gateway(fakes)
    assert (await gw.send(OAUTH, "http://keap/xmlrpc", b"x", {})).status == 200
    with pytest.raises(AccountTokenRefused, match="keyshim account a"):
        await gw.send(OAUTH, "http://keap/xmlrpc", b"x", {})
    assert fakes.refreshes == 1 and len(fakes.sent) == 3


async def test_a_service_key_401_is_not_retried() -> None:
    fakes = Fakes(401, 200)
    response = await gateway(fakes).send(KEY, "http://keap/xmlrpc", b"x", {})
    assert response.status == 401 and fakes.refreshes == 0
    assert fakes.sent == [{"X-Keap-API-Key": "KeapAK-secret"}]


async def test_every_request_waits_for_the_budget_and_quota_is_published() -> None:
    fakes = Fakes(200, 200)
    gw = gateway(fakes, "oauth=20/s")
    started = time.monotonic()
    await asyncio.gather(*(gw.send(OAUTH, "http://keap/xmlrpc", b"x", {}) for _ in range(2)))
    assert time.monotonic() - started >= 0.04 and len(fakes.waits) == 1  # 1/20 s apart
    gw.publish_quota(time.time())
    gw.publish_quota(time.time())  # nothing new: nothing written
    assert len(fakes.quota) == 1 and fakes.quota[0]["a"][0] == {"quota-available": "99"}


async def test_service_key_account(stack: Stack) -> None:
    add_key_account(stack.store, stack.sim, stack.base)
    key = issue_key(stack.store, stack.settings, "sak")
    assert await stack.call("DataService.echo", "sak", key=key) == "sak"


@pytest.mark.slow
async def test_refresh_before_forwarding_once(stack: Stack) -> None:
    chain = stack.store.get_chain("prod")
    assert chain is not None
    # make the stored access token look about to expire
    stack.store.put_tokens(
        "prod", TokenPair(chain.access_token, chain.refresh_token, time.time() + 1), time.time()
    )
    before = stack.sim.stats()["refreshes_served"]
    results = await asyncio.gather(*(stack.call("DataService.echo", str(i)) for i in range(50)))
    assert results == [str(i) for i in range(50)]
    assert stack.sim.stats()["refreshes_served"] == before + 1


async def test_upstream_401_refreshes_and_retries_once(stack: Stack) -> None:
    chain = stack.store.get_chain("prod")
    assert chain is not None
    # a token Keap does not know, with a far expiry: only the 401 reveals it
    stack.store.put_tokens(
        "prod", TokenPair("bogus", chain.refresh_token, time.time() + 9999), time.time()
    )
    before = stack.sim.stats()["refreshes_served"]
    assert await stack.call("DataService.echo", "after401") == "after401"
    assert stack.sim.stats()["refreshes_served"] == before + 1


@pytest.mark.slow
async def test_burst_through_keyshim_never_sees_a_429(stack: Stack) -> None:
    sim = stack.sim
    sim.config.throttle = True
    sim.config.oauth_spike_limit = 5  # Keap (simulated) admits one call every 0.2 s...
    services = stack.app.services
    assert services is not None
    services.budget.limits = {"oauth": (4.0, 1500.0), "service_key": (2.0, 240.0)}
    services.budget._credentials.clear()  # ...and keyshim's budget is set just under it
    started = time.monotonic()
    results = await asyncio.gather(*(stack.call("DataService.echo", str(i)) for i in range(12)))
    assert results == [str(i) for i in range(12)]
    assert time.monotonic() - started >= 2.5  # smoothed: 12 calls at 4 a second
    assert sim.stats()["xmlrpc_throttled"] == 0
    services.audit.flush_now()
    health = {h.account: h for h in account_healths(stack.store, time.time())}
    quota = health["prod"].facts["keap_quota"]
    assert "quota-available" in quota and "throttle-limit" in quota


async def test_keap_refusing_every_token_gets_one_refresh_then_faults(stack: Stack) -> None:
    """Keap answers 401 whatever the token (issue 11): the first 401 refreshes the chain; the
    token that refresh produced is never refreshed again because of a 401: its calls get
    ``[InvalidKey]`` naming the account, without another refresh each."""
    before = stack.sim.stats()["refreshes_served"]
    stack.sim.fail_xmlrpc_requests(*["401"] * 8)
    faults = [await stack.fault("DataService.echo", "hello") for _ in range(4)]
    assert stack.sim.stats()["refreshes_served"] == before + 1
    # one call with a refresh and its retry, then one request a call
    assert stack.sim.stats()["xmlrpc_failures_pending"] == 8 - 2 - 3
    for fault in faults:
        assert fault.code == 2 and fault.string.startswith("[InvalidKey]"), fault.string
        assert "keyshim account prod" in fault.string, fault.string
        assert "shim account authorize prod" in fault.string, fault.string
