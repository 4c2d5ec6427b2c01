"""SqliteStore: schema, secrets at rest, chain bookkeeping, leases across processes, keys."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shim.models import Account, KeyRecord, RefreshJournal, TokenPair
from shim.store import sqlite as sqlite_store
from shim.store.protocol import StoreConflict
from shim.store.secrets import DecryptError, SecretBox, generate_master_key
from shim.store.sqlite import MIGRATIONS, SqliteStore

KEY = b"m" * 32
SECRETS = {
    "client_secret": "CLIENT-SECRET-q8Zr1",
    "service_key": "SERVICE-KEY-p4Lw9",
    "access_token": "ACCESS-TOKEN-x7Vb2",
    "refresh_token": "REFRESH-TOKEN-k3Nm5",
}


def _account(name: str = "prod", **kw: Any) -> Account:
    fields: dict[str, Any] = {"kind": "oauth", "created_at": 1000.0, "client_id": "cid"}
    fields["client_secret"] = SECRETS["client_secret"]
    return Account(name=name, **{**fields, **kw})


def _pair(n: int = 0) -> TokenPair:
    return TokenPair(
        access_token=f"{SECRETS['access_token']}-{n}",
        refresh_token=f"{SECRETS['refresh_token']}-{n}",
        expires_at=5000.0 + n,
    )


def _key(key_id: str = "k1", account: str = "prod", **kw: Any) -> KeyRecord:
    fields: dict[str, Any] = {"label": "script", "digest": f"d-{key_id}", "prefix": "shk_k1"}
    return KeyRecord(id=key_id, account=account, **{"created_at": 100.0, **fields, **kw})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "shim.db"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(path, SecretBox(KEY)) as s:
        s.migrate()
        s.add_account(_account())
        yield s


# -- file, schema, migrations ---------------------------------------------------------------


def test_file_is_private_and_wal(store: SqliteStore, path: Path) -> None:
    store.put_tokens("prod", _pair(), 1.0)
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        assert p.exists()
        assert os.stat(p).st_mode & 0o077 == 0, p
    assert os.stat(path).st_mode & 0o777 == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert store.path == str(path)


def test_migrate_is_idempotent_and_reports_version(path: Path) -> None:
    with SqliteStore(path, SecretBox(KEY)) as s:
        latest = MIGRATIONS[-1][0]
        assert s.schema_version() == 0
        assert s.migrate() == latest
        assert s.migrate() == latest
    with SqliteStore(path, SecretBox(KEY)) as s:
        assert s.migrate() == latest
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT version, name FROM migrations").fetchall()
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert rows == [(v, name) for v, name, _ in MIGRATIONS]
    assert {"accounts", "chains", "refresh_journal", "leases", "keys", "calls"} <= tables


def test_callable_migration_and_failed_step_rolls_back(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(db: Any) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    n = MIGRATIONS[-1][0]
    steps = [*MIGRATIONS, (n + 1, "extra", lambda db: db.execute("CREATE TABLE e (x)"))]
    with SqliteStore(path, SecretBox(KEY)) as s:
        monkeypatch.setattr(sqlite_store, "MIGRATIONS", [*steps, (n + 2, "broken", broken)])
        with pytest.raises(RuntimeError, match="boom"):
            s.migrate()
        assert s.schema_version() == n + 1
        monkeypatch.setattr(sqlite_store, "MIGRATIONS", steps)
        assert s.migrate() == n + 1
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='half_done'").fetchone() is None
    conn.close()


def test_refuses_newer_schema(path: Path) -> None:
    with SqliteStore(path, SecretBox(KEY)) as s:
        s.migrate()
        s._db.conn.execute("INSERT INTO migrations VALUES (99, 'future', 0)")
        with pytest.raises(RuntimeError, match="newer"):
            s.migrate()


def _mp() -> Any:
    """fork where available: children start in milliseconds, and the tests fork only while the
    parent holds no open SQLite connection (SQLite forbids carrying one across fork)."""
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def _migrate_worker(path: str, start: Any, out: Any) -> None:
    start.wait()
    with SqliteStore(path, SecretBox(KEY)) as s:
        out.put(s.migrate())


def test_concurrent_first_start_migrates_once(path: Path) -> None:
    ctx = _mp()
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_migrate_worker, args=(str(path), start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sorted(out.get(timeout=5) for _ in procs) == [MIGRATIONS[-1][0]] * 4


# -- secrets at rest ------------------------------------------------------------------------


def _raw_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_no_plaintext_secret_on_disk(store: SqliteStore, path: Path) -> None:
    store.add_account(_account("svc", kind="service_key", service_key=SECRETS["service_key"]))
    store.put_tokens("prod", _pair(), 1.0)
    store.update_account("prod", client_secret=SECRETS["client_secret"] + "-new")
    assert store.get_account("prod").client_secret == SECRETS["client_secret"] + "-new"  # type: ignore[union-attr]
    for stage in ("open", "closed"):
        raw = _raw_bytes(path)
        assert b"CLIENT-SECRET" in SECRETS["client_secret"].encode()  # guard the guard
        for secret in SECRETS.values():
            assert secret.encode() not in raw, (stage, secret)
        store.close()  # checkpoints the WAL into the main file


def test_secret_roundtrip_and_wrong_key(store: SqliteStore, path: Path) -> None:
    store.add_account(_account("svc", kind="service_key", service_key=SECRETS["service_key"]))
    assert store.get_account("svc").service_key == SECRETS["service_key"]  # type: ignore[union-attr]
    store.put_tokens("prod", _pair(), 1.0)
    with SqliteStore(path, SecretBox(generate_master_key())) as other:
        with pytest.raises(DecryptError) as info:
            other.get_account("prod")
        assert SECRETS["client_secret"] not in str(info.value)
        with pytest.raises(DecryptError):
            other.get_chain("prod")
        assert other.chain_generation("prod") == 1  # non-secret reads still work


def test_ciphertext_cannot_be_moved_between_rows(store: SqliteStore, path: Path) -> None:
    store.add_account(_account("dev"))
    store.put_tokens("prod", _pair(1), 1.0)
    store.put_tokens("dev", _pair(2), 1.0)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE chains SET refresh_token = "
            "(SELECT refresh_token FROM chains WHERE account = 'prod') WHERE account = 'dev'"
        )
    conn.close()
    with pytest.raises(DecryptError):
        store.get_chain("dev")


def test_rekey_rewraps_everything_atomically(store: SqliteStore, path: Path) -> None:
    store.add_account(_account("svc", kind="service_key", service_key=SECRETS["service_key"]))
    store.put_tokens("prod", _pair(), 1.0)
    new_box = SecretBox(generate_master_key())
    assert store.rekey(new_box) == 5  # 2 client secrets, 1 service key, 2 tokens
    assert store.get_chain("prod").refresh_token == _pair().refresh_token  # type: ignore[union-attr]
    with SqliteStore(path, SecretBox(KEY)) as old, pytest.raises(DecryptError):
        old.get_account("prod")
    # A value that no longer opens aborts the whole rotation and changes nothing.
    store._db.conn.execute("UPDATE accounts SET client_secret = 'v1:AAAA' WHERE name = 'svc'")
    with pytest.raises(DecryptError):
        store.rekey(SecretBox(generate_master_key()))
    assert store.get_account("prod").client_secret == SECRETS["client_secret"]  # type: ignore[union-attr]


# -- accounts -------------------------------------------------------------------------------


def test_accounts_crud(store: SqliteStore) -> None:
    assert store.get_account("prod") == _account()
    assert store.get_account("nope") is None
    with pytest.raises(StoreConflict):
        store.add_account(_account())
    store.add_account(_account("dev", route="auto", app_name="ab123"))
    assert [a.name for a in store.list_accounts()] == ["dev", "prod"]
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


# -- token chains ---------------------------------------------------------------------------


def test_put_tokens_creates_then_bumps_and_clears(store: SqliteStore) -> None:
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
    assert store.get_chain("prod").in_flight == journal  # type: ignore[union-attr]
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


def test_dead_chain_needs_reauth_but_is_kept(store: SqliteStore) -> None:
    store.put_tokens("prod", _pair(), 1.0)
    dead = store.end_refresh_failed("prod", "invalid_grant", 2.0, dead=True)
    assert dead.state == "needs_reauth"
    again = store.end_refresh_failed("prod", "still dead", 3.0, dead=False)
    assert (again.state, again.failures) == ("needs_reauth", 2)
    assert store.get_chain("prod").refresh_token == _pair().refresh_token  # type: ignore[union-attr]
    assert store.put_tokens("prod", _pair(9), 4.0).state == "ok"


def test_chain_methods_on_unknown_accounts(store: SqliteStore) -> None:
    with pytest.raises(KeyError):
        store.put_tokens("nope", _pair(), 1.0)
    with pytest.raises(KeyError):
        store.begin_refresh(RefreshJournal("nope", "fp", "me", 1.0))
    with pytest.raises(KeyError):
        store.end_refresh_failed("prod", "no chain yet", 1.0, dead=False)


def test_threads_share_one_store(store: SqliteStore) -> None:
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


# -- leases ---------------------------------------------------------------------------------


def test_lease_between_two_stores(store: SqliteStore, path: Path) -> None:
    with SqliteStore(path, SecretBox(KEY)) as other:
        assert store.acquire_lease("refresh:prod", "a", ttl=10, now=100)
        assert not other.acquire_lease("refresh:prod", "b", ttl=10, now=105)
        assert other.lease_holder("refresh:prod", now=105) == "a"
        assert store.acquire_lease("refresh:prod", "a", ttl=10, now=108)  # renewal to 118
        assert not other.acquire_lease("refresh:prod", "b", ttl=10, now=115)
        assert not other.release_lease("refresh:prod", "b")  # only the owner may release
        assert other.acquire_lease("refresh:prod", "b", ttl=10, now=118)  # expired: taken
        assert store.lease_holder("refresh:prod", now=119) == "b"
        assert not store.release_lease("refresh:prod", "a")  # a lost it
        assert other.release_lease("refresh:prod", "b")
        assert store.lease_holder("refresh:prod", now=119) is None
        assert store.lease_holder("refresh:prod", now=500) is None
        assert store.acquire_lease("refresh:prod", "a", ttl=10, now=120)


def _lease_worker(path: str, owner: str, tries: int, holders: Any, bad: Any, wins: Any) -> None:
    with SqliteStore(path, SecretBox(KEY)) as s:
        for _ in range(tries):
            if not s.acquire_lease("refresh:prod", owner, 30.0, time.time()):
                continue
            with holders.get_lock():
                holders.value += 1
                if holders.value != 1:
                    bad.value += 1
            time.sleep(0.002)
            with holders.get_lock():
                holders.value -= 1
            if not s.release_lease("refresh:prod", owner):
                bad.value += 1
            with wins.get_lock():
                wins.value += 1


def test_lease_is_exclusive_across_processes(path: Path) -> None:
    with SqliteStore(path, SecretBox(KEY)) as s:
        s.migrate()
    ctx = _mp()
    holders, bad, wins = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    procs = [
        ctx.Process(target=_lease_worker, args=(str(path), f"p{i}", 40, holders, bad, wins))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert bad.value == 0
    assert wins.value > 4


# -- local keys -----------------------------------------------------------------------------


def test_keys_crud(store: SqliteStore) -> None:
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


def test_revoke_in_the_future_and_touch(store: SqliteStore) -> None:
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
    assert store.get_key("k1").last_used_at == 50.0  # type: ignore[union-attr]


def test_per_call_reads_see_every_commit(store: SqliteStore, path: Path) -> None:
    """get_key and chain_generation are remembered between calls, but never past a change:
    our own writes, another store's commit (another worker or `shim key revoke`) and a raw
    write from any other connection all show on the very next read."""
    store.add_key(_key("k1"))
    store.put_tokens("prod", _pair(1), now=1.0)
    assert store.get_key("k1").revoked_at is None  # type: ignore[union-attr]
    assert store.chain_generation("prod") == 1
    assert store.get_key("k1") is store.get_key("k1")  # remembered

    store.revoke_key("k1", at=5.0)  # our own write
    assert store.get_key("k1").revoked_at == 5.0  # type: ignore[union-attr]

    with SqliteStore(path, SecretBox(KEY)) as other:  # another process's store
        other.put_tokens("prod", _pair(2), now=2.0)
        other.add_key(_key("k2"))
    assert store.chain_generation("prod") == 2
    assert store.get_key("k2") is not None

    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM keys WHERE id = 'k2'")
    conn.close()
    assert store.get_key("k2") is None


def _fill_keys(path: Path, n: int) -> list[str]:
    ids = [f"id{i:06d}" for i in range(n)]
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO keys (id, account, label, digest, prefix, created_at) "
            "VALUES (?, 'prod', 'bulk', ?, 'shk_', 0)",
            [(i, f"digest-{i}") for i in ids],
        )
    conn.close()
    return ids


def _time_lookups(store: SqliteStore, ids: list[str], n: int = 2000) -> float:
    picks = [ids[(i * 7919) % len(ids)] for i in range(n)]
    start = time.perf_counter()
    for key_id in picks:
        assert store.get_key(key_id) is not None
    return time.perf_counter() - start


@pytest.mark.slow
def test_get_key_stays_fast_with_100k_keys(tmp_path: Path) -> None:
    timings = []
    for n in (100, 100_000):
        path = tmp_path / f"k{n}.db"
        with SqliteStore(path, SecretBox(KEY)) as s:
            s.migrate()
            s.add_account(_account())
            ids = _fill_keys(path, n)
            _time_lookups(s, ids, 200)  # warm the page cache
            timings.append(min(_time_lookups(s, ids) for _ in range(3)))
            plans = [
                " ".join(str(r[-1]) for r in s._db.conn.execute(f"EXPLAIN QUERY PLAN {q}", ("x",)))
                for q in (f"{sqlite_store._SELECT_KEY} WHERE id = ?",
                          f"{sqlite_store._SELECT_KEY} WHERE digest = ?")
            ]  # fmt: skip
            assert all("USING" in p and "INDEX" in p for p in plans), plans
    small, big = timings
    assert big < small * 4 + 0.05, timings
