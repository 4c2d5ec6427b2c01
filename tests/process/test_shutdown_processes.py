"""A signal during a refresh (issue #16): real ``shim serve`` processes, SIGTERM and SIGINT.

The simulator holds a refresh answer after spending the token; the signal lands in that
window; then the answer goes out. The stopping keyshim must read it, store the new pair and
only then exit, so the restarted one finds a healthy chain and never presents a spent token.
Shutdown timings are printed (run with ``-s``).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.process.test_refresh_processes import (
    ACCOUNT,
    HOST,
    ROOT,
    Harness,
    Outcome,
    ShimProcess,
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


#: Nothing in flight: signal to exit must stay under a second, with workers too (uvicorn's
#: supervisor used to look for its signal only every 0.5 s: ~1.1 s with two workers).
QUICK = {1: 1.0, 2: 1.0}
#: How long the simulator keeps the answer back after the signal.
HOLD_AFTER_SIGNAL = 1.5


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


def stopped_in(shim: ShimProcess, timeout: float = 30.0) -> float:
    started = time.monotonic()
    code = shim.proc.wait(timeout=timeout)
    assert code == 0, f"exit {code}:\n{shim.log()[-4000:]}"
    return time.monotonic() - started


CASES = {
    "scheduler-SIGTERM": (signal.SIGTERM, 1, "scheduler"),
    "scheduler-SIGINT": (signal.SIGINT, 1, "scheduler"),
    "scheduler-SIGTERM-2-workers": (signal.SIGTERM, 2, "scheduler"),
    "inline-SIGTERM": (signal.SIGTERM, 1, "inline"),
    "inline-SIGINT-2-workers": (signal.SIGINT, 2, "inline"),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("case", list(CASES))
def test_a_signal_during_a_refresh_keeps_the_new_pair(h: Harness, case: str) -> None:
    sig, workers, trigger = CASES[case]
    sim = h.sim
    sim.config.access_token_lifetime = 3600
    sim.config.old_access_token_valid_after_refresh = False  # a working call used the new token
    key = h.add_account(lifetime=10)
    before = h.chain()
    env = {"SHIM_INLINE_MARGIN": "30", "SHIM_LEASE_TTL": "5"}
    if trigger == "scheduler":
        env |= {"SHIM_SCHEDULER_INTERVAL": "0.2", "SHIM_REFRESH_MARGIN": "30"}
    sim.config.hold_refresh = "after"  # Keap spends the token, then keeps its answer back
    shim = h.start(case, workers=workers, **env)
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(rpc, shim.rpc_url, key, "in flight") if trigger == "inline" else None
        wait_for(lambda: sim.held == 1, "the simulator to hold the refresh")
        assert h.spent_at_keap(before.refresh_token)
        signalled = time.monotonic()
        shim.proc.send_signal(sig)
        time.sleep(HOLD_AFTER_SIGNAL)
        assert shim.proc.poll() is None, f"exited before the answer came:\n{shim.log()}"
        if workers == 1:
            assert not accepts(shim.port), "still accepting connections while stopping"
        sim.config.hold_refresh = "off"
        assert h.release() == 1
        waited = stopped_in(shim)  # from the release
        took = time.monotonic() - signalled
        if call is not None:
            assert call.result(timeout=30) == Outcome("ok", "in flight")
    chain = h.chain()
    assert chain.state == "ok" and chain.in_flight is None, chain
    assert chain.generation == before.generation + 1
    assert chain.refresh_token != before.refresh_token
    assert not h.spent_at_keap(chain.refresh_token)

    restarted = h.start(f"{case}-restarted")
    assert rpc(restarted.rpc_url, key, "after restart") == Outcome("ok", "after restart")
    stats = sim.stats()
    assert stats["refresh_requests"] == stats["refreshes_served"] == 1  # no spent token shown
    assert h.chain().state == "ok" and h.rotations() == 1
    assert "needs_reauth" not in restarted.log() and "found an unfinished" not in restarted.log()
    assert "dead" not in h.webhook.kinds(ACCOUNT)
    print(
        f"\n{case}: signal to exit {took:.2f}s with a refresh in flight "
        f"(answer held {HOLD_AFTER_SIGNAL:g}s; {waited:.2f}s after the release)"
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2])
def test_shutdown_with_nothing_in_flight_is_quick(h: Harness, workers: int) -> None:
    key = h.add_account()
    shim = h.start(f"quiet-{workers}", workers=workers, SHIM_SCHEDULER_INTERVAL="0.2")
    assert rpc(shim.rpc_url, key, "one call") == Outcome("ok", "one call")
    started = time.monotonic()
    shim.proc.send_signal(signal.SIGTERM)
    took = stopped_in(shim)
    assert took < QUICK[workers], took
    assert time.monotonic() - started < QUICK[workers]
    print(f"\nworkers={workers}: signal to exit {took:.2f}s with nothing in flight")


@pytest.mark.timeout(60)
def test_ctrl_c_during_shim_refresh_keeps_the_new_pair(h: Harness) -> None:
    h.sim.config.access_token_lifetime = 3600
    h.add_account()
    before = h.chain()
    h.sim.config.hold_refresh = "after"
    log_path = h.tmp_path / "refresh.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shim", "refresh", ACCOUNT],
            cwd=ROOT,
            env=h.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: h.sim.held == 1, "the simulator to hold the refresh")
        proc.send_signal(signal.SIGINT)
        time.sleep(HOLD_AFTER_SIGNAL)
        assert proc.poll() is None, log_path.read_text()
        h.sim.config.hold_refresh = "off"
        assert h.release() == 1
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    chain = h.chain()
    assert chain.state == "ok" and chain.in_flight is None, log_path.read_text()
    assert chain.generation == before.generation + 1
    assert not h.spent_at_keap(chain.refresh_token)
