"""The background refresher: one active across processes, refreshes only what is due."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from shim.keap.client import Upstream
from shim.models import Account, RefreshJournal, TokenPair
from shim.oauth.chains import Chains
from shim.oauth.scheduler import LOCK, Scheduler
from shim.oauth.token_policy import fingerprint
from shim.serve.runtime import open_store
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.stack import add_oauth_account

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

BASE = "http://keap.test"
DAY = 86400.0


class Process:
    """One keyshim process: its own store connection, client, Chains and Scheduler."""

    def __init__(self, settings: Settings, sim: Simulator, owner: str, offset: list[float]) -> None:
        self.store = open_store(settings)
        self.upstream = Upstream(transport=httpx.ASGITransport(app=sim.app))
        self.chains = Chains(
            self.store,
            self.upstream,
            settings,
            owner=owner,
            clock=lambda: time.time() + offset[0],
        )
        self.scheduler = Scheduler(self.chains, interval=1.0)

    async def aclose(self) -> None:
        await self.upstream.aclose()
        self.store.close()


class World:
    def __init__(self, settings: Settings, store: SqliteStore) -> None:
        self.settings = settings
        self.store = store
        self.sim = Simulator(SimConfig())
        self.offset = [0.0]
        self.processes: list[Process] = []

    def process(self, owner: str) -> Process:
        p = Process(self.settings, self.sim, owner, self.offset)
        self.processes.append(p)
        return p

    def account(self, name: str, *, expires_in: float = DAY, issued_ago: float = 0.0) -> Account:
        account = add_oauth_account(self.store, self.sim, BASE, name=name)
        pair = self.sim.issue_tokens(account.client_id or "")
        now = time.time()
        self.store.put_tokens(
            name,
            TokenPair(pair["access_token"], pair["refresh_token"], now + expires_in),
            now - issued_ago,
        )
        return account

    def generation(self, name: str) -> int | None:
        return self.store.chain_generation(name)


@pytest.fixture
async def world(settings: Settings, store: SqliteStore) -> AsyncIterator[World]:
    w = World(settings, store)
    yield w
    for p in w.processes:
        await p.aclose()


def setup_chains(w: World) -> dict[str, int | None]:
    w.account("expiring", expires_in=3600)  # less than refresh_margin (6 h) left
    w.account("idle", expires_in=DAY, issued_ago=31 * DAY)  # older than keepalive_age
    w.account("fresh", expires_in=DAY)
    w.account("dead", expires_in=60)
    w.store.end_refresh_failed("dead", "Keap rejected the refresh token", time.time(), dead=True)
    w.store.add_account(Account(name="sak", kind="service_key", created_at=0, service_key="K"))
    w.store.add_account(
        Account(name="never", kind="oauth", created_at=0, client_id="c", client_secret="s")
    )
    return {name: w.generation(name) for name in ("expiring", "idle", "fresh", "dead")}


async def test_tick_refreshes_what_is_due_and_nothing_else(world: World) -> None:
    before = setup_chains(world)
    p = world.process("proc-A")
    assert sorted(await p.scheduler.tick()) == ["expiring", "idle"]
    assert world.sim.stats()["refreshes_served"] == 2
    after = {name: world.generation(name) for name in before}
    assert after == {
        "expiring": (before["expiring"] or 0) + 1,
        "idle": (before["idle"] or 0) + 1,
        "fresh": before["fresh"],
        "dead": before["dead"],
    }
    dead = world.store.get_chain("dead")
    assert dead is not None and dead.state == "needs_reauth"
    idle = world.store.get_chain("idle")
    assert idle is not None and time.time() - idle.refresh_issued_at < 60
    # Now nothing is due.
    assert await p.scheduler.tick() == []
    assert world.sim.stats()["refreshes_served"] == 2


async def test_tick_does_nothing_while_another_owner_holds_the_lock(world: World) -> None:
    setup_chains(world)
    held = world.store.try_lock(LOCK, "someone-else")
    assert held is not None
    p = world.process("proc-A")
    assert await p.scheduler.tick() == []
    assert world.sim.stats()["token_requests"] == 0
    assert world.store.lock_holder(LOCK) == "someone-else"
    held.release()


async def test_two_schedulers_one_refresh_per_tick(world: World) -> None:
    setup_chains(world)
    a, b = world.process("host-1:1:a"), world.process("host-2:2:b")
    first, second = await asyncio.gather(a.scheduler.tick(), b.scheduler.tick())
    assert sorted(first + second) == ["expiring", "idle"]
    assert [] in (first, second)  # one of them did all of it
    assert world.sim.stats()["refresh_requests"] == 2
    holder = world.store.lock_holder(LOCK)
    winner, loser = (a, b) if first else (b, a)
    assert holder == winner.chains.owner
    # The loser stays idle while the holder holds the lock, however long that is ...
    world.account("later", expires_in=60)
    world.offset[0] = 3600.0
    assert await loser.scheduler.tick() == []
    # ... and takes over on its next tick once the holder is gone: no TTL to wait out.
    winner.scheduler.release()
    assert await loser.scheduler.tick() == ["later"]
    assert world.store.lock_holder(LOCK) == loser.chains.owner
    assert world.sim.stats()["refreshes_served"] == 3


async def test_tick_finishes_a_leftover_journal(world: World) -> None:
    account = world.account("prod", expires_in=DAY)  # not due by time
    chain = world.store.get_chain("prod")
    assert chain is not None
    world.store.begin_refresh(
        RefreshJournal("prod", fingerprint(chain.refresh_token), "ghost:1:x", time.time())
    )
    p = world.process("proc-A")
    assert await p.scheduler.tick() == [account.name]
    chain = world.store.get_chain("prod")
    assert chain is not None and chain.in_flight is None and chain.generation == 3


async def test_one_failing_chain_does_not_stop_the_others(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.account("broken", expires_in=60)
    world.account("good", expires_in=60)
    chain = world.store.get_chain("broken")
    assert chain is not None
    world.sim.auth.revoke(chain.refresh_token)  # spent elsewhere
    p = world.process("proc-A")
    with caplog.at_level(logging.ERROR, logger="shim"):
        assert await p.scheduler.tick() == ["good"]
    broken = world.store.get_chain("broken")
    assert broken is not None and broken.state == "needs_reauth"
    assert "scheduled refresh of broken failed" in caplog.text


async def test_loop_survives_a_failing_tick(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.account("expiring", expires_in=60)
    p = world.process("proc-A")
    real = p.store.list_accounts
    calls = [0]

    def flaky() -> list[Account]:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("database hiccup")
        return real()

    monkeypatch.setattr(p.store, "list_accounts", flaky)

    class Stop(Exception):
        pass

    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise Stop

    scheduler = Scheduler(p.chains, interval=2.5, sleep=sleep)
    with caplog.at_level(logging.ERROR, logger="shim"), pytest.raises(Stop):
        await scheduler.run()
    assert sleeps == [2.5, 2.5, 2.5] and calls[0] == 3
    assert "scheduler tick failed" in caplog.text and "database hiccup" in caplog.text
    assert world.generation("expiring") == 3  # the second tick did the work
    assert world.sim.stats()["refreshes_served"] == 1
    # Stopping the loop gives the lock up at once for another process.
    assert world.store.lock_holder(LOCK) is None
