"""On PostgreSQL a call whose key, account and token are cached never touches the database,
and a revocation still reaches the next call within a second. What the cache cannot answer
(a key used for the first time) is read off the event loop, so a slow read holds up only
the call that needs it."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from shim import xmlrpc
from shim.serve.runtime import init_files, open_store
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.postgres import PostgresStore
from shim.store.protocol import Store
from tests.support.sim_server import serve_simulator
from tests.support.stack import Stack, issue_key

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_a_cached_call_does_not_touch_the_database(pg_url: str, tmp_path: Path) -> None:
    settings = Settings.from_env(
        {},
        db=pg_url,
        key_file=str(tmp_path / "k.key"),
        scheduler_interval=0,
        audit_flush=3600,  # no background batch during the count (it is off the call path)
    )
    init_files(settings)
    store = open_store(settings)
    sim = Simulator(SimConfig())
    async with serve_simulator(sim) as base:
        stack = Stack(settings, store, sim, base)
        await stack.app.startup()
        try:
            await _count_trips(stack, store)
        finally:
            await stack.client.aclose()
            await stack.app.shutdown()
            store.close()


async def _count_trips(stack: Stack, store: Store) -> None:
    """No round trip over 3 s of cached calls; then a revocation lands within a second."""
    services = stack.app.services
    assert services is not None and isinstance(services.store, PostgresStore)
    served = services.store
    await asyncio.sleep(0.6)  # the change listener vouches for the cache
    assert await stack.call("DataService.echo", "warm") == "warm"
    before, started = served.round_trips, time.monotonic()
    n = 0
    while time.monotonic() - started < 3.0:  # past the app's 2 s account refresh
        assert await stack.call("DataService.echo", str(n)) == str(n)
        n += 1
    assert served.round_trips == before, f"{served.round_trips - before} trips, {n} calls"
    # A revocation made elsewhere still reaches the next call within a second.
    key_id = stack.key[4:14]
    assert store.revoke_key(key_id, time.time())
    revoked = time.monotonic()
    while True:
        try:
            await stack.call("DataService.echo", "x")
        except xmlrpc.Fault as fault:
            assert fault.code == 2
            break
        assert time.monotonic() - revoked < 1.0
        await asyncio.sleep(0.005)


async def test_a_key_read_from_a_locked_table_holds_up_no_other_call(
    pg_url: str, tmp_path: Path
) -> None:
    """Another session holds the keys table (as a migration's ALTER TABLE does) for 3 s: the
    call of a key used for the first time waits for it, every other call answers meanwhile."""
    import psycopg

    settings = Settings.from_env(
        {}, db=pg_url, key_file=str(tmp_path / "k.key"), scheduler_interval=0
    )
    init_files(settings)
    store = open_store(settings)
    sim = Simulator(SimConfig())
    async with serve_simulator(sim) as base:
        stack = Stack(settings, store, sim, base)
        fresh = issue_key(store, settings, "prod", label="first used during the lock")
        await stack.app.startup()
        try:
            await asyncio.sleep(0.6)  # the change listener vouches for the cache
            assert await stack.call("DataService.echo", "warm") == "warm"
            taken, release = threading.Event(), threading.Event()

            def hold() -> None:
                with psycopg.connect(pg_url) as conn:
                    conn.execute("LOCK TABLE keys IN ACCESS EXCLUSIVE MODE")
                    taken.set()
                    release.wait(10)

            holder = threading.Thread(target=hold, daemon=True)  # released below, or in 10 s
            holder.start()
            assert await asyncio.to_thread(taken.wait, 5)
            first = asyncio.ensure_future(stack.call("DataService.echo", "first", key=fresh))
            slowest, started = 0.0, time.monotonic()
            while time.monotonic() - started < 3.0:
                sent = time.monotonic()
                assert await stack.call("DataService.echo", "cached") == "cached"
                slowest = max(slowest, time.monotonic() - sent)
                await asyncio.sleep(0.1)
            waited = first.done()
            release.set()
            assert await asyncio.wait_for(first, 10) == "first"
            await asyncio.to_thread(holder.join, 5)
            print(f"slowest cached call while the keys table was locked: {slowest:.3f}s")
            assert slowest < 0.5, f"a cached call took {slowest:.2f}s"
            assert not waited  # the first call of the new key waited for the table
        finally:
            await stack.client.aclose()
            await stack.app.shutdown()
            store.close()
