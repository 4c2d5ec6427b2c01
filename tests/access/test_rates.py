"""Per-key rates: the pure sliding-window estimate, and the limit held across processes."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable

import pytest

from shim.access import rate_policy as ratelimit
from shim.access.rate_enforcer import KeyRates
from shim.errors import RateLimited
from shim.models import KeyRecord
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services
from shim.store.sqlite import SqliteStore
from tests.support.stack import Stack, issue_key

pytestmark = pytest.mark.anyio


def test_parse_rate() -> None:
    assert ratelimit.parse_rate("60/min") == ratelimit.Rate(60, 60)
    assert ratelimit.parse_rate("60") == ratelimit.Rate(60, 60)
    assert ratelimit.parse_rate("2/s") == ratelimit.Rate(2, 1)
    assert ratelimit.parse_rate("10/h") == ratelimit.Rate(10, 3600)
    assert ratelimit.parse_rate("500/day") == ratelimit.Rate(500, 86400)
    assert str(ratelimit.parse_rate("10/h")) == "10/h"
    for bad in ("", "x/min", "0/min", "-1", "5/fortnight"):
        with pytest.raises(ValueError):
            ratelimit.parse_rate(bad)


def test_sliding_estimate_and_retry_after() -> None:
    t0 = 600.0  # start of a minute
    assert ratelimit.prev_weight(t0) == 1.0 and ratelimit.prev_weight(t0 + 45) == 0.25
    # half-way into the next minute, half of the previous minute's 3 calls still count
    assert ratelimit.estimate(3, 0, t0 + 90) == pytest.approx(1.5)
    assert 0 < ratelimit.retry_after(0, 3, 3, t0 + 3) <= 60  # full: wait for the next minute
    assert ratelimit.retry_after(3, 0, 3, t0 + 60) >= 1.0


async def _admit(rates: KeyRates, key_id: str, rate: str, now: float) -> float | None:
    """None if KeyRates admits the call, else the seconds it says to wait."""
    parsed = ratelimit.parse_rate(rate)
    key = KeyRecord(
        key_id, "prod", "t", "d", "shk_x", 0.0,
        rate_per_min=parsed.count, rate_window=parsed.window,
    )  # fmt: skip
    try:
        await rates.check(key, now)
    except RateLimited as exc:
        return float(exc.message.rsplit("retry in ", 1)[1].rstrip("s"))
    return None


async def test_hourly_rate_is_exact_in_hours(store: SqliteStore) -> None:
    """--rate 10/h once became 1/min; 60/h let one call a minute through."""
    rates = KeyRates(store)
    hour = 3600.0 * 500
    admitted = [await _admit(rates, "k", "10/h", hour + i) for i in range(11)]
    assert admitted[:10] == [None] * 10  # ten calls within one minute pass
    wait = admitted[10]
    assert wait is not None and wait > 60  # the eleventh waits for the hour
    assert [await _admit(rates, "j", "60/h", hour + i) for i in range(60)] == [None] * 60
    assert await _admit(rates, "s", "2/s", hour) is None
    assert await _admit(rates, "s", "2/s", hour + 0.1) is None
    assert await _admit(rates, "s", "2/s", hour + 0.2) is not None  # not 120 in one second
    rates.close()


async def test_rate_fault_and_sharing_across_processes(stack: Stack) -> None:
    key = issue_key(stack.store, stack.settings, "prod", rate_per_min=4)
    for _ in range(4):
        assert await stack.call("DataService.echo", "x", key=key) == "x"
    fault = await stack.fault("DataService.echo", "x", key=key)
    assert fault.code == 108 and fault.string.startswith("[RateLimited]")
    assert "retry in" in fault.string
    # a second "process" (another app on the same store) sees the first one's calls
    services = stack.app.services
    assert services is not None
    other = KeyshimApp(
        dataclasses.replace(stack.settings, scheduler_interval=0),
        lambda s: build_services(s),
    )
    await other.startup()
    try:
        assert other.services is not None and other.services.chains.owner != services.chains.owner
        import httpx

        from shim import xmlrpc

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other)) as client:
            body = xmlrpc.dumps_call("DataService.echo", [key, "x"])
            answer = await client.post("http://shim/api/xmlrpc", content=body)
        with pytest.raises(xmlrpc.Fault) as info:
            xmlrpc.parse_response(answer.content)
        assert info.value.string.startswith("[RateLimited]")
    finally:
        await other.shutdown()
    # keys without a rate are never limited
    for _ in range(10):
        await stack.call("DataService.echo", "y")


def test_local_window_keeps_the_stores_rule() -> None:
    """What a process decides with while the store does not answer: the same estimate."""
    rate = ratelimit.Rate(3, 60)
    window = ratelimit.LocalWindow()
    t0 = 600.0
    assert [window.admit(rate, t0 + i) for i in range(3)] == [None] * 3
    assert window.admit(rate, t0 + 3) == (0, 3)
    # Half-way into the next minute, 1.5 of the previous 3 still count: one more passes.
    assert window.admit(rate, t0 + 90) is None
    assert window.admit(rate, t0 + 90) == (3, 1)
    # A window with no calls in between starts empty.
    assert window.admit(rate, t0 + 600) is None
    # The combined counts the store refused with are learnt.
    window.learn(0, 3, t0 + 601, 60)
    assert window.admit(rate, t0 + 602) == (0, 3)


class _SlowStore:
    """A store whose admissions wait until ``answer`` is set (another process holds the
    write lock); it counts what it admits, and what is added to it afterwards."""

    def __init__(self, *, fail: bool = False) -> None:
        self.answer = threading.Event()
        self.fail = fail
        self.counted: dict[str, int] = {}
        self.added: list[tuple[str, int, int, int]] = []

    def admit_call(
        self, key_id: str, slot: int, window: int, limit: int, prev_weight: float
    ) -> tuple[int, int] | None:
        self.answer.wait(10)
        if self.fail:
            raise sqlite3.OperationalError("database is locked")
        cur = self.counted.get(key_id, 0)
        if cur + 1 > limit:
            return 0, cur
        self.counted[key_id] = cur + 1
        return None

    def add_calls(self, key_id: str, slot: int, window: int, count: int) -> None:
        self.added.append((key_id, slot, window, count))
        self.counted[key_id] = self.counted.get(key_id, 0) + count


async def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_a_store_that_does_not_answer_leaves_the_rate_to_this_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Calls wait one short deadline at most; the rate holds on this process meanwhile; the
    episode is logged once and each local decision counted; what was admitted here reaches
    the shared window when the store answers again."""
    store = _SlowStore()
    local: list[int] = []
    rates = KeyRates(store, deadline=0.05, on_local=lambda: local.append(1))  # type: ignore[arg-type]
    now = 3600.0 * 500
    try:
        took = []
        waits = []
        for i in range(8):
            started = time.monotonic()
            waits.append(await _admit(rates, "k", "5/h", now + i))
            took.append(time.monotonic() - started)
        assert waits[:5] == [None] * 5 and all(w is not None for w in waits[5:])
        assert max(took) < 0.5 and sum(took) < 0.5  # one deadline, then no waiting at all
        assert len(local) == 8
        starts = [r for r in caplog.records if "deciding rates on this process" in r.message]
        assert len(starts) == 1
        store.answer.set()  # the lock is gone: the first call's admission lands (admitted)
        await _until(lambda: store.counted.get("k") == 5)
        assert store.added == [("k", 3600 * 500, 3600, 4)]  # the 4 the store never saw
        assert any("answers again" in r.message for r in caplog.records)
        assert await _admit(rates, "k", "5/h", now + 9) is not None  # the store says full
    finally:
        rates.close()


async def test_a_failing_store_leaves_the_rate_to_this_process() -> None:
    store = _SlowStore(fail=True)
    store.answer.set()
    rates = KeyRates(store, deadline=0.5)  # type: ignore[arg-type]
    now = 3600.0 * 500
    try:
        waits = [await _admit(rates, "k", "2/h", now + i) for i in range(3)]
        assert waits[:2] == [None, None] and waits[2] is not None
        store.fail = False
        assert await _admit(rates, "other", "2/h", now + 4) is None  # the store is back
        await _until(lambda: store.counted.get("k") == 2)
    finally:
        rates.close()
