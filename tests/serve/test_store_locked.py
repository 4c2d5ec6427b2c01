"""Issue 11 §2: the event loop never waits on the store. While another connection holds the
SQLite write lock for seconds, the background work (the scheduler refreshing a due chain, the
audit flush, rate and quota publishing) waits in worker threads, and calls that need nothing
from the store answer in normal time: a keyless ``DataService.echo`` and a call whose key,
account and fresh token are cached."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import replace

import pytest

from shim import xmlrpc
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.sim_server import serve_simulator
from tests.support.stack import Stack

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

HOLD = 6.0  # how long the other connection keeps the write lock
LIMIT = 1.0  # no call may take this long while it does


def _hold_write_lock(path: str, seconds: float, taken: threading.Event) -> None:
    """Another process's writer: ``BEGIN IMMEDIATE`` and sit on the lock."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE keys SET label = label")
        taken.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.mark.slow
async def test_calls_answer_while_another_connection_holds_the_write_lock(
    settings: Settings, store: SqliteStore
) -> None:
    # Tokens of 10 minutes: fresh for calls (outside the inline margin) but always due for
    # the scheduler (inside the refresh margin), which so writes to the chain on every tick.
    sim = Simulator(SimConfig(access_token_lifetime=600))
    fast = replace(settings, scheduler_interval=0.2, audit_flush=0.2)
    async with serve_simulator(sim) as base:
        stack = Stack(fast, store, sim, base)
        await stack.app.startup()
        try:
            # Warm: key, account and token cached; the audit has something to flush.
            assert await stack.call("DataService.echo", "warm") == "warm"
            assert await _keyless(stack, "warm") == "warm"
            generation = _generation(store)
            taken = threading.Event()
            holder = threading.Thread(
                target=_hold_write_lock, args=(store.path, HOLD, taken), daemon=True
            )
            holder.start()
            assert await asyncio.to_thread(taken.wait, 5)
            # A script sends a call every 0.1 s; each one's time runs from when it was due
            # to be sent, so a loop stalled between calls counts against the next one.
            started = time.monotonic()
            keyless: list[float] = []
            cached: list[float] = []
            n = 0
            while (due := started + 0.1 * n) < started + HOLD - 1.5:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                assert await _keyless(stack, f"k{n}") == f"k{n}"
                keyless.append(time.monotonic() - due)
                due = time.monotonic()
                assert await stack.call("DataService.echo", f"c{n}") == f"c{n}"
                cached.append(time.monotonic() - due)
                n += 1
            await asyncio.to_thread(holder.join, HOLD + 5)
            print(
                f"calls during the lock: {n}; slowest keyless {max(keyless):.3f}s, "
                f"slowest cached {max(cached):.3f}s"
            )
            assert max(keyless) < LIMIT, f"keyless echo took {max(keyless):.2f}s"
            assert max(cached) < LIMIT, f"cached call took {max(cached):.2f}s"
            # The background work waited, then went through once the lock was gone.
            deadline = time.monotonic() + 15
            while _generation(store) <= generation:
                assert time.monotonic() < deadline, "the due chain was never refreshed"
                await asyncio.sleep(0.1)
        finally:
            await stack.client.aclose()
            await stack.app.shutdown()


def _generation(store: SqliteStore) -> int:
    chain = store.get_chain("prod")
    assert chain is not None
    return chain.generation


async def _keyless(stack: Stack, text: str) -> object:
    response = await stack.post(xmlrpc.dumps_call("DataService.echo", [text]))
    assert response.status_code == 200, response.text
    return xmlrpc.parse_response(response.content)


async def test_a_cached_call_takes_no_thread_hop_and_reads_only_store_caches(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path: a call whose key, account and token are cached sends no store work to a
    thread and calls only the two store methods answered from the store's memory (a key by
    id and a chain's generation, both cached until the database changes)."""
    from shim.store import offloop

    services = stack.app.services
    assert services is not None
    assert await stack.call("DataService.echo", "warm") == "warm"
    await asyncio.sleep(0.2)  # the scheduler's first tick is done
    hops: list[object] = []
    real = offloop._executor
    monkeypatch.setattr(offloop, "_executor", lambda: hops.append(1) or real())
    called: list[str] = []
    store = services.store
    for name in dir(store):
        method = getattr(store, name)
        if name.startswith("_") or not callable(method):
            continue

        def spy(*args: object, _name: str = name, _method: object = method, **kw: object) -> object:
            if threading.current_thread() is threading.main_thread():  # the loop's thread
                called.append(_name)
            return _method(*args, **kw)  # type: ignore[operator]

        monkeypatch.setattr(store, name, spy)
    for n in range(20):
        assert await stack.call("DataService.echo", str(n)) == str(n)
    assert hops == []
    assert set(called) <= {"get_key", "chain_generation"}, called
