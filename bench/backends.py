"""SQLite against PostgreSQL, in one run: CPU per forwarded call and the key check.

    python3 bench/backends.py          # about 1.5 minutes on 2 cores

Both keyshims (one worker each) sit in front of the same nginx upstream (see stack.py) and
serve the same installation: it is provisioned on SQLite, then moved to PostgreSQL with
``shim store copy``. wrk drives them in interleaved rounds, so a machine that gets busier or
quieter meanwhile affects both alike. PostgreSQL is a throwaway cluster started with
tests/support/pg_cluster.sh (or the one ``SHIM_BENCH_PG`` names, a URL whose role may create
databases), on this machine, over loopback TCP.

A call whose key and token are cached must not touch the database: for the PostgreSQL keyshim
the run also counts the database's transactions (``pg_stat_database.xact_commit``) over the
load and divides by the calls. What remains is background work (the audit batch, the budget
figures, the change listener's version poll), a fixed few per second whatever the load.

The key check is timed in-process on each store: ``get_key`` + ``keys.verify`` with the key
cached (what a script's repeat calls pay) and uncached (the cache dropped before each lookup:
SQLite reads the file, PostgreSQL makes a round trip).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from load import Cell, WrkRun, contact_add_body, run_wrk
from stack import REPO, Keyshim, running_stack, start_keyshim, stop, wait_healthy
from util import calibrate_us, cpu_seconds, ensure_keyshim, progress

CLUSTER = REPO / "tests" / "support" / "pg_cluster.sh"
CONNECTIONS = (1, 16)
ROUNDS = 3
SECONDS = 5
TOKEN = "bench-backends-token"


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """An empty database: on SHIM_BENCH_PG's cluster, or on a throwaway one."""
    import psycopg

    admin = os.environ.get("SHIM_BENCH_PG")
    directory = None
    if not admin:
        directory = Path(tempfile.mkdtemp(prefix="keyshim-bench-pg-"))
        progress(f"starting a throwaway PostgreSQL cluster in {directory}")
        admin = subprocess.run(
            ["bash", str(CLUSTER), "start", str(directory), str(_free_port())],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    name = f"keyshim_bench_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if directory is not None:
            subprocess.run(["bash", str(CLUSTER), "stop", str(directory)], capture_output=True)
            shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _transactions(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def key_check(sqlite_db: Path, key_file: str, url: str, key: str) -> dict[str, dict[str, float]]:
    """Microseconds per key check, cached and uncached, on each store."""
    from shim.access import keys
    from shim.serve.runtime import open_store
    from shim.settings import Settings

    out: dict[str, dict[str, float]] = {}
    key_id = keys.key_id_of(key)
    assert key_id is not None
    for label, db in (("SQLite", str(sqlite_db)), ("PostgreSQL", url)):
        store = open_store(Settings.from_env({}, db=db, key_file=key_file))
        try:
            hmac_key = store.server_secret("key-hmac")
            reads = getattr(store, "_reads", {})  # the SQLite store's remembered reads
            drop = getattr(store, "_invalidate", None) or reads.clear
            time.sleep(1.5)  # PostgreSQL: the change listener vouches for the cache
            for _ in range(500):  # warm up
                keys.verify(store.get_key(key_id), hmac_key, key, time.time())
            n = 20_000
            started = time.perf_counter()
            for _ in range(n):
                keys.verify(store.get_key(key_id), hmac_key, key, time.time())
            cached = (time.perf_counter() - started) / n * 1e6
            n = 2_000
            started = time.perf_counter()
            for _ in range(n):
                drop()
                keys.verify(store.get_key(key_id), hmac_key, key, time.time())
            uncached = (time.perf_counter() - started) / n * 1e6
            out[label] = {"cached_us": cached, "uncached_us": uncached}
        finally:
            store.close()
    return out


def _run(wrk: str, shim: Keyshim, body: Path, connections: int) -> WrkRun:
    before = cpu_seconds(shim.proc.pid)
    run = run_wrk(wrk, shim.url, body, connections, SECONDS)
    return WrkRun(**{**asdict(run), "cpu_s": cpu_seconds(shim.proc.pid) - before})


def main() -> int:
    ensure_keyshim()
    speed = calibrate_us()
    with running_stack(TOKEN) as (stack, shims), postgres() as url:
        key_file = str(stack.db) + ".key"
        env = {**os.environ, "SHIM_KEY_FILE": key_file, "SHIM_SECRET_KEY": ""}
        progress("moving the installation to PostgreSQL with shim store copy")
        subprocess.run(
            [sys.executable, "-m", "shim", "store", "copy", "--from", str(stack.db), "--to", url],
            check=True,
            env={**env, "PYTHONPATH": str(REPO)},
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
        body = stack.workdir / "contact-add.xml"
        body.write_bytes(contact_add_body(stack.keys.bench))
        servers: dict[str, Keyshim] = {}
        for label, db_env in (("SQLite", {}), ("PostgreSQL", {"SHIM_DB": url})):
            log = stack.workdir / f"keyshim-{label}.log"
            shim = start_keyshim(
                label, stack.db, log, extra_env={"SHIM_KEY_FILE": key_file, **db_env}
            )
            shims.callback(stop, shim.proc)
            wait_healthy(shim)
            servers[label] = shim
        cells = {(label, c): Cell(label, c) for label in servers for c in CONNECTIONS}
        progress("warm-up: 2 s each")
        for shim in servers.values():
            run_wrk(stack.wrk, shim.url, body, 16, 2)
        time.sleep(1.5)
        pg_calls, pg_transactions = 0, 0
        for r in range(ROUNDS):
            for c in CONNECTIONS:
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                for label in order:
                    before = _transactions(url) if label == "PostgreSQL" else 0
                    run = _run(stack.wrk, servers[label], body, c)
                    if label == "PostgreSQL":
                        pg_transactions += _transactions(url) - before - 2  # our own reads
                        pg_calls += run.requests
                    cells[label, c].runs.append(run)
                    progress(
                        f"round {r + 1}/{ROUNDS} {label:<10} c={c:<3} "
                        f"{run.requests / (run.duration_us / 1e6):7.0f} req/s "
                        f"cpu {run.cpu_s * 1000 / max(1, run.requests):.2f} ms/call "
                        f"bad {run.bad + run.socket_errors}"
                    )
        progress("key check, in-process")
        checks = key_check(stack.db, key_file, url, stack.keys.bench)

    print()
    print(f"machine speed check: {speed:.0f} us (sum(range(10_000)); a desktop core: 60-100 us)")
    print()
    print("| keyshim on | req/s c=1 | p50 c=1 | req/s c=16 | CPU per call c=1 / c=16 |"
          " key check cached / uncached | db transactions per call |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for label in servers:
        one, many = cells[label, 1], cells[label, 16]
        tx = f"{pg_transactions / max(1, pg_calls):.4f}" if label == "PostgreSQL" else "-"
        print(
            f"| {label} | {one.rps:,.0f} | {one.p50_ms:.2f} ms | {many.rps:,.0f} | "
            f"{one.cpu_ms_per_call or 0:.2f} / {many.cpu_ms_per_call or 0:.2f} ms | "
            f"{checks[label]['cached_us']:.1f} / {checks[label]['uncached_us']:.1f} us | {tx} |"
        )
    errors = sum(cell.errors for cell in cells.values())
    print(f"\nbad answers: {errors}; PostgreSQL: {pg_transactions} transactions, {pg_calls} calls")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
