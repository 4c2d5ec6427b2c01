"""A process killed after keeping a refused pair in its recovery file (issue #11 §1).

Keap spends the token and answers; the store is write-locked by another connection past
keyshim's busy timeout, so the new pair goes to the sealed recovery file; SIGKILL right there
(``SHIM_FAILPOINT=after_recovery_file``). The restarted keyshim must store the recovered pair
before anything refreshes: no spent token is ever presented and the chain stays ok.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shim.failpoints import AFTER_RECOVERY_FILE
from shim.serve.runtime import open_recovery
from tests.process.test_refresh_processes import (
    ACCOUNT,
    Harness,
    Outcome,
    harness,
    logs_on_failure,
    rpc,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def h(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    with harness(tmp_path) as h, logs_on_failure(request, h):
        yield h


@pytest.mark.timeout(90)
def test_killed_after_the_recovery_file_the_restart_uses_the_kept_pair(h: Harness) -> None:
    sim = h.sim
    sim.config.access_token_lifetime = 3600
    sim.config.old_access_token_valid_after_refresh = False
    key = h.add_account(lifetime=10)
    before = h.chain()
    recovery = open_recovery(h.settings)
    env = {"SHIM_INLINE_MARGIN": "30", "SHIM_LEASE_TTL": "3"}
    shim = h.start("crashing", SHIM_FAILPOINT=AFTER_RECOVERY_FILE, **env)
    sim.config.hold_refresh = "after"
    locker = sqlite3.connect(h.settings.db, isolation_level=None)
    try:
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(rpc, shim.rpc_url, key, "doomed", 60.0)
            wait_for(lambda: sim.held == 1, "the simulator to hold the refresh")
            assert h.chain().in_flight is not None  # journaled before the grant
            locker.execute("BEGIN IMMEDIATE")  # the store refuses writes from now on
            sim.config.hold_refresh = "off"
            assert h.release() == 1
            assert shim.proc.wait(timeout=40) == -signal.SIGKILL, shim.log()
            assert call.result(timeout=10).kind == "error"  # its connection died
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()

    assert h.spent_at_keap(before.refresh_token)
    chain = h.chain()
    assert chain.generation == before.generation and chain.refresh_token == before.refresh_token
    kept = recovery.read(ACCOUNT)
    assert kept is not None and kept.base_generation == before.generation
    assert not h.spent_at_keap(kept.pair.refresh_token)
    assert kept.pair.refresh_token.encode() not in recovery.path(ACCOUNT).read_bytes()

    restarted = h.start("restarted", **env)
    assert rpc(restarted.rpc_url, key, "after restart") == Outcome("ok", "after restart")
    chain = h.chain()
    assert chain.state == "ok" and chain.in_flight is None
    assert chain.generation == before.generation + 1
    assert chain.refresh_token == kept.pair.refresh_token
    assert not recovery.path(ACCOUNT).exists()
    stats = sim.stats()
    assert stats["refresh_requests"] == stats["refreshes_served"] == 1  # no spent token shown
    assert "found an unfinished refresh" not in restarted.log()
    assert "stored the pair kept in the recovery file" in restarted.log()
    assert "dead" not in h.webhook.kinds(ACCOUNT)
