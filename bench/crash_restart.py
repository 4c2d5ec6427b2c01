"""Restart times after a SIGKILL at each step of a refresh, one table per backend (issue #11).

For SQLite, and for PostgreSQL when ``SHIM_TEST_PG`` names a cluster (``tests/support/
pg_cluster.sh start DIR`` prints one), and for each step of the refresh path
(``shim.failpoints.POINTS``, the recovery-file step, and Keap holding its answer until the
process is dead): a ``shim serve`` is started with that crash point, one call triggers a
refresh and the process dies (SIGKILL); then a ``shim serve`` without a failpoint is started
and a script calls it every 20 ms. Measured from the restart's ``Popen``:

* ``first ok``: the first call that works, or
* ``dead``: the chain is ``needs_reauth`` in the store (and the call answers fault 105), and
  ``alert``: when the ``dead`` webhook alert arrived, and whether the restarted process logged
  an ERROR line naming the account;
* ``spent shown``: refresh requests Keap refused with "spent" after the restart, i.e. spent
  refresh tokens keyshim presented.

Expected (issue #11): an unspent token: calls work within 2 s of the restart; Keap rotated and
the answer was lost: the chain is flagged dead at once, with an alert.

The simulator, the alert receiver and every keyshim listen on 127.0.0.1 only; each case has its
own temporary directory (and PostgreSQL database), removed afterwards. About a minute per
backend. ``python3 bench/crash_restart.py``
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from shim import failpoints  # noqa: E402
from tests.process.test_refresh_processes import Harness, harness, rpc, wait_for  # noqa: E402

#: Generous bound for one restart: a case that takes longer is reported as a timeout.
BOUND = 20.0


@dataclass(frozen=True)
class Step:
    name: str
    how: str  # "failpoint", "hold" (Keap holds its answer until keyshim is dead) or "refuse"


STEPS = [
    *(Step(p, "failpoint") for p in failpoints.POINTS),
    Step("keap answer lost", "hold"),
    Step(failpoints.AFTER_RECOVERY_FILE, "refuse"),
]


@dataclass
class Row:
    step: str
    token: str
    result: str
    seconds: float
    alert: str
    spent_shown: int


def crash(h: Harness, step: Step, key: str) -> None:
    env = {"SHIM_INLINE_MARGIN": "30", "SHIM_LEASE_TTL": "3"}
    if step.how == "failpoint":
        env["SHIM_FAILPOINT"] = step.name
        shim = h.start("crashing", **env)
        rpc(shim.rpc_url, key, "doomed")
        shim.proc.wait(timeout=30)
        return
    if step.how == "hold":
        shim = h.start("crashing", **env)
        h.sim.config.hold_refresh = "after"
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(rpc, shim.rpc_url, key, "doomed")
            wait_for(lambda: h.sim.held == 1, "the simulator to hold the refresh")
            shim.kill()
            h.sim.config.hold_refresh = "off"
            h.release()
            call.result(timeout=30)
        return
    # "refuse": the store is write-locked past the busy timeout when Keap answers (SQLite).
    shim = h.start("crashing", SHIM_FAILPOINT=failpoints.AFTER_RECOVERY_FILE, **env)
    h.sim.config.hold_refresh = "after"
    locker = sqlite3.connect(h.settings.db, isolation_level=None)
    try:
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(rpc, shim.rpc_url, key, "doomed", 60.0)
            wait_for(lambda: h.sim.held == 1, "the simulator to hold the refresh")
            locker.execute("BEGIN IMMEDIATE")
            h.sim.config.hold_refresh = "off"
            h.release()
            shim.proc.wait(timeout=40)
            call.result(timeout=10)
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()


def measure(h: Harness, step: Step) -> Row:
    sim = h.sim
    sim.config.access_token_lifetime = 3600
    sim.config.old_access_token_valid_after_refresh = False
    key = h.add_account(lifetime=10)  # inside the 30 s margin: the first call refreshes
    before = h.chain()
    crash(h, step, key)
    spent = h.spent_at_keap(before.refresh_token)
    if not spent:
        token = "unspent"
    elif h.chain().generation > before.generation:
        token = "rotated, stored"
    elif step.how == "refuse" or step.name == failpoints.AFTER_WRITE_AHEAD:
        token = "rotated, sealed file"
    else:
        token = "rotated, answer lost"
    stats0 = sim.stats()
    events0 = len(h.webhook.events)

    started = time.monotonic()
    shim = h.start("restarted", wait=False, SHIM_INLINE_MARGIN="30", SHIM_LOG_LEVEL="info")
    result, seconds = "timeout", BOUND
    while time.monotonic() - started < BOUND:
        answer = rpc(shim.rpc_url, key, "after restart", timeout=5.0)
        if answer.kind == "ok":
            result, seconds = "first ok", time.monotonic() - started
            break
        if h.chain().state == "needs_reauth":
            result, seconds = "dead", time.monotonic() - started
            break
        time.sleep(0.02)
    alert = "-"
    if result == "dead":
        with contextlib.suppress(AssertionError):
            wait_for(lambda: len(h.webhook.events) > events0, "the alert", 5.0)
        kinds = [str(e.get("event")) for e in h.webhook.events[events0:]]
        alert_at = time.monotonic() - started
        logged = any(
            '"level": "error"' in line and "account prod: refresh failed (dead)" in line
            for line in shim.log().splitlines()
        )
        said = ",".join(kinds) or "none"
        alert = f"{said} at {alert_at:.2f} s, error log {'yes' if logged else 'no'}"
    stats = sim.stats()
    refused = (stats["refresh_requests"] - stats["refreshes_served"]) - (
        stats0["refresh_requests"] - stats0["refreshes_served"]
    )
    return Row(
        step.name,
        token,
        result,
        seconds,
        alert,
        refused,
    )


@contextlib.contextmanager
def backend(kind: str, tmp: Path) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
        return
    from tests.support import pg

    admin = os.environ["SHIM_TEST_PG"]
    db = pg.create_database(admin)
    try:
        yield db
    finally:
        pg.drop_database(admin, db)


def run(kind: str) -> list[Row]:
    rows = []
    for step in STEPS:
        if step.how == "refuse" and kind != "sqlite":
            continue  # the refusal is made with a SQLite write lock; the chains test covers PG
        with (
            tempfile.TemporaryDirectory(prefix="crash-restart-") as tmp,
            backend(kind, Path(tmp)) as db,
            harness(Path(tmp), db=db) as h,
        ):
            rows.append(measure(h, step))
            print(f"  {kind} {step.name}: {rows[-1].result} {rows[-1].seconds:.2f}s", flush=True)
    return rows


def table(kind: str, rows: list[Row]) -> str:
    lines = [
        f"{kind}",
        f"| {'killed at':<19} | {'refresh token':<20} | {'after restart':<16} "
        f"| {'alert / log':<32} | spent shown |",
        f"|{'-' * 21}|{'-' * 22}|{'-' * 18}|{'-' * 34}|{'-' * 13}|",
    ]
    for r in rows:
        lines.append(
            f"| {r.step:<19} | {r.token:<20} | {r.result + f' {r.seconds:.2f} s':<16} "
            f"| {r.alert:<32} | {r.spent_shown:>11} |"
        )
    return "\n".join(lines)


def main() -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    kinds = ["sqlite"] + (["postgresql"] if os.environ.get("SHIM_TEST_PG") else [])
    tables = [table(kind, run(kind)) for kind in kinds]
    print("\n\n".join(tables))
    if "postgresql" not in kinds:
        print("\n(PostgreSQL skipped: set SHIM_TEST_PG to a test cluster's URL)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
