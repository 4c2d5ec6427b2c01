"""Several keyshim hosts on one PostgreSQL database: real servers, a real database, real kills.

Each "host" is a ``shim serve --workers 2`` process group sharing one PostgreSQL database (a
fresh one per test, on the cluster ``SHIM_TEST_PG`` names). Keap is the simulator, in this
process. The figures each test prints (run with ``-s``) are the ones the README quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from shim.serve.runtime import open_store
from tests.process.test_refresh_processes import (
    ACCOUNT,
    LIFETIME,
    MARGIN,
    ROOT,
    Harness,
    Outcome,
    ShimProcess,
    free_port,
    harness,
    logs_on_failure,
    rpc,
    slow_token_endpoint,
    stampede,
    wait_for,
)
from tests.support import pg

pytestmark = pytest.mark.slow

WORKERS = 2
CALLERS = 100
EXPIRIES = 10


@pytest.fixture
def h(pg_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    with harness(tmp_path, db=pg_url) as h, logs_on_failure(request, h):
        yield h


def start_hosts(h: Harness, **env: str) -> tuple[ShimProcess, ShimProcess]:
    """Hosts A and B, ``--workers 2`` each, every worker connected to the database."""
    a = h.start("host-A", workers=WORKERS, wait=False, **env)
    b = h.start("host-B", workers=WORKERS, wait=False, **env)
    a.wait_ready()
    b.wait_ready()
    wait_for(lambda: workers_connected(h) >= 2 * WORKERS, "every worker to connect", 30)
    return a, b


def workers_connected(h: Harness) -> int:
    """keyshim worker processes with a session on the database (each names itself)."""
    import psycopg

    with psycopg.connect(h.settings.db) as conn:
        row = conn.execute(
            "SELECT COUNT(DISTINCT application_name) FROM pg_stat_activity "
            "WHERE application_name LIKE %s AND datname = current_database()",
            (f"{socket.gethostname()}:%",),
        ).fetchone()
    return int(row[0]) if row else 0


def two_hosts(h: Harness, **env: str) -> dict[str, str]:
    """Hosts A and B (see start_hosts); their XML-RPC URLs by label."""
    a, b = start_hosts(h, **env)
    return {"A": a.rpc_url, "B": b.rpc_url}


def spent_refreshes(h: Harness, stats0: dict[str, int]) -> int:
    """Refresh requests Keap refused (a spent token): requested minus served."""
    stats = h.sim.stats()
    requested = stats["refresh_requests"] - stats0["refresh_requests"]
    return int(requested - (stats["refreshes_served"] - stats0["refreshes_served"]))


@pytest.mark.timeout(150)
def test_two_hosts_share_one_chain_through_many_expiries(h: Harness) -> None:
    """100 callers over two hosts (2 workers each) for more than 10 token lifetimes: one
    refresh per expiry across both hosts, no spent-token refresh, no caller fault."""
    h.sim.config.access_token_lifetime = LIFETIME
    key = h.add_account()
    servers = two_hosts(h, SHIM_INLINE_MARGIN=str(MARGIN), SHIM_QUOTA_WAIT="60")
    generation0 = h.chain().generation
    stats0 = h.sim.stats()
    started = time.monotonic()
    with slow_token_endpoint(h, 0.3) as slow:
        tally = asyncio.run(
            stampede(servers, key, h, pace=5.0, deadline=started + 60.0, callers=CALLERS)
        )
    duration = time.monotonic() - started
    stats = h.sim.stats()
    expiries = h.chain().generation - generation0
    refreshes = stats["refreshes_served"] - stats0["refreshes_served"]
    spent = spent_refreshes(h, stats0)
    faults = sum(n for outcome, n in tally.outcomes.items() if outcome != "ok")
    print(
        f"\ntwo hosts x {WORKERS} workers, {CALLERS} callers, {duration:.1f}s: "
        f"{sum(tally.calls.values())} calls ({dict(tally.calls)}); {expiries} expiries; "
        f"{refreshes} refreshes; {spent} spent-token refreshes; {faults} caller faults; "
        f"most refreshes at Keap at once: {slow['max_in_flight']}"
    )
    assert not tally.problems, tally.problems[:10]
    assert tally.calls["A"] > 0 and tally.calls["B"] > 0
    assert expiries >= EXPIRIES, f"only {expiries} expiries in {duration:.1f}s"
    assert refreshes == expiries and spent == 0 and faults == 0
    assert slow["max_in_flight"] == 1


def shim_cli(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shim", *args],
        cwd=ROOT,
        env=h.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(90)
def test_a_key_revoked_through_one_host_is_refused_by_the_other_within_a_second(
    h: Harness,
) -> None:
    key = h.add_account()
    servers = two_hosts(h)
    for url in servers.values():  # both hosts have the key cached
        for _ in range(4):
            assert rpc(url, key, "warm") == Outcome("ok", "warm")
    key_id = key[4:14]
    done = shim_cli(h, "key", "revoke", key_id)
    assert done.returncode == 0, done.stderr
    revoked = time.monotonic()
    while True:
        outcome = rpc(servers["B"], key, "after revoke")
        if outcome.kind == "fault":
            break
        assert time.monotonic() - revoked < 1.0, "host B still accepts the revoked key"
    lag = time.monotonic() - revoked
    assert outcome.code == 2 and "[InvalidKey]" in str(outcome.value), outcome
    # Every worker of both hosts refuses it from now on.
    assert all(rpc(url, key).code == 2 for url in servers.values() for _ in range(10))
    print(f"\nrevocation through one host refused by the other after {lag * 1000:.0f} ms")
    assert lag < 1.0


@pytest.mark.timeout(120)
def test_a_per_key_rate_holds_on_the_combined_count(h: Harness) -> None:
    from shim.access import keys
    from shim.models import KeyRecord

    h.add_account()
    limit = 30
    issued = keys.make_key(h.store.server_secret("key-hmac"))
    h.store.add_key(
        KeyRecord(
            issued.id, ACCOUNT, "rated", issued.digest, issued.prefix, time.time(),
            rate_per_min=limit,
        )
    )  # fmt: skip
    servers = two_hosts(h)
    if time.time() % 60 > 40:  # keep the burst inside one minute
        time.sleep(61 - time.time() % 60)
    urls = list(servers.values())

    def call(i: int) -> Outcome:
        return rpc(urls[i % 2], issued.text, f"r{i}")

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(call, range(4 * limit)))
    admitted = sum(o.kind == "ok" for o in outcomes)
    limited = sum(o.kind == "fault" and o.code == 108 for o in outcomes)
    per_host = {
        label: sum(o.kind == "ok" for i, o in enumerate(outcomes) if i % 2 == n)
        for n, label in enumerate(servers)
    }
    print(
        f"\nrate {limit}/min over two hosts x {WORKERS} workers: {len(outcomes)} calls, "
        f"{admitted} admitted {per_host}, {limited} [RateLimited], "
        f"overrun {admitted - limit}"
    )
    assert admitted == limit and limited == len(outcomes) - limit


@pytest.mark.timeout(120)
def test_sigkill_one_host_mid_refresh_the_other_keeps_serving(h: Harness) -> None:
    """Host A dies (SIGKILL, every process) while Keap holds its refresh. Its lock dies with
    its sessions: host B recovers the unspent token at once and never spends a spent one."""
    key = h.add_account(lifetime=60)  # inside the 90 s margin: every call wants a refresh
    # A caller waits at most 2 s for another host's refresh, then uses the old token.
    a, b = start_hosts(h, SHIM_INLINE_MARGIN="90", SHIM_REFRESH_WAIT="2")
    generation0 = h.chain().generation
    stats0 = h.sim.stats()
    h.sim.config.hold_refresh = "before"
    with ThreadPoolExecutor(1) as pool:
        doomed = pool.submit(rpc, a.rpc_url, key, "doomed")
        wait_for(lambda: h.sim.held == 1 or doomed.done(), "Keap to hold A's refresh")
        assert h.sim.held == 1, doomed.result()
        holder = h.lock_holder()
        assert holder is not None and a.label  # A holds the refresh lock
        # Meanwhile B serves with the still-valid token (it cannot refresh: A holds the lock).
        assert rpc(b.rpc_url, key, "during") == Outcome("ok", "during")
        a.kill()
        killed = time.monotonic()
        # Keap never got to A's request: it drops it, unprocessed (the token is unspent).
        h.sim.fail_token_requests("503")
        h.sim.config.hold_refresh = "off"
        assert h.release() == 1
        doomed.result(timeout=30)
    freed = wait_for(lambda: h.lock_holder() is None and time.monotonic(), "the lock", 5)
    answers = [rpc(b.rpc_url, key, f"after {i}") for i in range(20)]
    recovered = wait_for(
        lambda: h.chain().generation > generation0 and time.monotonic(), "B's recovery", 10
    )
    chain = h.chain()
    spent = spent_refreshes(h, stats0) - 1  # the one request Keap dropped is not a spend
    print(
        f"\nSIGKILL of host A mid-refresh: lock free after {(freed - killed) * 1000:.0f} ms, "
        f"chain recovered by B after {(recovered - killed) * 1000:.0f} ms; B answered "
        f"{sum(o.kind == 'ok' for o in answers)}/{len(answers)} calls; "
        f"{spent} spent-token refreshes; chain {chain.state}"
    )
    assert all(o.kind == "ok" for o in answers), answers
    assert chain.state == "ok" and chain.in_flight is None and spent == 0
    assert "dead" not in h.webhook.kinds(ACCOUNT)
    assert freed - killed < 1.0


# -- PostgreSQL itself restarts ---------------------------------------------------------------


@contextlib.contextmanager
def own_cluster() -> Iterator[tuple[str, Path]]:
    """A private throwaway cluster (this test restarts it), via the same script CI uses."""
    pg.admin_url()  # skips (fails in CI) like every PostgreSQL test when there is none
    directory = Path(tempfile.mkdtemp(prefix="keyshim-pg-"))
    script = str(pg.CLUSTER_SCRIPT)
    try:
        started = subprocess.run(
            ["bash", script, "start", str(directory), str(free_port())],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr
        yield started.stdout.strip(), directory
    finally:
        subprocess.run(["bash", script, "stop", str(directory)], capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


def pg_ctl(directory: Path, command: str) -> None:
    done = subprocess.run(
        ["bash", str(pg.CLUSTER_SCRIPT), command, str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(180)
def test_postgres_restart_mid_refresh(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """PostgreSQL goes down while Keap holds a refresh it has already performed (the old
    refresh token is spent). Callers get a clear [StoreUnavailable] fault, fast, not a hang;
    the new pair is stored once the database is back; the chain survives; calls resume."""
    with own_cluster() as (admin, directory):
        url = pg.create_database(admin)
        with harness(tmp_path, db=url) as h, logs_on_failure(request, h):
            key = h.add_account(lifetime=10)
            a, b = start_hosts(h, SHIM_INLINE_MARGIN="30")
            generation0 = h.chain().generation
            stats0 = h.sim.stats()
            h.store.close()  # the test's own connections must not hold the restart up
            h.sim.config.hold_refresh = "after"  # Keap rotates, then holds the answer
            with ThreadPoolExecutor(1) as pool:
                refreshing = pool.submit(rpc, a.rpc_url, key, "refreshing", 90.0)
                wait_for(lambda: h.sim.held == 1 or refreshing.done(), "Keap to hold it")
                assert h.sim.held == 1, refreshing.result()
                pg_ctl(directory, "stop")
                down = time.monotonic()
                h.sim.config.hold_refresh = "off"
                assert h.release() == 1  # A has the new pair now, and no database
                outage: list[tuple[Outcome, float]] = []
                for url_ in (a.rpc_url, b.rpc_url) * 3:
                    sent = time.monotonic()
                    outage.append((rpc(url_, key, "outage"), time.monotonic() - sent))
                pg_ctl(directory, "start")
                up = time.monotonic()
                first = refreshing.result(timeout=60)

                def resumed() -> bool:
                    return all(
                        rpc(u, key, "back") == Outcome("ok", "back") for u in (a.rpc_url, b.rpc_url)
                    )

                try:
                    wait_for(resumed, "calls to resume on both hosts", 30)
                except AssertionError:
                    for shim in (a, b):
                        print(f"--- {shim.label} ---\n{shim.log()[-6000:]}")
                    print(rpc(a.rpc_url, key, "x"), rpc(b.rpc_url, key, "x"))
                    raise
                back = time.monotonic()
            h.store = open_store(h.settings)
            chain = h.chain()
            spent = spent_refreshes(h, stats0)
            worst = max(t for _, t in outage)
            kinds = {str(o) for o, _ in outage}
            print(
                f"\nPostgreSQL down {up - down:.1f}s mid-refresh: {len(outage)} calls meanwhile "
                f"got {kinds}, slowest answer {worst:.2f}s; the refreshing call got {first}; "
                f"calls resumed {back - up:.1f}s after the restart; chain {chain.state}, "
                f"generation +{chain.generation - generation0}; {spent} spent-token refreshes"
            )
            assert all(o.kind == "fault" and o.code == 113 for o, _ in outage), outage
            assert worst < 10.0
            assert chain.state == "ok" and chain.generation == generation0 + 1
            assert chain.in_flight is None and spent == 0
            assert "dead" not in h.webhook.kinds(ACCOUNT)


# -- a load balancer in front of two hosts -----------------------------------------------------

HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"


@pytest.mark.timeout(120)
def test_haproxy_in_front_of_two_hosts(h: Harness, tmp_path: Path) -> None:
    """The README's two-host recipe: HAProxy (deploy/haproxy.cfg, unchanged) health-checks
    /healthz on both hosts and balances across them; a host killed outright costs callers
    nothing."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(haproxy):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("haproxy is not installed (.ci/run installs it)")
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    key = h.add_account()
    a, b = start_hosts(h)
    port = free_port()
    env = {
        **os.environ,
        "KEYSHIM_LISTEN": f"127.0.0.1:{port}",
        "KEYSHIM_HOST_A": f"127.0.0.1:{a.port}",
        "KEYSHIM_HOST_B": f"127.0.0.1:{b.port}",
    }
    check = subprocess.run([haproxy, "-c", "-f", str(HAPROXY_CFG)], env=env, capture_output=True)
    assert check.returncode == 0, check.stderr + check.stdout
    log = (tmp_path / "haproxy.log").open("wb")
    proc = subprocess.Popen(
        [haproxy, "-db", "-f", str(HAPROXY_CFG)], env=env, stdout=log, stderr=log
    )
    lb = f"http://127.0.0.1:{port}/api/xmlrpc"
    try:
        wait_for(lambda: rpc(lb, key, "up").kind == "ok", "haproxy to pass calls", 15)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        before = [rpc(lb, key, f"lb {i}") for i in range(40)]
        a.kill()
        killed = time.monotonic()
        during: list[Outcome] = []
        stop = threading.Event()

        def keep_calling() -> None:
            while not stop.is_set():
                during.append(rpc(lb, key, "failover"))

        caller = threading.Thread(target=keep_calling)
        caller.start()
        time.sleep(3.0)
        stop.set()
        caller.join(30)
        after = [rpc(lb, key, f"after {i}") for i in range(20)]
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    failed = [o for o in during if o.kind != "ok"]
    print(
        f"\nhaproxy in front of two hosts: {len(before)} calls ok before; host A killed; "
        f"{len(during) - len(failed)}/{len(during)} calls ok in the "
        f"{time.monotonic() - killed:.0f}s after; "
        f"{sum(o.kind == 'ok' for o in after)}/{len(after)} after that"
    )
    assert all(o.kind == "ok" for o in before + after), before + after
    assert not failed, failed[:5]
