"""Per-key rates: the pure sliding-window estimate, and the limit held across processes."""

from __future__ import annotations

import dataclasses

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


def _admit(rates: KeyRates, key_id: str, rate: str, now: float) -> float | None:
    """None if KeyRates admits the call, else the seconds it says to wait."""
    parsed = ratelimit.parse_rate(rate)
    key = KeyRecord(
        key_id, "prod", "t", "d", "shk_x", 0.0,
        rate_per_min=parsed.count, rate_window=parsed.window,
    )  # fmt: skip
    try:
        rates.check(key, now)
    except RateLimited as exc:
        return float(exc.message.rsplit("retry in ", 1)[1].rstrip("s"))
    return None


def test_hourly_rate_is_exact_in_hours(store: SqliteStore) -> None:
    """--rate 10/h once became 1/min; 60/h let one call a minute through."""
    rates = KeyRates(store)
    hour = 3600.0 * 500
    admitted = [_admit(rates, "k", "10/h", hour + i) for i in range(11)]
    assert admitted[:10] == [None] * 10  # ten calls within one minute pass
    wait = admitted[10]
    assert wait is not None and wait > 60  # the eleventh waits for the hour
    assert all(_admit(rates, "j", "60/h", hour + i) is None for i in range(60))
    assert _admit(rates, "s", "2/s", hour) is None
    assert _admit(rates, "s", "2/s", hour + 0.1) is None
    assert _admit(rates, "s", "2/s", hour + 0.2) is not None  # not 120 in one second


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
