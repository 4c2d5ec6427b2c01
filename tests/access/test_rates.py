"""Per-key rates: the pure sliding-window estimate, and the limit held across processes."""

from __future__ import annotations

import dataclasses

import pytest

from shim.access import rate_policy as ratelimit
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services
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
    counter = ratelimit.RateCounter()
    t0 = 600.0  # start of a minute
    assert all(counter.admit("k", 3, t0 + i, {}) is None for i in range(3))
    wait = counter.admit("k", 3, t0 + 3, {})
    assert wait is not None and 0 < wait <= 60
    # half-way into the next minute, half of the previous minute's 3 calls still count
    assert ratelimit.estimate(3, 0, t0 + 90) == pytest.approx(1.5)
    assert counter.admit("k", 3, t0 + 90, {}) is None
    # others' counts are added
    assert counter.admit("other", 3, t0 + 5, {600: 3}) is not None  # the slot starting at t0


def test_hourly_rate_is_exact_in_hours() -> None:
    """--rate 10/h once became 1/min; 60/h let one call a minute through."""
    counter = ratelimit.RateCounter()
    hour = 3600.0 * 500
    ten_an_hour = ratelimit.parse_rate("10/h")
    admitted = [
        counter.admit("k", ten_an_hour.count, hour + i, {}, ten_an_hour.window) for i in range(11)
    ]
    assert admitted[:10] == [None] * 10  # ten calls within one minute pass
    assert admitted[10] is not None and admitted[10] > 60  # the eleventh waits for the hour
    sixty = ratelimit.parse_rate("60/h")
    assert all(counter.admit("j", 60, hour + i, {}, sixty.window) is None for i in range(60))
    two_a_second = ratelimit.parse_rate("2/s")
    assert counter.admit("s", 2, hour, {}, 1.0) is None
    assert counter.admit("s", 2, hour + 0.1, {}, 1.0) is None
    assert counter.admit("s", 2, hour + 0.2, {}, 1.0) is not None  # not 120 in one second
    assert two_a_second.window == 1.0


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
    services.rates.publish(stack.app.clock())
    other = KeyshimApp(
        dataclasses.replace(stack.settings, scheduler_interval=0),
        lambda s: build_services(s),
    )
    await other.startup()
    try:
        assert other.services is not None and other.services.rates.owner != services.rates.owner
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
