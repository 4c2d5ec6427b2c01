"""Issue 11 §2: the event loop never waits on the store. While another connection holds the
SQLite write lock for seconds, the background work (the scheduler refreshing a due chain, the
audit flush, rate and quota publishing) waits in worker threads, and calls that need nothing
from the store answer in normal time: a keyless ``DataService.echo`` and a call whose key,
account and fresh token are cached. So do calls of a key with a rate (admitted by this
process alone while the store does not answer, the limit still held) and of a key used for
the first time."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from shim import xmlrpc
from shim.serve.app import HEALTH_DEADLINE
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.locks import hold_write_lock
from tests.support.sim_server import serve_simulator
from tests.support.stack import Stack, add_key_account, issue_key

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

HOLD = 6.0  # how long the other connection keeps the write lock
LIMIT = 1.0  # no call may take this long while it does


async def _monitor(stack: Stack, took: list[float]) -> None:
    """A monitor polling /healthz and /metrics, both of which read the store."""
    n = 0
    while True:
        started = time.monotonic()
        path = "/healthz" if n % 2 else "/metrics"
        probe = await stack.client.get(path)
        assert probe.status_code in (200, 503), (path, probe.status_code)
        took.append(time.monotonic() - started)
        n += 1
        await asyncio.sleep(0.2)


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
                target=hold_write_lock, args=(store.path, HOLD, taken), daemon=True
            )
            holder.start()
            assert await asyncio.to_thread(taken.wait, 5)
            # A script sends a call every 0.1 s; each one's time runs from when it was due
            # to be sent, so a loop stalled between calls counts against the next one.
            started = time.monotonic()
            keyless: list[float] = []
            cached: list[float] = []
            probes: list[float] = []
            monitoring = asyncio.create_task(_monitor(stack, probes))
            n = 0
            while (due := started + 0.1 * n) < started + HOLD - 1.5:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                assert await _keyless(stack, f"k{n}") == f"k{n}"
                keyless.append(time.monotonic() - due)
                due = time.monotonic()
                assert await stack.call("DataService.echo", f"c{n}") == f"c{n}"
                cached.append(time.monotonic() - due)
                n += 1
            monitoring.cancel()
            await asyncio.to_thread(holder.join, HOLD + 5)
            print(
                f"calls during the lock: {n}; slowest keyless {max(keyless):.3f}s, "
                f"slowest cached {max(cached):.3f}s, slowest probe {max(probes):.3f}s"
            )
            assert max(keyless) < LIMIT, f"keyless echo took {max(keyless):.2f}s"
            assert max(cached) < LIMIT, f"cached call took {max(cached):.2f}s"
            # The monitor's probes read the store off the loop: they wait (bounded), and
            # the calls above show they stalled nobody.
            assert len(probes) >= 2 and max(probes) < HEALTH_DEADLINE + LIMIT, probes
            # The background work waited, then went through once the lock was gone.
            deadline = time.monotonic() + 15
            while _generation(store) <= generation:
                assert time.monotonic() < deadline, "the due chain was never refreshed"
                await asyncio.sleep(0.1)
        finally:
            await stack.client.aclose()
            await stack.app.shutdown()


RATED = 10  # the rated key's calls an hour (an hour: the test never spans two windows' worth)
FAST = 0.5  # each call during the lock answers within this


@pytest.mark.slow
async def test_rated_and_new_keys_answer_while_another_connection_holds_the_write_lock(
    settings: Settings, store: SqliteStore
) -> None:
    """A key with a rate costs a store round trip per call (the shared window): with the
    store locked, its calls are decided by this process's own window, in normal time and
    still within the rate, and the calls it let through reach the shared window afterwards.
    A key used for the first time, of an account already known or of a new one, is read
    without holding up anyone."""
    # Keap's quota budget off: five scripts on two credentials would otherwise wait for it.
    fast = replace(settings, scheduler_interval=0.2, audit_flush=0.2, keap_limits="off")
    sim = Simulator(SimConfig())
    async with serve_simulator(sim) as base:
        stack = Stack(fast, store, sim, base)
        rated = issue_key(store, fast, "prod", rate_per_min=RATED, rate_window=3600.0)
        fresh = issue_key(store, fast, "prod", label="first used during the lock")
        add_key_account(store, sim, base, "sak")
        other = issue_key(store, fast, "sak", label="a new account's key")
        await stack.app.startup()
        try:
            for n in range(3):  # counted in the shared window before the lock
                assert await stack.call("DataService.echo", f"r{n}", key=rated) == f"r{n}"
            assert await stack.call("DataService.echo", "warm") == "warm"
            taken = threading.Event()
            holder = threading.Thread(
                target=hold_write_lock, args=(store.path, HOLD, taken), daemon=True
            )
            holder.start()
            assert await asyncio.to_thread(taken.wait, 5)
            # Five scripts, each sending a call every 0.1 s; a call's time runs from when it
            # was due to be sent, so a loop stalled between calls counts against the next.
            stop = time.monotonic() + HOLD - 1.5
            slowest: dict[str, float] = {}
            answers: dict[str, list[object]] = {}

            async def script(name: str, call: Callable[[int], Awaitable[object]]) -> None:
                started, n = time.monotonic(), 0
                while (due := started + 0.1 * n) < stop:
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    answers.setdefault(name, []).append(await call(n))
                    slowest[name] = max(slowest.get(name, 0.0), time.monotonic() - due)
                    n += 1

            await asyncio.gather(
                script("keyless", lambda n: _keyless(stack, f"{n}")),
                script("cached", lambda n: stack.call("DataService.echo", f"{n}")),
                script("rated", lambda n: _answer(stack, rated, f"{n}")),
                script("new key", lambda n: stack.call("DataService.echo", f"{n}", key=fresh)),
                script("new account", lambda n: stack.call("DataService.echo", f"{n}", key=other)),
            )
            for name in ("keyless", "cached", "new key", "new account"):
                assert answers[name] == [str(n) for n in range(len(answers[name]))], name
            admitted = sum(1 for n, got in enumerate(answers["rated"]) if got == str(n))
            refused = [got for got in answers["rated"] if isinstance(got, xmlrpc.Fault)]
            print(
                f"calls during the lock: {len(answers['rated'])} of each kind; slowest: "
                + ", ".join(f"{name} {took:.3f}s" for name, took in slowest.items())
                + f"; rated key: {admitted} admitted, {len(refused)} refused"
            )
            assert all(took < FAST for took in slowest.values()), slowest
            assert admitted == RATED - 3
            assert len(refused) == len(answers["rated"]) - admitted
            assert all(fault.string.startswith("[RateLimited]") for fault in refused), refused
            await asyncio.to_thread(holder.join, HOLD + 5)
            # The calls this process let through alone reach the shared window: another
            # process (or this one, once the store answers) sees the key as spent.
            deadline = time.monotonic() + 10
            while _counted(store, rated) < RATED:
                assert time.monotonic() < deadline, f"shared window: {_counted(store, rated)}"
                await asyncio.sleep(0.1)
            assert _counted(store, rated) == RATED
            fault = await _answer(stack, rated, "after")
            assert isinstance(fault, xmlrpc.Fault) and fault.string.startswith("[RateLimited]")
        finally:
            await stack.client.aclose()
            await stack.app.shutdown()


async def _answer(stack: Stack, key: str, text: str) -> object:
    """The call's answer, or its fault."""
    response = await stack.post(xmlrpc.dumps_call("DataService.echo", [key, text]))
    assert response.status_code == 200, response.text
    try:
        return xmlrpc.parse_response(response.content)
    except xmlrpc.Fault as fault:
        return fault


def _counted(store: SqliteStore, key: str) -> int:
    """The rated key's calls in the shared window (every slot it still has)."""
    from shim.access import keys

    key_id = keys.key_id_of(key)
    with sqlite3.connect(store.path) as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(count), 0) FROM rate_windows WHERE key_id = ?", (key_id,)
        ).fetchone()
    return int(row[0])


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
    assert set(called) <= {"peek_key", "peek_generation"}, called
