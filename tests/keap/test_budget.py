"""The upstream quota budget: bursts wait their turn instead of collecting 429s."""

from __future__ import annotations

import pytest

from shim.errors import UpstreamThrottled
from shim.keap.budget import Budget, credential_id, quota_figures
from shim.models import Account
from shim.settings import Settings

pytestmark = pytest.mark.anyio

OAUTH = Account(name="a", kind="oauth", created_at=0, client_id="cid", client_secret="s")
OAUTH2 = Account(name="b", kind="oauth", created_at=0, client_id="cid", client_secret="s")
KEY = Account(name="k", kind="service_key", created_at=0, service_key="KeapAK-secret")


def test_spike_limit_spaces_calls() -> None:
    budget = Budget(share=1.0, max_wait=10, clock=lambda: 0.0)
    waits = [budget.reserve(OAUTH, 0.0) for _ in range(50)]
    assert waits[0] == 0.0  # spike arrest: one every 1/25 s, no burst
    assert waits[1] == pytest.approx(1 / 25) and waits[-1] == pytest.approx(49 / 25)


def test_accounts_of_one_client_share_its_budget() -> None:
    budget = Budget(share=1.0, max_wait=10, clock=lambda: 0.0)
    assert credential_id(OAUTH) == credential_id(OAUTH2)
    for _ in range(25):
        budget.reserve(OAUTH, 0.0)
    assert budget.reserve(OAUTH2, 0.0) > 0
    assert "secret" not in credential_id(KEY)


def test_minute_limit_and_refusal() -> None:
    refused: list[int] = []
    budget = Budget(share=1.0, max_wait=5, clock=lambda: 0.0, on_refused=lambda: refused.append(1))
    t, waits = 0.0, []
    for _ in range(480):  # a key: 10 a second until its 240 a minute run out
        waits.append(budget.reserve(KEY, t))
        t += waits[-1]
    assert waits[10] == pytest.approx(0.1)
    assert waits[-1] == pytest.approx(0.25, rel=0.05)  # then 240/60 a second
    with pytest.raises(UpstreamThrottled) as info:
        for _ in range(100):
            budget.reserve(KEY, t)  # all at once: the wait soon exceeds max_wait
    assert info.value.fault_code == 103 and info.value.retry_after is not None
    assert refused == [1]  # counted once (keyshim_quota_refused_total)


def test_worker_share_and_pause_after_429() -> None:
    now = [0.0]
    budget = Budget(share=0.25, max_wait=30, clock=lambda: now[0])
    budget.reserve(OAUTH, 0.0)
    assert budget.reserve(OAUTH, 0.0) == pytest.approx(4 / 25)  # a quarter of 25 a second
    budget.pause(OAUTH, 7.0)
    assert budget.reserve(OAUTH, 0.0) >= 7.0


def test_budget_honours_shim_keap_limits() -> None:
    limits = Settings(keap_limits="oauth=5/s,20/min;service_key=off").limits()
    budget = Budget(share=1.0, max_wait=60, clock=lambda: 0.0, limits=limits)
    waits = [budget.reserve(OAUTH, 0.0) for _ in range(20)]
    assert waits[1] == pytest.approx(1 / 5)  # 5 a second, spaced
    assert waits[19] == pytest.approx(19 / 5)
    assert all(budget.reserve(KEY, 0.0) == 0.0 for _ in range(1000))  # off: never waits


def test_minute_only_limit_allows_a_burst_then_spaces() -> None:
    limits = Settings(keap_limits="oauth=60/min").limits()
    budget = Budget(share=1.0, max_wait=60, clock=lambda: 0.0, limits=limits)
    assert [budget.reserve(OAUTH, 0.0) for _ in range(60)] == [0.0] * 60
    assert budget.reserve(OAUTH, 0.0) == pytest.approx(1.0)


def test_off_still_pauses_after_a_429() -> None:
    budget = Budget(
        share=1.0, max_wait=60, clock=lambda: 0.0, limits=Settings(keap_limits="off").limits()
    )
    assert budget.reserve(OAUTH, 0.0) == 0.0
    budget.pause(OAUTH, 4.0)
    assert budget.reserve(OAUTH, 0.0) == pytest.approx(4.0)


def test_quota_figures() -> None:
    figures = quota_figures(
        {
            "x-keap-product-quota-available": "149990",
            "content-type": "x",
            "X-Keap-Product-Throttle-Limit": "1500",
        }
    )
    assert figures == {"quota-available": "149990", "throttle-limit": "1500"}


def test_processes_share_one_budget_through_published_counts() -> None:
    """Two processes (or hosts) on one Keap client: each publishes its calls, takes in the
    other's, and the spike allowance is split between the processes sending; once the other
    has sent this minute, the combined count is what the per-minute limit caps."""
    limits = {"oauth": (10.0, 100.0), "service_key": (10.0, 100.0)}
    a = Budget(share=1.0, max_wait=120, clock=lambda: 0.0, limits=limits)
    b = Budget(share=1.0, max_wait=120, clock=lambda: 0.0, limits=limits)
    t = 600.0
    a.reserve(OAUTH, t)
    b.reserve(OAUTH, t)
    assert a.reserve(OAUTH, t) == pytest.approx(1 / 10)  # alone: 10 a second
    cid = credential_id(OAUTH)
    a.sync({cid: (b.usage(t)[(cid, 600)], 1)}, t)  # what the store reports of the others
    assert a.reserve(OAUTH, t + 1.0) == 0.0
    assert a.reserve(OAUTH, t + 1.0) == pytest.approx(1 / 5)  # two sending: 5 a second each
    # The other process used up this minute: the combined count is capped until the next one.
    a.sync({cid: (99, 1)}, t + 2.0)
    wait = a.reserve(OAUTH, t + 10.0)
    assert wait == pytest.approx(50.0)  # until 660, the next minute
    assert a.usage(t + 10.0) == {(cid, 600): 4, (cid, 660): 1}
