"""Chains: single-flight refresh, lock, fencing, journal, retries, spent tokens, races, recovery.

Two kinds of "Keap" here: the simulator in-process (``httpx.ASGITransport``) where its real
single-use rotation matters, and a scripted token endpoint on ``httpx.MockTransport`` where a
test needs a precise failure at a precise moment (and to look at the store mid-request).
Time is a list (``clock=lambda: t[0]``) and sleeps are recorded, never slept.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from shim.errors import (
    NoTokens,
    ReauthorizationRequired,
    RefreshInProgress,
    TokenEndpointError,
    TransientTokenError,
)
from shim.keap.client import Upstream
from shim.models import Account, RefreshJournal, TokenPair
from shim.oauth.chains import ChainEvent, Chains
from shim.oauth.token_policy import fingerprint
from shim.serve.runtime import open_store
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.stack import add_oauth_account

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

BASE = "http://keap.test"
T0 = 1_700_000_000.0
CLIENT_SECRET = "CLIENT-SECRET-xyz"
OLD_AT, OLD_RT = "AT-old-secret", "RT-old-secret"
SPENT_BODIES = [
    {"error": "invalid_grant", "error_description": "Invalid refresh token"},
    {"error": "invalid_request", "error_description": "Invalid Refresh Token"},
]


# --- a scripted token endpoint -------------------------------------------------------------


Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response] | str


class TokenScript:
    """A token endpoint on httpx.MockTransport: answers are queued; "ok" when none is left."""

    def __init__(self) -> None:
        self.answers: deque[Answer] = deque()
        self.requests: list[dict[str, str]] = []
        self.headers: list[httpx.Headers] = []
        self.issued = 0

    def queue(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def fresh(self) -> httpx.Response:
        self.issued += 1
        return httpx.Response(
            200,
            json={
                "access_token": f"AT-new-{self.issued}",
                "refresh_token": f"RT-new-{self.issued}",
                "token_type": "bearer",
                "expires_in": 86400,
                "scope": "full|ab123.infusionsoft.com",
            },
        )

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(dict(parse_qsl(request.content.decode())))
        self.headers.append(request.headers)
        answer = self.answers.popleft() if self.answers else "ok"
        if isinstance(answer, str):
            return self.fresh() if answer == "ok" else failure(answer, request)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)


def failure(kind: str, request: httpx.Request) -> httpx.Response:
    """Transient failures, as a gateway (or the network) produces them."""
    if kind == "500":
        return httpx.Response(500, html="<html><h1>Internal Server Error</h1></html>")
    if kind == "503":
        return httpx.Response(503, json={"fault": {"faultstring": "unavailable"}})
    if kind == "429":
        return httpx.Response(429, json={"code": "429"}, headers={"Retry-After": "7"})
    if kind == "timeout":
        raise httpx.ReadTimeout("timed out", request=request)
    if kind == "reset":
        raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
    if kind == "broken":
        raise httpx.RemoteProtocolError("peer closed connection", request=request)
    if kind == "connect":
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
    raise AssertionError(kind)


class Harness:
    """One "process": a Chains with a scripted endpoint, a fake clock and recorded sleeps."""

    def __init__(self, settings: Settings, store: SqliteStore, owner: str = "proc-A") -> None:
        self.settings = settings
        self.store = store
        self.t = [T0]
        self.keap = TokenScript()
        self.sleeps: list[float] = []
        self.events: list[ChainEvent] = []
        self.upstream = Upstream(transport=httpx.MockTransport(self.keap.handler))
        self.chains = Chains(
            store,
            self.upstream,
            settings,
            owner=owner,
            clock=lambda: self.t[0],
            sleep=self.sleep,
            on_event=self.on_event,
        )
        self.account = Account(
            name="prod",
            kind="oauth",
            created_at=T0,
            client_id="client-1",
            client_secret=CLIENT_SECRET,
            token_url=BASE + "/token",
        )
        store.add_account(self.account)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)

    async def on_event(self, event: ChainEvent) -> None:
        self.events.append(event)

    @property
    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def put(self, expires_in: float, *, issued_ago: float = 0.0) -> int:
        now = self.t[0]
        pair = TokenPair(OLD_AT, OLD_RT, now + expires_in)
        return self.store.put_tokens("prod", pair, now - issued_ago).generation

    def chain(self) -> Any:
        chain = self.store.get_chain("prod")
        assert chain is not None
        return chain


@pytest.fixture
async def h(settings: Settings, store: SqliteStore) -> AsyncIterator[Harness]:
    harness = Harness(settings, store)
    yield harness
    await harness.upstream.aclose()


async def _wait_held(sim: Simulator, count: int) -> None:
    for _ in range(500):
        if sim.held == count:
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"expected {count} held refreshes, have {sim.held}")


# --- single flight -------------------------------------------------------------------------


async def test_hundred_concurrent_calls_share_one_refresh(
    settings: Settings, store: SqliteStore
) -> None:
    sim = Simulator(SimConfig(hold_refresh="before"))
    account = add_oauth_account(store, sim, BASE, lifetime=1.0)  # inside the inline margin
    old = store.get_chain("prod")
    assert old is not None
    upstream = Upstream(transport=httpx.ASGITransport(app=sim.app))
    chains = Chains(store, upstream, settings, owner="proc-A")
    try:
        task = asyncio.gather(*(chains.access_token(account) for _ in range(100)))
        await _wait_held(sim, 1)
        await asyncio.sleep(0.05)  # every caller is now waiting on the one refresh
        assert not task.done()
        assert sim.stats()["token_requests"] == 1
        sim.release()
        results = await task
    finally:
        await upstream.aclose()
    stats = sim.stats()
    assert stats["refreshes_served"] == 1 and stats["token_requests"] == 1
    assert chains.refreshes == 1
    chain = store.get_chain("prod")
    assert chain is not None and chain.generation == old.generation + 1
    assert set(results) == {(chain.access_token, chain.generation)}
    assert chain.access_token != old.access_token


async def test_second_process_waits_for_the_lock_holder(
    settings: Settings, store: SqliteStore
) -> None:
    sim = Simulator(SimConfig(hold_refresh="before"))
    account = add_oauth_account(store, sim, BASE, lifetime=1.0)
    other_store = open_store(settings)  # its own connection: another process on the same db
    up_a = Upstream(transport=httpx.ASGITransport(app=sim.app))
    up_b = Upstream(transport=httpx.ASGITransport(app=sim.app))
    a = Chains(store, up_a, settings, owner="host:1:a")
    b = Chains(other_store, up_b, settings, owner="host:2:b")
    try:
        first = asyncio.create_task(a.access_token(account))
        await _wait_held(sim, 1)
        assert store.lock_holder("refresh:prod") == "host:1:a"
        second = asyncio.create_task(b.access_token(account))
        await asyncio.sleep(0.3)  # b polls the store several times meanwhile
        assert not second.done()
        assert sim.stats()["token_requests"] == 1  # b did not go to Keap
        sim.release()
        token_a, token_b = await first, await second
    finally:
        await up_a.aclose()
        await up_b.aclose()
        other_store.close()
    assert token_a == token_b and token_a[1] == 2
    assert sim.stats()["token_requests"] == 1 and sim.stats()["refreshes_served"] == 1
    assert (a.refreshes, b.refreshes) == (1, 0)
    assert store.lock_holder("refresh:prod") is None


# --- journal and durable storage -----------------------------------------------------------


async def test_journal_is_written_before_the_grant_and_cleared_after(h: Harness) -> None:
    generation = h.put(1.0)
    seen: list[Any] = []

    def inspect(request: httpx.Request) -> httpx.Response:
        chain = h.chain()
        seen.append(chain.in_flight)
        assert h.store.lock_holder("refresh:prod") == "proc-A"
        assert chain.generation == generation  # nothing stored yet
        return h.keap.fresh()

    h.keap.queue(inspect)
    token, got_generation = await h.chains.access_token(h.account)
    journal = seen[0]
    assert journal == RefreshJournal("prod", fingerprint(OLD_RT), "proc-A", T0)
    chain = h.chain()
    assert chain.in_flight is None
    assert h.store.lock_holder("refresh:prod") is None
    # The new pair was stored (generation + 1) and that stored pair is what was handed out.
    assert (token, got_generation) == ("AT-new-1", generation + 1)
    assert chain.generation == generation + 1
    assert (chain.access_token, chain.refresh_token) == ("AT-new-1", "RT-new-1")
    assert chain.expires_at == T0 + 86400 and chain.last_refresh_at == T0
    # What was sent: the stored refresh token, client credentials by HTTP Basic only.
    assert h.keap.requests == [{"grant_type": "refresh_token", "refresh_token": OLD_RT}]
    basic = base64.b64encode(f"client-1:{CLIENT_SECRET}".encode()).decode()
    assert h.keap.headers[0]["authorization"] == f"Basic {basic}"
    assert h.kinds == []


async def test_the_returned_chain_is_the_stored_one(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    generation = h.put(1.0)
    stored: list[Any] = []
    real_put = h.store.put_tokens

    def put_tokens(account: str, pair: TokenPair, now: float, *, generation: int) -> Any:
        chain = real_put(account, pair, now, generation=generation)
        stored.append(chain)
        return chain

    monkeypatch.setattr(h.store, "put_tokens", put_tokens)
    chain = await h.chains.refresh(h.account, seen_generation=generation, reason="inline")
    assert len(stored) == 1 and chain is stored[0]  # stored durably, then handed out
    assert chain.generation == generation + 1 and h.chains.refreshes == 1


async def test_simulator_failures_are_retried(settings: Settings, store: SqliteStore) -> None:
    sim = Simulator(SimConfig())
    account = add_oauth_account(store, sim, BASE, lifetime=1.0)
    sim.fail_token_requests("503", "reset", {"kind": "timeout", "seconds": 0.01})
    upstream = Upstream(transport=httpx.ASGITransport(app=sim.app))
    chains = Chains(store, upstream, settings, owner="a")
    try:
        token, generation = await chains.access_token(account)
    finally:
        await upstream.aclose()
    assert generation == 2 and sim.stats()["token_requests"] == 4
    assert sim.stats()["refreshes_served"] == 1
    assert sim.auth.credential(token, None, sim.now()) is not None


async def test_a_lost_answer_spends_the_token_and_the_chain_is_dead(
    settings: Settings, store: SqliteStore
) -> None:
    """Keap rotated the token but the answer never arrived: nothing can save this chain."""
    sim = Simulator(SimConfig())
    account = add_oauth_account(store, sim, BASE, lifetime=1.0)
    sim.fail_token_requests("reset-after")
    upstream = Upstream(transport=httpx.ASGITransport(app=sim.app))
    chains = Chains(store, upstream, settings, owner="a")
    try:
        with pytest.raises(ReauthorizationRequired):
            await chains.access_token(account)
    finally:
        await upstream.aclose()
    assert sim.stats()["token_requests"] == 2  # the retry found the token spent
    chain = store.get_chain("prod")
    assert chain is not None and chain.state == "needs_reauth"


async def test_fresh_token_needs_no_refresh(h: Harness) -> None:
    generation = h.put(3600)
    assert await h.chains.access_token(h.account) == (OLD_AT, generation)
    assert h.keap.requests == []


async def test_no_tokens_and_dead_chain(h: Harness) -> None:
    with pytest.raises(NoTokens):
        await h.chains.access_token(h.account)
    h.put(3600)
    h.store.end_refresh_failed("prod", "spent", h.t[0], dead=True)
    with pytest.raises(ReauthorizationRequired):
        await h.chains.access_token(h.account)
    with pytest.raises(ReauthorizationRequired):
        await h.chains.refresh(h.account, seen_generation=None, reason="forced")
    assert h.keap.requests == []


# --- transient failures --------------------------------------------------------------------

TRANSIENT = ["500", "503", "429", "timeout", "reset", "broken", "connect"]


@pytest.mark.parametrize("kind", TRANSIENT)
async def test_one_transient_failure_is_retried_within_the_refresh(h: Harness, kind: str) -> None:
    generation = h.put(1.0)
    h.keap.queue(kind)
    chain = await h.chains.refresh(h.account, seen_generation=generation, reason="inline")
    assert chain.generation == generation + 1 and chain.state == "ok"
    assert len(h.keap.requests) == 2
    assert h.keap.requests[0] == h.keap.requests[1]  # the same (unspent) refresh token again
    assert len(h.sleeps) == 1
    if kind == "429":
        assert h.sleeps == [7.0]  # Retry-After honoured
    else:
        assert settings_backoff_bounds(h.settings, h.sleeps[0])
    assert chain.failures == 0 and chain.last_error is None
    assert h.kinds == []  # a failure that never surfaced is not news


def settings_backoff_bounds(settings: Settings, wait: float) -> bool:
    return settings.retry_base / 2 <= wait <= settings.retry_cap


@pytest.mark.parametrize("kind", TRANSIENT)
async def test_transient_failures_exhaust_retries_without_killing_the_chain(
    h: Harness, kind: str
) -> None:
    retries = h.settings.refresh_retries
    generation = h.put(3600)
    h.keap.queue(*[kind] * (retries + 1))
    with pytest.raises(TransientTokenError):
        await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    assert len(h.keap.requests) == retries + 1
    assert len(h.sleeps) == retries
    if kind == "429":
        assert h.sleeps == [7.0] * retries
    else:
        assert all(settings_backoff_bounds(h.settings, s) for s in h.sleeps)
    chain = h.chain()
    assert chain.state == "ok" and chain.generation == generation
    assert chain.failures == 1 and chain.last_error and chain.last_error_at == T0
    assert chain.in_flight is None
    assert chain.refresh_token == OLD_RT
    assert h.store.lock_holder("refresh:prod") is None
    assert h.kinds == ["degraded"]

    # Another failed refresh counts, but does not alert again.
    h.keap.queue(*[kind] * (retries + 1))
    with pytest.raises(TransientTokenError):
        await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    assert h.chain().failures == 2 and h.kinds == ["degraded"]

    # Then a success resets the failures and says so.
    chain = await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    assert chain.generation == generation + 1
    assert chain.failures == 0 and chain.last_error is None and chain.state == "ok"
    assert h.kinds == ["degraded", "recovered"]
    assert h.events[-1].error is None and h.events[0].account == "prod"


async def test_the_lock_is_held_over_the_retry_wait(h: Harness) -> None:
    generation = h.put(1.0)
    held_during: list[str | None] = []

    def second(request: httpx.Request) -> httpx.Response:
        held_during.append(h.store.lock_holder("refresh:prod"))
        return h.keap.fresh()

    h.keap.queue("429", second)
    await h.chains.refresh(h.account, seen_generation=generation, reason="inline")
    assert h.sleeps == [7.0]
    assert held_during == ["proc-A"]
    assert h.store.lock_holder("refresh:prod") is None


async def test_backoff_grows_and_is_capped(settings: Settings, store: SqliteStore) -> None:
    s = replace(settings, refresh_retries=6, retry_base=1.0, retry_cap=4.0)
    h = Harness(s, store)
    try:
        generation = h.put(3600)
        h.keap.queue(*["503"] * 7)
        with pytest.raises(TransientTokenError):
            await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    finally:
        await h.upstream.aclose()
    assert len(h.sleeps) == 6
    assert all(0.5 <= w <= 4.0 for w in h.sleeps)
    assert h.sleeps[0] <= 1.0  # first retry: at most base


async def test_inline_failure_with_time_left_uses_the_old_token(h: Harness) -> None:
    generation = h.put(1.5)  # inside the 2 s inline margin, but still valid
    h.keap.queue(*["503"] * 10)
    assert await h.chains.access_token(h.account) == (OLD_AT, generation)
    chain = h.chain()
    assert chain.state == "ok" and chain.failures == 1
    assert h.kinds == ["degraded"]


async def test_inline_failure_without_time_left_raises(h: Harness) -> None:
    h.put(0.5)
    h.keap.queue(*["503"] * 10)
    with pytest.raises(TransientTokenError):
        await h.chains.access_token(h.account)
    assert h.chain().state == "ok"


def lose_locks(h: Harness, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Record the locks this process takes; the returned function loses them, as a PostgreSQL
    lock is lost when its connection dies (a flock cannot be lost while its process lives)."""
    taken: list[Any] = []
    real = h.store.try_lock

    def recording(name: str, owner: str, *, shared: bool = False) -> Any:
        held = real(name, owner, shared=shared)
        if held is not None:
            taken.append(held)
        return held

    monkeypatch.setattr(h.store, "try_lock", recording)

    def lose() -> None:
        for held in taken:
            held.release()

    return lose


async def test_lost_lock_stops_retrying(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    generation = h.put(3600)
    lose = lose_locks(h, monkeypatch)
    b_lock: list[Any] = []

    def stolen(request: httpx.Request) -> httpx.Response:
        # This process lost its lock (its connection died); another process took it over.
        lose()
        b_lock.append(h.store.try_lock("refresh:prod", "proc-B"))
        return httpx.Response(503, json={})

    h.keap.queue("503", stolen, "503", "503")
    with pytest.raises(TransientTokenError):
        await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    assert len(h.keap.requests) == 2  # not refresh_retries + 1
    assert h.store.lock_holder("refresh:prod") == "proc-B"  # not released by A
    assert h.chain().state == "ok"
    b_lock[0].release()


async def test_lost_lock_leaves_the_new_holders_refresh_alone(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    generation = h.put(3600)
    b_journal = RefreshJournal("prod", fingerprint(OLD_RT), "proc-B", T0 + 200)
    lose = lose_locks(h, monkeypatch)
    b_lock: list[Any] = []

    def stolen(request: httpx.Request) -> httpx.Response:
        lose()
        b_lock.append(h.store.try_lock("refresh:prod", "proc-B"))
        h.store.begin_refresh(b_journal)  # B's refresh is now in flight
        return httpx.Response(503, json={})

    h.keap.queue("503", stolen)
    with pytest.raises(TransientTokenError):
        await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    chain = h.chain()
    assert chain.in_flight == b_journal
    assert chain.failures == 0
    assert h.kinds == []
    b_lock[0].release()


async def test_a_stale_pair_is_refused_and_the_stored_chain_used(h: Harness) -> None:
    """Fencing: while this process waited for Keap, someone else stored a newer pair (a human
    imported one). The answer this refresh got is never written over it."""
    generation = h.put(3600)

    def overtaken(request: httpx.Request) -> httpx.Response:
        h.store.put_tokens("prod", TokenPair("AT-human", "RT-human", T0 + 999), T0)
        return h.keap.fresh()

    h.keap.queue(overtaken)
    chain = await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    assert chain.generation == generation + 1
    assert (chain.access_token, chain.refresh_token) == ("AT-human", "RT-human")
    assert h.chain().refresh_token == "RT-human"  # never overwritten by the stale answer


async def test_a_spent_answer_after_someone_rotated_is_not_a_death(h: Harness) -> None:
    generation = h.put(3600)

    def overtaken(request: httpx.Request) -> httpx.Response:
        h.store.put_tokens("prod", TokenPair("AT-other", "RT-other", T0 + 999), T0)
        return httpx.Response(400, json=SPENT_BODIES[0])

    h.keap.queue(overtaken)
    chain = await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    assert chain.state == "ok" and chain.access_token == "AT-other"
    assert h.chain().state == "ok" and h.kinds == []


# --- spent refresh tokens ------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401])
@pytest.mark.parametrize("body", SPENT_BODIES, ids=lambda b: b["error"])
async def test_spent_token_kills_the_chain(h: Harness, body: dict[str, str], status: int) -> None:
    generation = h.put(1.0)
    h.keap.queue(httpx.Response(status, json=body))
    with pytest.raises(ReauthorizationRequired) as info:
        await h.chains.access_token(h.account)
    assert "shim account authorize" in info.value.message
    assert len(h.keap.requests) == 1  # a spent token is never retried
    chain = h.chain()
    assert chain.state == "needs_reauth" and chain.generation == generation
    assert chain.in_flight is None and chain.failures == 1
    assert chain.last_error is not None and body["error"] in chain.last_error
    assert h.kinds == ["dead"]
    assert h.events[0].error == chain.last_error
    # Dead stays dead, without another token request.
    with pytest.raises(ReauthorizationRequired):
        await h.chains.access_token(h.account)
    assert len(h.keap.requests) == 1


@pytest.mark.parametrize("body", SPENT_BODIES, ids=lambda b: b["error"])
async def test_spent_after_another_process_won_uses_the_winner(
    h: Harness, body: dict[str, str]
) -> None:
    generation = h.put(1.0)

    def lost_race(request: httpx.Request) -> httpx.Response:
        # Another process rotated the chain while this grant was in flight.
        pair = TokenPair("AT-winner", "RT-winner", h.t[0] + 86400)
        h.store.put_tokens("prod", pair, h.t[0])
        return httpx.Response(400, json=body)

    h.keap.queue(lost_race)
    token, got = await h.chains.access_token(h.account)
    assert (token, got) == ("AT-winner", generation + 1)
    chain = h.chain()
    assert chain.state == "ok" and chain.failures == 0 and chain.refresh_token == "RT-winner"
    assert h.kinds == []


async def test_real_race_with_the_simulator_kills_nothing(
    settings: Settings, store: SqliteStore
) -> None:
    """Two processes, one refresh token: the simulator spends it once; nobody marks it dead."""
    sim = Simulator(SimConfig(hold_refresh="before"))
    account = add_oauth_account(store, sim, BASE)
    other_store = open_store(settings)
    up_a = Upstream(transport=httpx.ASGITransport(app=sim.app))
    up_b = Upstream(transport=httpx.ASGITransport(app=sim.app))
    a = Chains(store, up_a, settings, owner="a")
    b = Chains(other_store, up_b, settings, owner="b")
    try:
        first = asyncio.create_task(a.refresh(account, seen_generation=1, reason="401"))
        await _wait_held(sim, 1)
        second = asyncio.create_task(b.refresh(account, seen_generation=1, reason="401"))
        await asyncio.sleep(0.1)
        sim.release()
        chain_a, chain_b = await first, await second
    finally:
        await up_a.aclose()
        await up_b.aclose()
        other_store.close()
    assert chain_a.generation == chain_b.generation == 2
    assert chain_a.access_token == chain_b.access_token
    assert sim.stats()["refreshes_served"] == 1 and sim.stats()["refresh_requests"] == 1


# --- the 401 path and "settled" refreshes --------------------------------------------------


async def test_401_refreshes_even_when_not_due(h: Harness) -> None:
    generation = h.put(86400)
    chain = await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    assert chain.generation == generation + 1 and len(h.keap.requests) == 1


async def test_401_with_an_older_generation_takes_the_newer_chain(h: Harness) -> None:
    h.put(86400)
    generation = h.put(86400)  # somebody already refreshed since the caller looked
    chain = await h.chains.refresh(h.account, seen_generation=generation - 1, reason="401")
    assert chain.generation == generation and h.keap.requests == []


async def test_scheduled_refresh_only_when_due(h: Harness) -> None:
    generation = h.put(86400)
    chain = await h.chains.refresh(h.account, seen_generation=None, reason="scheduled")
    assert chain.generation == generation and h.keap.requests == []
    chain = await h.chains.refresh(h.account, seen_generation=None, reason="forced")
    assert chain.generation == generation + 1 and len(h.keap.requests) == 1


# --- other endpoint errors -----------------------------------------------------------------


async def test_invalid_client_does_not_kill_the_chain(
    settings: Settings, store: SqliteStore
) -> None:
    sim = Simulator(SimConfig())
    account = add_oauth_account(store, sim, BASE)
    events: list[ChainEvent] = []

    async def on_event(event: ChainEvent) -> None:
        events.append(event)

    upstream = Upstream(transport=httpx.ASGITransport(app=sim.app))
    chains = Chains(store, upstream, settings, owner="a", on_event=on_event)
    wrong = replace(account, client_secret="not-the-secret")
    try:
        with pytest.raises(TokenEndpointError) as info:
            await chains.refresh(wrong, seen_generation=1, reason="401")
        assert not isinstance(info.value, ReauthorizationRequired | TransientTokenError)
        assert info.value.status == 401
        assert sim.stats()["token_requests"] == 1  # a bad client secret is not retried
        chain = store.get_chain("prod")
        assert chain is not None and chain.state == "ok" and chain.failures == 1
        assert chain.last_error is not None and "invalid_client" in chain.last_error
        assert [e.kind for e in events] == ["degraded"]
        # The refresh token was never spent: fixing the secret is enough.
        chain = await chains.refresh(account, seen_generation=1, reason="401")
    finally:
        await upstream.aclose()
    assert chain.generation == 2 and chain.failures == 0
    assert [e.kind for e in events] == ["degraded", "recovered"]


async def test_an_alert_failure_never_breaks_a_refresh(
    settings: Settings, store: SqliteStore
) -> None:
    h = Harness(settings, store)

    async def broken(event: ChainEvent) -> None:
        raise RuntimeError("webhook down")

    h.chains.on_event = broken
    try:
        generation = h.put(1.0)
        h.keap.queue(httpx.Response(400, json=SPENT_BODIES[0]))
        with pytest.raises(ReauthorizationRequired):
            await h.chains.refresh(h.account, seen_generation=generation, reason="inline")
    finally:
        await h.upstream.aclose()
    assert h.chain().state == "needs_reauth"


# --- recovery ------------------------------------------------------------------------------


async def test_recover_finishes_a_dead_process_journal(h: Harness) -> None:
    generation = h.put(86400)  # not due: only the journal says "refresh me"
    h.store.begin_refresh(RefreshJournal("prod", fingerprint(OLD_RT), "ghost:99:dead", T0 - 5))
    assert h.store.lock_holder("refresh:prod") is None
    assert await h.chains.recover([h.account]) == ["prod"]
    chain = h.chain()
    assert chain.generation == generation + 1 and chain.in_flight is None
    assert h.keap.requests == [{"grant_type": "refresh_token", "refresh_token": OLD_RT}]


async def test_recover_skips_chains_with_a_live_lock(h: Harness) -> None:
    generation = h.put(86400)
    journal = RefreshJournal("prod", fingerprint(OLD_RT), "live:1:x", T0 - 1)
    h.store.begin_refresh(journal)
    held = h.store.try_lock("refresh:prod", "live:1:x")
    assert held is not None
    assert await h.chains.recover([h.account]) == []
    held.release()
    chain = h.chain()
    assert chain.generation == generation and chain.in_flight == journal
    assert h.keap.requests == []


async def test_recover_skips_what_needs_no_recovery(h: Harness) -> None:
    service = Account(name="sak", kind="service_key", created_at=T0, service_key="KeapAK-x")
    h.store.add_account(service)
    h.put(86400)  # no journal
    assert await h.chains.recover([h.account, service]) == []
    h.store.begin_refresh(RefreshJournal("prod", fingerprint(OLD_RT), "ghost", T0))
    h.store.end_refresh_failed("prod", "spent", T0, dead=True)  # dead chains stay dead
    assert await h.chains.recover([h.account, service]) == []
    assert h.keap.requests == []


async def test_recover_reports_a_spent_journal_token_as_failed(h: Harness) -> None:
    h.put(86400)
    h.store.begin_refresh(RefreshJournal("prod", fingerprint(OLD_RT), "ghost", T0))
    # The dead process's grant went through and its answer was lost: the token is spent.
    h.keap.queue(httpx.Response(400, json=SPENT_BODIES[1]))
    assert await h.chains.recover([h.account]) == []
    assert h.chain().state == "needs_reauth"
    assert h.kinds == ["dead"]


def test_events_are_plain_data() -> None:
    event = ChainEvent("prod", "dead", "boom", T0)
    assert json.loads(json.dumps(event.__dict__))["kind"] == "dead"


async def test_a_live_owners_journal_is_waited_for_then_taken_over(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process that is still connected left a journal (it lost its lock when the
    database restarted): this one waits for it rather than spend a token it may have spent,
    and takes the refresh over once the journal is older than any refresh can take."""
    generation = live_foreign_journal(h, monkeypatch, started_at=T0)
    with pytest.raises(RefreshInProgress):
        await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    assert h.keap.requests == []
    age_journal(h.store, "prod", h.chains._longest_refresh() + 1)  # by the store's clock
    chain = await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    assert chain.generation == generation + 1 and chain.in_flight is None
    assert h.keap.requests == [{"grant_type": "refresh_token", "refresh_token": OLD_RT}]


def live_foreign_journal(h: Harness, monkeypatch: pytest.MonkeyPatch, *, started_at: float) -> int:
    """A journal another process, still connected, wrote at ``started_at`` (its clock) on
    top of a fresh chain; waiting moves the fake clock on. Returns the chain's generation."""
    generation = h.put(3600)
    h.store.begin_refresh(RefreshJournal("prod", fingerprint(OLD_RT), "other:1:x", started_at))
    monkeypatch.setattr(h.store, "owner_alive", lambda owner: owner == "other:1:x")

    async def sleep(seconds: float) -> None:
        h.t[0] += seconds
        await asyncio.sleep(0)

    h.chains.sleep = sleep
    return generation


def age_journal(store: SqliteStore, account: str, seconds: float) -> None:
    """Make the journal row ``seconds`` older by the store's clock (the one that judges it)."""
    with store._write() as conn:
        conn.execute(
            "UPDATE refresh_journal SET stamped_at = stamped_at - ? WHERE account = ?",
            (seconds, account),
        )


@pytest.mark.parametrize("skew", [-600.0, 600.0, 86400.0])
async def test_a_live_owners_journal_is_judged_by_the_stores_clock(
    h: Harness, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    """Another host wrote the journal a moment ago; this host's clock is minutes (or a day)
    off. Its own clock must not make the journal look abandoned: the refresh token may be
    spent already, and spending it again kills the chain."""
    generation = live_foreign_journal(h, monkeypatch, started_at=T0 - skew)
    with pytest.raises(RefreshInProgress):
        await h.chains.refresh(h.account, seen_generation=generation, reason="401")
    assert h.keap.requests == []
