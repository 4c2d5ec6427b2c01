"""What only the SQLite store has: its file (mode, WAL), raw-file checks of sealing, migrations
written as callables, reads cached by ``data_version``, flock files. The contract every store
keeps is tested on both backends in ``test_contract.py``."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shim.store import sqlite as sqlite_store
from shim.store.protocol import StoreConflict
from shim.store.secrets import DecryptError, SecretBox, generate_master_key
from shim.store.sqlite import MIGRATIONS, SqliteStore
from tests.support.records import SECRETS
from tests.support.records import account as _account
from tests.support.records import key as _key
from tests.support.records import pair as _pair

KEY = b"m" * 32


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
    assert {"accounts", "chains", "refresh_journal", "keys", "calls", "rate_windows"} <= tables
    assert "leases" not in tables  # locks replaced them (migration 6)


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


# -- locks ----------------------------------------------------------------------------------


def test_locks_are_flock_files_beside_the_database(store: SqliteStore, path: Path) -> None:
    held = store.try_lock("refresh:prod", "host:1:a")
    assert held is not None
    lock_file = Path(f"{path}.locks") / "refresh%3Aprod.lock"
    assert lock_file.read_text() == "host:1:a"
    assert os.stat(f"{path}.locks").st_mode & 0o077 == 0
    held.release()
    assert store.lock_holder("refresh:prod") is None


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
                for q in (f"{sqlite_store.SELECT_KEY} WHERE id = ?",
                          f"{sqlite_store.SELECT_KEY} WHERE digest = ?")
            ]  # fmt: skip
            assert all("USING" in p and "INDEX" in p for p in plans), plans
    small, big = timings
    assert big < small * 4 + 0.05, timings
