"""The Store contract, run against both backends: SQLite and PostgreSQL.

One parametrized suite: every test here takes ``db`` (a SQLite file or a fresh PostgreSQL
database) and opens stores on it with ``open_db``. A second store on the same ``db`` stands for
another process or host. What only one backend has (SQLite's file modes and WAL, say) lives in
``test_sqlite.py``.
"""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shim.errors import StaleTokenWrite
from shim.models import CallRecord, RefreshJournal
from shim.store.protocol import UNREAD, Store, StoreConflict
from shim.store.secrets import DecryptError, SecretBox, generate_master_key
from shim.store.sqlite import MIGRATIONS, SqliteStore
from tests.support.records import SECRETS
from tests.support.records import account as _account
from tests.support.records import key as _key
from tests.support.records import pair as _pair

KEY = b"m" * 32
T = TypeVar("T")


def open_db(db: str, key: bytes = KEY, owner: str = "test:1:a") -> Store:
    if db.startswith("postgresql://"):
        from shim.store.postgres import PostgresStore

        return PostgresStore(db, SecretBox(key), owner=owner)
    return SqliteStore(db, SecretBox(key))


def eventually(probe: Callable[[], T], within: float = 1.0) -> T:
    """``probe()`` once it is truthy; fails if that takes longer than ``within`` seconds (a
    change made through one store reaches another's cache within a second, at worst)."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            assert value, f"not seen within {within}s"
            return value
        time.sleep(0.005)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "shim.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    s = open_db(db)
    try:
        s.migrate()
        s.add_account(_account())
        yield s
    finally:
        s.close()


@pytest.fixture
def other(db: str, store: Store) -> Iterator[Store]:
    """Another process's (or host's) store on the same database."""
    s = open_db(db, owner="test:2:b")
    yield s
    s.close()


# -- schema and migrations --------------------------------------------------------------------


def test_migrate_is_idempotent_and_shares_the_numbering(db: str) -> None:
    latest = MIGRATIONS[-1][0]
    with open_db(db) as s:  # type: ignore[attr-defined]
        assert s.migrate() == latest
        assert s.migrate() == latest
    with open_db(db) as s:  # type: ignore[attr-defined]
        assert s.migrate() == latest
    if db.startswith("postgresql://"):
        from shim.store.postgres import MIGRATIONS as PG

        assert [(v, n) for v, n, _ in PG] == [(v, n) for v, n, _ in MIGRATIONS]


def _migrate_worker(db: str, start: Any, out: Any) -> None:
    start.wait()
    s = open_db(db)
    try:
        out.put(s.migrate())
    finally:
        s.close()


def test_concurrent_first_start_migrates_once(db: str) -> None:
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_migrate_worker, args=(db, start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(out.get(timeout=5) for _ in procs) == [MIGRATIONS[-1][0]] * 4


# -- secrets ----------------------------------------------------------------------------------


def test_secret_roundtrip_and_wrong_key(store: Store, db: str) -> None:
    store.add_account(_account("svc", kind="service_key", service_key=SECRETS["service_key"]))
    assert store.get_account("svc").service_key == SECRETS["service_key"]  # type: ignore[union-attr]
    store.put_tokens("prod", _pair(), 1.0)
    other = open_db(db, generate_master_key())
    try:
        with pytest.raises(DecryptError) as info:
            other.get_account("prod")
        assert SECRETS["client_secret"] not in str(info.value)
        with pytest.raises(DecryptError):
            other.get_chain("prod")
        assert other.chain_generation("prod") == 1  # non-secret reads still work
    finally:
        other.close()


def test_rekey_rewraps_everything(store: Store, db: str) -> None:
    store.add_account(_account("svc", kind="service_key", service_key=SECRETS["service_key"]))
    store.put_tokens("prod", _pair(), 1.0)
    store.server_secret("key-hmac")
    new_key = generate_master_key()
    assert store.rekey(SecretBox(new_key)) == 6  # 2 client secrets, 1 service key, 2 tokens, 1
    assert store.get_chain("prod").refresh_token == _pair().refresh_token  # type: ignore[union-attr]
    fresh = open_db(db, new_key)
    try:
        assert fresh.get_account("svc").service_key == SECRETS["service_key"]  # type: ignore[union-attr]
    finally:
        fresh.close()


def test_server_secret_is_made_once_for_every_host(store: Store, other: Store) -> None:
    first = store.server_secret("key-hmac")
    assert len(first) == 32
    assert other.server_secret("key-hmac") == first == store.server_secret("key-hmac")
    assert other.server_secret("another") != first


def test_audit_drops_add_up_for_every_host(store: Store, other: Store) -> None:
    assert store.audit_dropped() == 0
    store.add_audit_dropped(3)
    other.add_audit_dropped(4)
    assert store.audit_dropped() == other.audit_dropped() == 7
    assert store.admin_password() is None  # a row of its own beside the admin settings


# -- accounts ---------------------------------------------------------------------------------


def test_accounts_crud(store: Store) -> None:
    assert store.get_account("prod") == _account()
    assert store.get_account("nope") is None
    with pytest.raises(StoreConflict):
        store.add_account(_account())
    store.add_account(_account("dev", route="auto", app_name="ab123"))
    store.add_account(_account("Zeta"))
    assert [a.name for a in store.list_accounts()] == ["Zeta", "dev", "prod"]  # byte order
    updated = store.update_account("prod", route="rest", client_secret=None, app_name="zz9")
    assert (updated.route, updated.client_secret, updated.app_name) == ("rest", None, "zz9")
    assert store.get_account("prod") == updated
    assert store.update_account("prod") == updated
    with pytest.raises(KeyError):
        store.update_account("nope", route="rest")
    with pytest.raises(ValueError):
        store.update_account("prod", created_at=5.0)
    with pytest.raises(ValueError):
        store.update_account("prod", route="carrier-pigeon")
    with pytest.raises(TypeError):
        store.update_account("prod", app_name=3)


# -- token chains -----------------------------------------------------------------------------


def test_put_tokens_creates_then_bumps_and_clears(store: Store) -> None:
    assert store.get_chain("prod") is None
    assert store.chain_generation("prod") is None
    first = store.put_tokens("prod", _pair(1), now=10.0)
    assert (first.generation, first.state, first.in_flight) == (1, "ok", None)
    assert (first.access_token, first.refresh_token) == (
        _pair(1).access_token,
        _pair(1).refresh_token,
    )
    journal = RefreshJournal("prod", "fp-1", "worker-a", 20.0)
    store.begin_refresh(journal)
    in_flight = store.get_chain("prod").in_flight  # type: ignore[union-attr]
    assert in_flight == journal
    # Its age is the store's own (started_at, 20.0, is the writer's clock and says nothing).
    assert in_flight is not None and in_flight.age is not None and 0 <= in_flight.age < 5
    failed = store.end_refresh_failed("prod", "timeout", 21.0, dead=False)
    assert (failed.failures, failed.last_error, failed.last_error_at) == (1, "timeout", 21.0)
    assert (failed.state, failed.in_flight, failed.generation) == ("ok", None, 1)

    store.begin_refresh(journal)
    second = store.put_tokens("prod", _pair(2), now=30.0)
    assert second == store.get_chain("prod")
    assert (second.generation, second.failures, second.last_error, second.in_flight) == (
        2, 0, None, None,
    )  # fmt: skip
    assert (second.refresh_issued_at, second.last_refresh_at, second.expires_at) == (
        30.0, 30.0, _pair(2).expires_at,
    )  # fmt: skip
    assert store.chain_generation("prod") == 2


def test_dead_chain_needs_reauth_but_is_kept(store: Store) -> None:
    store.put_tokens("prod", _pair(), 1.0)
    dead = store.end_refresh_failed("prod", "invalid_grant", 2.0, dead=True)
    assert dead.state == "needs_reauth"
    again = store.end_refresh_failed("prod", "still dead", 3.0, dead=False)
    assert (again.state, again.failures) == ("needs_reauth", 2)
    assert store.get_chain("prod").refresh_token == _pair().refresh_token  # type: ignore[union-attr]
    assert store.put_tokens("prod", _pair(9), 4.0).state == "ok"


def test_chain_methods_on_unknown_accounts(store: Store) -> None:
    with pytest.raises(KeyError):
        store.put_tokens("nope", _pair(), 1.0)
    with pytest.raises(KeyError):
        store.begin_refresh(RefreshJournal("nope", "fp", "me", 1.0))
    with pytest.raises(KeyError):
        store.end_refresh_failed("prod", "no chain yet", 1.0, dead=False)


def test_every_token_write_is_fenced_on_its_generation(store: Store, other: Store) -> None:
    store.put_tokens("prod", _pair(1), 1.0)  # generation 1
    journal = RefreshJournal("prod", "fp-1", "a", 2.0)
    store.begin_refresh(journal, generation=1)
    # Another process rotates the chain (it held the lock after ours was lost).
    assert other.put_tokens("prod", _pair(2), 3.0, generation=1).generation == 2
    # Every write of the stale refresh (started at generation 1) is refused, not applied.
    with pytest.raises(StaleTokenWrite, match="generation 2, not 1"):
        store.put_tokens("prod", _pair(3), 4.0, generation=1)
    with pytest.raises(StaleTokenWrite):
        store.end_refresh_failed("prod", "invalid_grant", 4.0, dead=True, generation=1)
    with pytest.raises(StaleTokenWrite):
        store.begin_refresh(journal, generation=1)
    chain = store.get_chain("prod")
    assert chain is not None
    assert (chain.generation, chain.state, chain.failures) == (2, "ok", 0)
    assert chain.refresh_token == _pair(2).refresh_token
    # The current generation writes; no generation (a human's import) always writes.
    assert store.put_tokens("prod", _pair(4), 5.0, generation=2).generation == 3
    assert store.put_tokens("prod", _pair(5), 6.0).generation == 4


def test_fenced_writers_racing_one_wins(db: str, store: Store) -> None:
    """Eight writers that all started from generation 1: exactly one write lands."""
    store.put_tokens("prod", _pair(1), 1.0)
    stores = [open_db(db, owner=f"w{i}") for i in range(4)]
    wins, stale = [], []

    def write(s: Store, n: int) -> None:
        try:
            s.put_tokens("prod", _pair(n), 2.0, generation=1)
            wins.append(n)
        except StaleTokenWrite:
            stale.append(n)

    threads = [threading.Thread(target=write, args=(stores[i % 4], i)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert len(wins) == 1 and len(stale) == 7
    chain = store.get_chain("prod")
    assert chain is not None and chain.generation == 2
    assert chain.refresh_token == _pair(wins[0]).refresh_token


def test_threads_share_one_store(store: Store) -> None:
    def work() -> None:
        for i in range(20):
            store.put_tokens("prod", _pair(i), float(i))
            store.get_chain("prod")

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.chain_generation("prod") == 120


# -- locks ------------------------------------------------------------------------------------


def test_lock_is_exclusive_and_released(store: Store, other: Store) -> None:
    held = store.try_lock("refresh:prod", "a")
    assert held is not None and held.held()
    assert other.try_lock("refresh:prod", "b") is None
    assert store.try_lock("refresh:prod", "a") is None  # not re-entrant, even in one store
    assert other.lock_holder("refresh:prod") == "a"
    assert other.try_lock("refresh:dev", "b") is not None  # names are independent
    held.release()
    held.release()  # harmless
    assert not held.held()
    assert store.lock_holder("refresh:prod") is None
    taken = other.try_lock("refresh:prod", "b")
    assert taken is not None
    assert store.lock_holder("refresh:prod") == "b"
    taken.release()


def test_shared_locks_exclude_only_an_exclusive_one(store: Store, other: Store) -> None:
    a = store.try_lock("serving", "server-a", shared=True)
    b = other.try_lock("serving", "server-b", shared=True)
    assert a is not None and b is not None
    assert store.try_lock("serving", "copy") is None
    a.release()
    assert other.try_lock("serving", "copy") is None
    b.release()
    exclusive = store.try_lock("serving", "copy")
    assert exclusive is not None
    assert other.try_lock("serving", "server-c", shared=True) is None
    exclusive.release()


_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.store.test_contract import open_db
store = open_db({db!r}, owner="doomed:1:x")
held = store.try_lock("refresh:prod", "doomed:1:x")
print("held" if held else "busy", flush=True)
time.sleep(60)
"""


def test_a_killed_holder_frees_its_lock_at_once(store: Store, db: str) -> None:
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLDER.format(root=root, db=db))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert store.try_lock("refresh:prod", "survivor") is None
        assert store.lock_holder("refresh:prod") == "doomed:1:x"
        assert db.startswith("/") or store.owner_alive("doomed:1:x")
        proc.kill()
        proc.wait(10)
        killed = time.monotonic()
        held = eventually(lambda: store.try_lock("refresh:prod", "survivor"), within=1.0)
        assert time.monotonic() - killed < 1.0  # no TTL to wait out
        assert not store.owner_alive("doomed:1:x")
        held.release()
    finally:
        proc.kill()
        proc.wait(10)


def _lock_worker(db: str, owner: str, tries: int, holders: Any, bad: Any, wins: Any) -> None:
    s = open_db(db, owner=owner)
    try:
        for _ in range(tries):
            held = s.try_lock("refresh:prod", owner)
            if held is None:
                time.sleep(0.001)
                continue
            with holders.get_lock():
                holders.value += 1
                if holders.value != 1:
                    bad.value += 1
            time.sleep(0.002)
            with holders.get_lock():
                holders.value -= 1
            held.release()
            with wins.get_lock():
                wins.value += 1
    finally:
        s.close()


def test_lock_is_exclusive_across_processes(db: str, store: Store) -> None:
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    holders, bad, wins = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    procs = [
        ctx.Process(target=_lock_worker, args=(db, f"p{i}", 40, holders, bad, wins))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert bad.value == 0
    assert wins.value > 4


# -- local keys -------------------------------------------------------------------------------


def test_keys_crud(store: Store) -> None:
    store.add_account(_account("dev"))
    k1 = _key("k1", allow=("DataService.*", "ContactService.load"), rate_per_min=60)
    store.add_key(k1)
    store.add_key(_key("k2", account="dev", created_at=200.0))
    assert store.get_key("k1") == k1
    assert store.get_key("missing") is None
    assert [k.id for k in store.list_keys()] == ["k1", "k2"]
    assert [k.id for k in store.list_keys("dev")] == ["k2"]
    with pytest.raises(StoreConflict):
        store.add_key(_key("k1", digest="fresh"))
    with pytest.raises(StoreConflict):
        store.add_key(_key("k3", digest="d-k1"))
    with pytest.raises(KeyError):
        store.add_key(_key("k4", account="nope"))


def test_revoke_in_the_future_and_touch(store: Store) -> None:
    store.add_key(_key("k1"))
    assert store.revoke_key("k1", at=1000.0)
    assert not store.revoke_key("missing", at=1000.0)
    key = store.get_key("k1")
    assert key is not None
    assert key.state(now=999.0) == "active"
    assert key.state(now=1000.0) == "revoked"
    store.touch_keys({"k1": 50.0, "missing": 60.0})
    store.touch_keys({"k1": 40.0})  # an older batch flushed late never moves time back
    store.touch_keys({})
    assert [k.last_used_at for k in store.list_keys()] == [50.0]


def test_per_call_reads_see_every_commit_within_a_second(store: Store, other: Store) -> None:
    """get_key and chain_generation are remembered between calls, but a change made anywhere
    (this store, another process or host) shows within a second at worst."""
    store.add_key(_key("k1"))
    store.put_tokens("prod", _pair(1), now=1.0)
    assert store.get_key("k1").revoked_at is None  # type: ignore[union-attr]
    assert store.chain_generation("prod") == 1
    store.revoke_key("k1", at=5.0)  # our own write: at once
    assert store.get_key("k1").revoked_at == 5.0  # type: ignore[union-attr]
    assert other.get_key("k1") is not None
    other.put_tokens("prod", _pair(2), now=2.0)
    other.add_key(_key("k2"))
    eventually(lambda: store.chain_generation("prod") == 2)
    eventually(lambda: store.get_key("k2") is not None)
    store.revoke_key("k2", at=7.0)
    eventually(lambda: (other.get_key("k2") or _key()).revoked_at == 7.0)


def test_peeks_answer_as_the_reads_do_or_not_at_all(store: Store, other: Store) -> None:
    """The per-call peeks (asked on the event loop, so they never wait) give the read's own
    answer, or UNREAD; once read, a key or generation is answered without a round trip."""
    store.add_key(_key("k1"))
    store.put_tokens("prod", _pair(1), now=1.0)
    _peeked_once_read(store.peek_key, store.get_key, "k1")
    _peeked_once_read(store.peek_key, store.get_key, "missing")
    _peeked_once_read(store.peek_generation, store.chain_generation, "prod")
    _peeked_once_read(store.peek_generation, store.chain_generation, "nobody")
    other.revoke_key("k1", at=5.0)  # a change made elsewhere is never peeked stale for long
    eventually(lambda: (store.get_key("k1") or _key()).revoked_at == 5.0)
    peeked = store.peek_key("k1")
    assert peeked is UNREAD or (peeked is not None and peeked.revoked_at == 5.0)


def _peeked_once_read(
    peek: Callable[[str], object], read: Callable[[str], object], arg: str
) -> None:
    assert peek(arg) in (UNREAD, read(arg))

    def answered() -> bool:
        read(arg)  # PostgreSQL keeps what it reads once its change listener vouches
        return peek(arg) is not UNREAD

    eventually(answered)
    assert peek(arg) == read(arg)


# -- rates, budget, quota, audit -------------------------------------------------------------


def test_admit_call_limits_the_combined_count(store: Store, other: Store) -> None:
    assert store.admit_call("k", 600, 60, 3, 1.0) is None
    assert other.admit_call("k", 600, 60, 3, 1.0) is None
    assert store.admit_call("k", 600, 60, 3, 1.0) is None
    assert other.admit_call("k", 600, 60, 3, 1.0) == (0, 3)  # the sum is what is limited
    assert store.admit_call("other-key", 600, 60, 3, 1.0) is None
    # Next minute: the previous minute's 3 calls count by their weight.
    assert store.admit_call("k", 660, 60, 3, 0.5) is None  # 1.5 + 0 + 1 <= 3
    assert store.admit_call("k", 660, 60, 3, 0.5) == (3, 1)  # 1.5 + 1 + 1 > 3
    assert store.admit_call("k", 660, 60, 3, 0.0) is None
    # Windows of other units: 2 a second.
    assert store.admit_call("s", 1000, 1, 2, 1.0) is None
    assert store.admit_call("s", 1000, 1, 2, 1.0) is None
    assert other.admit_call("s", 1000, 1, 2, 1.0) == (0, 2)


def test_added_calls_count_against_the_shared_window(store: Store, other: Store) -> None:
    """Calls a process admitted on its own (the store did not answer) join the window."""
    assert store.admit_call("k", 600, 60, 5, 1.0) is None
    other.add_calls("k", 600, 60, 3)
    store.add_calls("new", 600, 60, 2)
    assert store.admit_call("k", 600, 60, 5, 1.0) is None
    assert other.admit_call("k", 600, 60, 5, 1.0) == (0, 5)
    assert store.admit_call("new", 600, 60, 3, 1.0) is None
    assert store.admit_call("new", 600, 60, 3, 1.0) == (0, 3)
    # Windows before the previous one are forgotten: 600's 5 no longer weigh on 660.
    other.add_calls("k", 720, 60, 1)
    assert store.admit_call("k", 660, 60, 1, 1.0) is None


def test_admit_call_is_exact_under_concurrency(db: str, store: Store) -> None:
    stores = [store, *(open_db(db, owner=f"h{i}") for i in range(3))]
    admitted = []

    def hammer(s: Store) -> None:
        for _ in range(40):
            if s.admit_call("hot", 1200, 60, 50, 1.0) is None:
                admitted.append(1)

    threads = [threading.Thread(target=hammer, args=(stores[i % 4],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores[1:]:
        s.close()
    assert len(admitted) == 50


def test_published_budget_counts_of_the_others(store: Store, other: Store) -> None:
    store.publish_rates("a", {("oauth:c", 600): 5, ("oauth:c", 540): 2}, oldest=480)
    other.publish_rates("b", {("oauth:c", 600): 7}, oldest=480)
    other.publish_rates("b", {("oauth:c", 600): 9}, oldest=480)  # absolute: replaces
    assert store.others_rates(["oauth:c", "oauth:x"], 600, "a") == {"oauth:c": (9, 1)}
    assert other.others_rates(["oauth:c"], 600, "b") == {"oauth:c": (5, 1)}
    assert store.others_rates([], 600, "a") == {}


def test_quota_figures_newer_win(store: Store, other: Store) -> None:
    store.put_quota({"prod": ({"quota-available": "10"}, 5.0)})
    other.put_quota({"prod": ({"quota-available": "3"}, 4.0)})  # older: ignored
    assert other.get_quota() == {"prod": ({"quota-available": "10"}, 5.0)}


def _call(at: float, key: str | None, method: str, outcome: str = "ok", **kw: Any) -> CallRecord:
    fields: dict[str, Any] = {"upstream_status": 200, "duration_ms": 2.0, "bytes_in": 10}
    fields.update({"bytes_out": 20, "route": "xmlrpc", **kw})
    return CallRecord(at, "r", key, "prod", method, outcome, **fields)


def test_usage_report_is_the_same_on_every_backend(store: Store) -> None:
    store.add_key(_key("k1"))
    store.record_calls(
        [
            _call(10.0, "k1", "DataService.query"),
            _call(11.0, "k1", "DataService.query", "RecordNotFound", duration_ms=3.0),
            _call(12.0, "k1", "DataService.query", "error"),
            _call(13.0, "k1", "ContactService.load", route="rest"),
            _call(14.0, None, "DataService.echo", "InvalidKey"),
            _call(1.0, "k1", "Old.call"),
        ]
    )
    assert store.prune_calls(5.0) == 1
    assert store.usage(0.0) == [
        {"key_id": "k1", "label": "script", "account": "prod", "method": "DataService.query",
         "table_name": None, "calls": 3, "faults": 1, "errors": 1, "first_seen": 10.0,
         "last_seen": 12.0, "via_rest": 0, "avg_ms": 2.33,
         "fault_tags": {"RecordNotFound": 1, "error": 1}},
        {"key_id": None, "label": None, "account": "prod", "method": "DataService.echo",
         "table_name": None, "calls": 1, "faults": 1, "errors": 0, "first_seen": 14.0,
         "last_seen": 14.0, "via_rest": 0, "avg_ms": 2.0, "fault_tags": {"InvalidKey": 1}},
        {"key_id": "k1", "label": "script", "account": "prod", "method": "ContactService.load",
         "table_name": None, "calls": 1, "faults": 0, "errors": 0, "first_seen": 13.0,
         "last_seen": 13.0, "via_rest": 1, "avg_ms": 2.0, "fault_tags": {}},
    ]  # fmt: skip


# -- moving an installation --------------------------------------------------------------------


def test_export_and_import_keep_every_row_sealed(store: Store, tmp_path: Path) -> None:
    store.put_tokens("prod", _pair(1), 1.0)
    store.put_tokens("prod", _pair(2), 2.0)
    store.add_key(_key("k1", allow=("DataService.*",), rate_per_min=5))
    hmac = store.server_secret("key-hmac")
    store.record_calls([_call(10.0, "k1", "DataService.query")])
    exported = {t: list(store.export_rows(t)) for t in ("accounts", "chains", "server_secrets")}
    sealed = exported["chains"][0]["refresh_token"]
    assert sealed.startswith(("v1:", "v2:")) and SECRETS["refresh_token"] not in str(exported)
    target = SqliteStore(tmp_path / "copy.db", SecretBox(KEY))
    try:
        target.migrate()
        assert target.is_empty()
        for table in ("accounts", "chains", "refresh_journal", "keys", "server_secrets", "calls"):
            target.import_rows(table, store.export_rows(table))
        assert not target.is_empty()
        assert target.get_chain("prod") == store.get_chain("prod")
        assert target.get_key("k1") == store.get_key("k1")
        assert target.server_secret("key-hmac") == hmac
        assert target.usage(0) == store.usage(0)
    finally:
        target.close()
