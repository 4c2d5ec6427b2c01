"""SqliteStore: the embedded ``shim.store.protocol.Store``, one SQLite file shared by every process.

The only module that imports ``sqlite_utils``. Decisions, and why:

- Durability: WAL + ``synchronous=FULL``, so ``put_tokens``/``begin_refresh`` are fsynced
  before they return; a rotated refresh token lost in a crash is gone for good.
- Processes: every write is one short ``BEGIN IMMEDIATE ... COMMIT`` that takes the write lock
  up front, so read-check-write steps (fenced chain writes, migrations) cannot interleave with
  another process; ``busy_timeout`` makes writers wait rather than fail. No transaction spans
  I/O.
- Locks: ``flock`` on one file per lock name in ``<db>.locks/`` beside the database. The kernel
  drops a flock when its holder's file is closed, which a killed process's always is, so a
  dead holder frees its locks at once; there is no TTL. Local filesystems only, like the
  database itself (several hosts share PostgreSQL instead).
- Threads: one connection (``check_same_thread=False``) behind a ``threading.RLock`` held for
  each public method. Statements take microseconds, so this is cheaper and simpler than a
  connection per thread, and ``close()`` closes everything. Use one store per process.
- Secrets: sealed under a context naming row and column (``chain:prod:refresh_token``), so a
  ciphertext moved to another row does not open. File created 0600 (SQLite copies the mode
  to ``-wal``/``-shm``); ``secure_delete`` zeroes freed pages. Errors never carry values.
- sqlite-utils wraps the connection and runs migration scripts inside our transaction. That
  needs sqlite-utils 4: from 4.0, ``Database.executescript`` runs a script statement by
  statement while a transaction is open, where 3.x handed it to ``sqlite3``'s
  ``executescript``, which COMMITs first (hence ``sqlite-utils>=4`` in pyproject.toml). Rows
  are written with explicit SQL so a missing migration fails loudly instead of letting
  ``table.insert`` infer a table.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlite_utils import Database

from shim.errors import MasterKeyChanged
from shim.files import write_private
from shim.models import (
    Account,
    CallRecord,
    Chain,
    KeyRecord,
    RefreshJournal,
    TokenPair,
)
from shim.store import sqlite_audit
from shim.store.columns import (
    ACCOUNT_COLUMNS,
    ACCOUNT_SECRETS,
    CHAIN_SECRETS,
    KEY_COLUMNS,
    SELECT_ACCOUNT,
    SELECT_KEY,
    check_account_changes,
    check_generation,
    seal_context,
)
from shim.store.protocol import COPY_TABLES, UNREAD, StoreConflict, Unread
from shim.store.secrets import DecryptError, OtherKey, SecretBox, key_id_of, rewrap

if TYPE_CHECKING:
    from shim.store.protocol import Store

MigrationStep = Callable[[Database], None]
Migration = tuple[int, str, str | MigrationStep]

_SCHEMA_V1 = """
CREATE TABLE accounts (
    name          TEXT PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('oauth', 'service_key')),
    client_id     TEXT,
    client_secret TEXT,  -- sealed
    service_key   TEXT,  -- sealed
    xmlrpc_url TEXT NOT NULL, token_url TEXT NOT NULL, authorize_url TEXT NOT NULL,
    rest_url   TEXT NOT NULL,
    route         TEXT NOT NULL CHECK (route IN ('xmlrpc', 'rest', 'auto')),
    app_name      TEXT,
    created_at    REAL NOT NULL
);
CREATE TABLE chains (
    account       TEXT PRIMARY KEY NOT NULL REFERENCES accounts (name),
    access_token  TEXT NOT NULL,  -- sealed
    refresh_token TEXT NOT NULL,  -- sealed
    expires_at REAL NOT NULL, refresh_issued_at REAL NOT NULL, generation INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('ok', 'needs_reauth')),
    last_refresh_at REAL, last_error TEXT, last_error_at REAL,
    failures   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE refresh_journal (
    account TEXT PRIMARY KEY NOT NULL REFERENCES accounts (name),
    refresh_fingerprint TEXT NOT NULL, owner TEXT NOT NULL, started_at REAL NOT NULL
);
CREATE TABLE leases (name TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE keys (
    id      TEXT PRIMARY KEY NOT NULL,
    account TEXT NOT NULL REFERENCES accounts (name),
    label TEXT NOT NULL, digest TEXT NOT NULL, prefix TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL, revoked_at REAL, last_used_at REAL,
    allow TEXT NOT NULL DEFAULT '[]',  -- JSON list of allowed method patterns
    rate_per_min INTEGER
);
CREATE UNIQUE INDEX keys_digest ON keys (digest);
CREATE INDEX keys_account ON keys (account);
"""

_SCHEMA_ADMIN = """
CREATE TABLE admin_settings (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
CREATE TABLE admin_actions (
    at REAL NOT NULL, actor TEXT NOT NULL, source TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT, outcome TEXT NOT NULL
);
CREATE INDEX admin_actions_at ON admin_actions (at);
CREATE TABLE alerts (at REAL NOT NULL, account TEXT NOT NULL, event TEXT NOT NULL, error TEXT);
CREATE INDEX alerts_at ON alerts (at);
"""

#: The store's clock as Unix seconds: a journal's age is judged by one clock (PostgreSQL's
#: counterpart is the server's ``clock_timestamp()``).
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_STAMPED_JOURNAL = "ALTER TABLE refresh_journal ADD COLUMN stamped_at REAL;"

#: Applied in order, each in its own transaction. Append only; never edit a released step.
MIGRATIONS: list[Migration] = [
    (1, "initial schema", _SCHEMA_V1),
    (2, "audit of calls", sqlite_audit.SCHEMA),
    (3, "shared rate counters", sqlite_audit.RATE_SCHEMA),
    (
        4,
        "server secrets",
        "CREATE TABLE server_secrets "
        "(name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);  -- sealed",
    ),
    (5, "quota figures", sqlite_audit.QUOTA_SCHEMA),
    (6, "key rate windows", "ALTER TABLE keys ADD COLUMN rate_window REAL;"),
    (
        7,
        "action set maps",
        "CREATE TABLE action_sets (account TEXT NOT NULL, id INTEGER NOT NULL, "
        "steps TEXT NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (account, id));",
    ),
    (8, "admin page", _SCHEMA_ADMIN),
    (9, "audit records the DataService table", sqlite_audit.TABLE_NAME_SCHEMA),
    (10, "locks replace leases; shared rate windows", sqlite_audit.WINDOW_SCHEMA),
    (11, "journal stamped by the store's clock", _STAMPED_JOURNAL),
]


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (the write lock from the start) ... ``COMMIT``; rolled back on any
    error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


#: Cached per-call reads kept at most (random unknown key ids must not grow it for ever).
_READ_CACHE_SIZE = 4096
_SELECT_GENERATION = "SELECT generation FROM chains WHERE account = ?"
_SELECT_KEY_BY_ID = f"{SELECT_KEY} WHERE id = ?"
_SELECT_CHAIN = f"""
SELECT c.*, j.refresh_fingerprint AS j_fingerprint, j.owner AS j_owner,
       j.started_at AS j_started_at, {_NOW} - j.stamped_at AS j_age
FROM chains c LEFT JOIN refresh_journal j ON j.account = c.account
WHERE c.account = ?
"""


def _as_dict(r: sqlite3.Row) -> dict[str, Any]:
    return dict(zip(r.keys(), r, strict=True))


def _create_private(path: str) -> None:
    """Create the database file 0600 before SQLite sees it, so it is never world-readable."""
    with contextlib.suppress(FileExistsError):
        write_private(path, b"", exclusive=True)


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), rows by name, usable from
    the worker threads that flush the audit trail."""
    conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return conn


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL, retrying: the switch needs an exclusive lock and SQLite does not run the
    busy handler for it, so processes opening a fresh file together get "database is locked"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if mode.lower() != "wal":
        raise sqlite3.OperationalError(f"could not enable WAL (journal_mode={mode})")


def explain_error(exc: sqlite3.Error, path: str) -> str:
    """One line for a user: what went wrong with the database file and what to do about it."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc)
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return (
            f"the database {path} is read-only and this command writes to it: run it as a "
            "user who may write the file and its folder, or use a command that only reads"
        )
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in text:
        return (
            f"{path} is not a keyshim database or is damaged ({text}): check --db, or "
            "restore the file from a backup"
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return (
            f"the database {path} is locked by another process ({text}): try again in a "
            "moment, or stop the process that holds it"
        )
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return f"cannot open the database {path}: check that its folder exists and is writable"
    return f"database error on {path}: {text}"


log = logging.getLogger("shim.store")

#: A ``server_secrets`` row sealed under the current master key: its key id is the store's
#: current key, which a process must hold to seal anything (see ``put_tokens``).
KEY_CHECK = "master-key-check"
#: How long a process that meets a newer master key waits for the key file to hold it (a
#: rotation installs the file just after its transaction commits).
RELOAD_TRIES, RELOAD_PAUSE = 40, 0.05


class _FlockLock:
    """A held ``flock``; the open file descriptor is the lock (closing it releases it)."""

    def __init__(self, name: str, owner: str, fd: int) -> None:
        self.name = name
        self.owner = owner
        self._fd: int | None = fd

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


class SqliteStore:
    """The ``Store`` protocol on one SQLite file. Call :meth:`migrate` before first use.

    ``reload``: where a running process gets the master key again after ``shim
    rotate-master-key`` (the key file); without it, a rotation ends in ``MasterKeyChanged``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        box: SecretBox,
        *,
        timeout: float = 10.0,
        reload: Callable[[], SecretBox] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._box = box
        self._reload = reload
        self._stuck: str | None = None  # a newer key id ``reload`` could not provide
        self._lock = threading.RLock()
        _create_private(self.path)
        conn = _connect(self.path, timeout)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")
            _enable_wal(conn, timeout)
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        self._db = Database(conn, recursive_triggers=False, execute_plugins=False)
        self._timeout = timeout
        #: The per-call reads (a key by id, a chain's generation) have a connection and a lock
        #: of their own. The audit trail, rate counts and quota figures are written from a
        #: worker thread, each write ending in an fsync (synchronous=FULL); on the shared
        #: connection a call's key check waited behind that lock for the fsync. In WAL mode
        #: a reader never waits for a writer.
        self._hot: sqlite3.Connection | None = None
        self._hot_lock = threading.Lock()
        #: Those reads are remembered until the database changes: ``PRAGMA data_version`` on
        #: the hot connection moves whenever any other connection commits, our own main one
        #: included. One pragma instead of a query, a row mapping and a JSON decode per call;
        #: a revoked key is still refused on the next call.
        self._reads: dict[tuple[str, str], Any] = {}
        self._reads_version = -1
        #: Rate admissions have a connection and a lock of their own as well. Each one takes
        #: the write lock, and while another process holds it an admission waits up to the
        #: busy timeout (in a worker thread: ``shim.access.rate_enforcer``); on the per-call
        #: connection the key checks would queue behind it.
        self._rates: sqlite3.Connection | None = None
        self._rates_lock = threading.Lock()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._hot_lock:
            if self._hot is not None:
                self._hot.close()
                self._hot = None
        with self._rates_lock:
            if self._rates is not None:
                self._rates.close()
                self._rates = None

    # -- plumbing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction, holding the database write lock from the start."""
        with self._lock, _immediate(self._db.conn) as conn:
            yield conn

    def _cached(
        self,
        kind: str,
        name: str,
        sql: str,
        convert: Callable[[sqlite3.Row], Any],
        *,
        wait: bool = True,
    ) -> Any:
        """``convert`` of the first row ``sql`` finds for ``name`` (None if none), read on the
        hot connection and remembered until the database changes (see ``__init__``). Without
        ``wait``: ``UNREAD`` while another thread uses the hot connection."""
        if not self._hot_lock.acquire(blocking=wait):
            return UNREAD
        try:
            hot = self._hot_conn()
            version = hot.execute("PRAGMA data_version").fetchone()[0]
            if version != self._reads_version or len(self._reads) >= _READ_CACHE_SIZE:
                self._reads.clear()
                self._reads_version = version
            key = (kind, name)
            if key in self._reads:
                return self._reads[key]
            row = hot.execute(sql, (name,)).fetchone()
            value = self._reads[key] = None if row is None else convert(row)
            return value
        finally:
            self._hot_lock.release()

    def _hot_conn(self) -> sqlite3.Connection:
        """The per-call connection, opened on first use (call with ``_hot_lock`` held)."""
        if self._hot is None:
            self._hot = _connect(self.path, self._timeout)
        return self._hot

    @contextlib.contextmanager
    def _rate_write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the rates' connection (see ``__init__``), which does not
        fsync its commits: a rate count lost in a power cut is harmless, and so an admission
        never waits behind the audit trail's fsync for long."""
        with self._rates_lock:
            if self._rates is None:
                self._rates = _connect(self.path, self._timeout)
                self._rates.execute("PRAGMA synchronous = NORMAL")
            with _immediate(self._rates) as conn:
                yield conn

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _seal(self, value: str | None, context: str) -> str | None:
        return None if value is None else self._box.seal(value, context=context)

    def _open(self, value: str | None, context: str) -> str | None:
        if value is None:
            return None
        try:
            return self._box.open(value, context=context)
        except OtherKey as exc:
            if self._reload is None or exc.key_id != self._store_key_id():
                raise  # a wrong key (nothing to reload from), or a foreign value
            self._load_key(exc.key_id)  # rotated since this process loaded its key
            return self._box.open(value, context=context)

    def _store_key_id(self) -> str | None:
        """The key id of the store's current master key (None: not recorded yet)."""
        row = self._one("SELECT value FROM server_secrets WHERE name = ?", (KEY_CHECK,))
        return None if row is None else key_id_of(str(row[0]))

    def _load_key(self, key_id: str) -> None:
        """Take the master key ``key_id`` (the store's current one) from ``reload`` (the key
        file), or raise MasterKeyChanged: never go on sealing under a retired key."""
        with self._lock:
            tries = RELOAD_TRIES if self._reload is not None and key_id != self._stuck else 1
            for attempt in range(tries):
                if self._reload is not None:
                    with contextlib.suppress(Exception):  # e.g. mid-rotation: <key file>.new
                        box = self._reload()
                        if box.key_id == key_id:
                            log.warning("the master key was rotated: now using key %s", key_id)
                            self._box = box
                            return
                if attempt < tries - 1:
                    time.sleep(RELOAD_PAUSE)  # the rotation installs the key file next
            self._stuck = key_id  # later calls fail at once, until the key file has it
            raise MasterKeyChanged(
                f"keyshim's master key was rotated (to key {key_id}) but this process holds "
                f"key {self._box.key_id} and cannot load the new one: restart keyshim"
            )

    def _check_key(self, conn: sqlite3.Connection) -> str | None:
        """In a write transaction: the store's current key id if this process does not hold
        it (its writes must not be sealed under a retired key), else None."""
        row = conn.execute("SELECT value FROM server_secrets WHERE name = ?", (KEY_CHECK,))
        found = row.fetchone()
        if found is None:
            self._put_key_check(conn, self._box)
            return None
        current = key_id_of(str(found[0]))
        return None if current is None or current == self._box.key_id else current

    @staticmethod
    def _put_key_check(conn: sqlite3.Connection, box: SecretBox) -> None:
        sealed = box.seal(box.key_id, context=seal_context("secret", KEY_CHECK, "value"))
        conn.execute(
            "INSERT OR REPLACE INTO server_secrets (name, value) VALUES (?, ?)", (KEY_CHECK, sealed)
        )

    @staticmethod
    def _require_account(conn: sqlite3.Connection, name: str) -> None:
        if conn.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone() is None:
            raise KeyError(name)

    @staticmethod
    def _fence(conn: sqlite3.Connection, account: str, generation: int | None) -> None:
        """Refuse a chain write whose writer started from another generation."""
        if generation is None:
            return
        row = conn.execute("SELECT generation FROM chains WHERE account = ?", (account,)).fetchone()
        check_generation(account, None if row is None else int(row[0]), generation)

    # -- migrations -------------------------------------------------------------------------
    def schema_version(self) -> int:
        """Highest applied migration, 0 for a fresh file."""
        if self._one("SELECT 1 FROM sqlite_master WHERE name = 'migrations'") is None:
            return 0
        row = self._one("SELECT COALESCE(MAX(version), 0) FROM migrations")
        return int(row[0]) if row is not None else 0

    def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction.

        Safe when several processes start at once: the "already applied?" check runs inside
        the ``BEGIN IMMEDIATE`` transaction, so the second process sees the first one's row.
        Refuses a database written by a newer keyshim rather than guess at its schema.
        A current schema is only read, never written: commands that only read work on a
        read-only file.
        """
        if self.schema_version() >= MIGRATIONS[-1][0]:
            version = self._check_version()
            self._verify_key()
            return version
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
        for version, name, step in MIGRATIONS:
            with self._write() as conn:
                done = conn.execute("SELECT 1 FROM migrations WHERE version = ?", (version,))
                if done.fetchone() is not None:
                    continue
                if isinstance(step, str):
                    self._db.executescript(step)  # statement by statement, inside our BEGIN
                else:
                    step(self._db)
                conn.execute(
                    "INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
        version = self._check_version()
        self._verify_key()
        return version

    def _verify_key(self) -> None:
        """The master key's check value opens with this process's key (DecryptError if not):
        a wrong key is refused when the store opens, before any command writes anything.
        Right after a rotation the key file may lag the store by a moment: reloaded first.
        A database without a check value gets one, once a sealed value (if any) opened."""
        ctx = seal_context("secret", KEY_CHECK, "value")
        row = self._one("SELECT value FROM server_secrets WHERE name = ?", (KEY_CHECK,))
        try:
            if row is not None:
                self._open(str(row[0]), ctx)
                return
            self._open_one_sealed()
        except MasterKeyChanged:
            raise DecryptError("the master key's check value") from None
        # A read-only file is checked, not stamped.
        with contextlib.suppress(sqlite3.OperationalError), self._write() as conn:
            if self._check_key(conn) is not None:
                raise DecryptError("the master key's check value")

    def _open_one_sealed(self) -> None:
        """Open one sealed value of the database, if it has any (DecryptError if it fails)."""
        row = self._one("SELECT name, value FROM server_secrets LIMIT 1")
        if row is not None:
            self._open(str(row[1]), seal_context("secret", str(row[0]), "value"))
            return
        row = self._one("SELECT name FROM accounts ORDER BY name LIMIT 1")
        if row is not None:
            self.get_account(str(row[0]))

    def _check_version(self) -> int:
        current, known = self.schema_version(), MIGRATIONS[-1][0]
        if current > known:
            raise RuntimeError(
                f"database schema version {current} is newer than this keyshim knows "
                f"({known}); upgrade keyshim"
            )
        return current

    # -- accounts ---------------------------------------------------------------------------
    def _account(self, r: sqlite3.Row) -> Account:
        row = _as_dict(r)
        for col in ACCOUNT_SECRETS:
            row[col] = self._open(row[col], seal_context("account", row["name"], col))
        return Account(**row)

    def add_account(self, account: Account) -> None:
        row = {col: getattr(account, col) for col in ACCOUNT_COLUMNS}
        for col in ACCOUNT_SECRETS:
            row[col] = self._seal(row[col], seal_context("account", account.name, col))
        sql = f"INSERT INTO accounts VALUES ({', '.join(':' + c for c in ACCOUNT_COLUMNS)})"
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM accounts WHERE name = ?", (account.name,)).fetchone():
                raise StoreConflict(f"account {account.name!r} already exists")
            conn.execute(sql, row)

    def get_account(self, name: str) -> Account | None:
        with self._lock:  # read and open under one lock: rekey() may swap the box
            r = self._one(f"{SELECT_ACCOUNT} WHERE name = ?", (name,))
            return None if r is None else self._account(r)

    def list_accounts(self) -> list[Account]:
        with self._lock:
            return [self._account(r) for r in self._rows(f"{SELECT_ACCOUNT} ORDER BY name")]

    def update_account(self, name: str, **changes: object) -> Account:
        """Change plain fields (all are text); ValueError for name/created_at or unknown ones."""
        values: dict[str, object] = {"name": name}
        for col, value in check_account_changes(changes).items():
            sealed = col in ACCOUNT_SECRETS
            values[col] = self._seal(value, seal_context("account", name, col)) if sealed else value
        with self._write() as conn:
            self._require_account(conn, name)
            if changes:
                sets = ", ".join(f"{col} = :{col}" for col in changes)
                conn.execute(f"UPDATE accounts SET {sets} WHERE name = :name", values)
            row = conn.execute(f"{SELECT_ACCOUNT} WHERE name = ?", (name,)).fetchone()
            return self._account(row)

    def remove_account(self, name: str) -> int:
        with self._write() as conn:
            self._require_account(conn, name)
            for table in ("refresh_journal", "chains", "quota_figures"):
                conn.execute(f"DELETE FROM {table} WHERE account = ?", (name,))
            keys = conn.execute("DELETE FROM keys WHERE account = ?", (name,)).rowcount
            conn.execute("DELETE FROM accounts WHERE name = ?", (name,))
            return int(keys)

    # -- token chains -----------------------------------------------------------------------
    def _chain(self, r: sqlite3.Row) -> Chain:
        row = _as_dict(r)
        journal = [row.pop(k) for k in ("j_fingerprint", "j_owner", "j_started_at", "j_age")]
        for col in CHAIN_SECRETS:
            row[col] = self._open(row[col], seal_context("chain", row["account"], col))
        if journal[1] is not None:
            row["in_flight"] = RefreshJournal(row["account"], *journal)
        return Chain(**row)

    def get_chain(self, account: str) -> Chain | None:
        with self._lock:
            r = self._one(_SELECT_CHAIN, (account,))
            return None if r is None else self._chain(r)

    def chain_generation(self, account: str) -> int | None:
        generation: int | None = self._cached(
            "generation", account, _SELECT_GENERATION, lambda r: int(r[0])
        )
        return generation

    def peek_generation(self, account: str) -> int | Unread | None:
        generation: int | Unread | None = self._cached(
            "generation", account, _SELECT_GENERATION, lambda r: int(r[0]), wait=False
        )
        return generation

    def put_tokens(
        self, account: str, pair: TokenPair, now: float, *, generation: int | None = None
    ) -> Chain:
        """Upsert: the first pair for an account creates its chain at generation 1."""
        while True:
            stale = self._put_tokens(account, pair, now, generation)
            if isinstance(stale, Chain):
                return stale
            # Rotated since this process loaded its key: nothing was written; load the new
            # key (or fail: never seal under the retired one) and write again.
            self._load_key(stale)

    def _put_tokens(
        self, account: str, pair: TokenPair, now: float, generation: int | None
    ) -> Chain | str:
        """``put_tokens``, or the store's current key id when this process does not hold it."""
        params: dict[str, object] = {"account": account, "expires_at": pair.expires_at, "now": now}
        box = self._box
        for col in CHAIN_SECRETS:
            params[col] = box.seal(getattr(pair, col), context=seal_context("chain", account, col))
        with self._write() as conn:
            self._require_account(conn, account)
            current = self._check_key(conn) if box is self._box else self._box.key_id
            if current is not None:
                return current
            self._fence(conn, account, generation)
            conn.execute(
                """
                INSERT INTO chains (account, access_token, refresh_token, expires_at,
                    refresh_issued_at, generation, state, last_refresh_at, failures)
                VALUES (:account, :access_token, :refresh_token, :expires_at, :now, 1, 'ok',
                    :now, 0)
                ON CONFLICT (account) DO UPDATE SET
                    access_token = excluded.access_token, refresh_token = excluded.refresh_token,
                    expires_at = excluded.expires_at, refresh_issued_at = :now,
                    generation = chains.generation + 1, state = 'ok', last_refresh_at = :now,
                    last_error = NULL, last_error_at = NULL, failures = 0
                """,
                params,
            )
            conn.execute("DELETE FROM refresh_journal WHERE account = ?", (account,))
            return self._chain(conn.execute(_SELECT_CHAIN, (account,)).fetchone())

    def begin_refresh(self, journal: RefreshJournal, *, generation: int | None = None) -> None:
        """Replaces any older journal row: the caller holds the refresh lock, so an older row
        can only be a crashed refresh it has already recovered from."""
        with self._write() as conn:
            self._require_account(conn, journal.account)
            self._fence(conn, journal.account, generation)
            conn.execute(
                "INSERT OR REPLACE INTO refresh_journal "
                "(account, refresh_fingerprint, owner, started_at, stamped_at) "
                f"VALUES (?, ?, ?, ?, {_NOW})",
                (journal.account, journal.refresh_fingerprint, journal.owner, journal.started_at),
            )

    def end_refresh_failed(
        self, account: str, error: str, now: float, *, dead: bool, generation: int | None = None
    ) -> Chain:
        with self._write() as conn:
            self._fence(conn, account, generation)
            cur = conn.execute(
                "UPDATE chains SET failures = failures + 1, last_error = ?, last_error_at = ?, "
                "state = CASE WHEN ? THEN 'needs_reauth' ELSE state END WHERE account = ?",
                (error, now, dead, account),
            )
            if cur.rowcount != 1:
                raise KeyError(account)
            conn.execute("DELETE FROM refresh_journal WHERE account = ?", (account,))
            return self._chain(conn.execute(_SELECT_CHAIN, (account,)).fetchone())

    # -- locks ------------------------------------------------------------------------------
    def _lock_file(self, name: str) -> int:
        directory = f"{self.path}.locks"
        os.makedirs(directory, mode=0o700, exist_ok=True)
        file = os.path.join(directory, quote(name, safe="-_.") + ".lock")
        return os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def try_lock(self, name: str, owner: str, *, shared: bool = False) -> _FlockLock | None:
        fd = self._lock_file(name)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, owner.encode("utf-8"), 0)  # who holds it, for lock_holder
        return _FlockLock(name, owner, fd)

    def lock_holder(self, name: str) -> str | None:
        fd = self._lock_file(name)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.pread(fd, 4096, 0).decode("utf-8", "replace") or "?"
            return None  # free (the shared probe is dropped with the descriptor)
        finally:
            os.close(fd)

    def owner_alive(self, owner: str) -> bool:
        """A flock is never lost while its process lives, so whoever takes a lock knows the
        previous holder is gone: nothing to check."""
        return False

    # -- local keys -------------------------------------------------------------------------
    @staticmethod
    def _key(r: sqlite3.Row) -> KeyRecord:
        row = _as_dict(r)
        row["allow"] = tuple(json.loads(row["allow"]))
        return KeyRecord(**row)

    def add_key(self, key: KeyRecord) -> None:
        """Insert; KeyError for an unknown account, StoreConflict for a taken id or digest."""
        row = {col: getattr(key, col) for col in KEY_COLUMNS}
        row["allow"] = json.dumps(list(key.allow))
        sql = f"INSERT INTO keys VALUES ({', '.join(':' + c for c in KEY_COLUMNS)})"
        with self._write() as conn:
            self._require_account(conn, key.account)
            taken = "SELECT 1 FROM keys WHERE id = ? OR digest = ?"
            if conn.execute(taken, (key.id, key.digest)).fetchone():
                raise StoreConflict(f"key {key.id!r} (or its digest) already exists")
            conn.execute(sql, row)

    def get_key(self, key_id: str) -> KeyRecord | None:
        key: KeyRecord | None = self._cached("key", key_id, _SELECT_KEY_BY_ID, self._key)
        return key

    def peek_key(self, key_id: str) -> KeyRecord | Unread | None:
        key: KeyRecord | Unread | None = self._cached(
            "key", key_id, _SELECT_KEY_BY_ID, self._key, wait=False
        )
        return key

    def list_keys(self, account: str | None = None) -> list[KeyRecord]:
        order = "ORDER BY created_at, id"
        if account is None:
            return [self._key(r) for r in self._rows(f"{SELECT_KEY} {order}")]
        rows = self._rows(f"{SELECT_KEY} WHERE account = ? {order}", (account,))
        return [self._key(r) for r in rows]

    def revoke_key(self, key_id: str, at: float) -> bool:
        with self._write() as conn:
            cur = conn.execute("UPDATE keys SET revoked_at = ? WHERE id = ?", (at, key_id))
            return cur.rowcount == 1

    def touch_keys(self, last_used: Mapping[str, float]) -> None:
        """Never moves a time backwards, so batches flushed out of order are harmless."""
        if not last_used:
            return
        with self._write() as conn:
            conn.executemany(
                "UPDATE keys SET last_used_at = MAX(COALESCE(last_used_at, ?1), ?1) WHERE id = ?2",
                [(at, key_id) for key_id, at in last_used.items()],
            )

    # -- master-key rotation ----------------------------------------------------------------
    def rekey(self, new_box: SecretBox) -> int:
        """Re-encrypt every sealed column under ``new_box`` in one transaction; return how
        many values were rewrapped.

        All or nothing: a value that does not open under the current key aborts the whole
        rotation. Other processes still holding the old key must be restarted afterwards.
        """
        targets = [("accounts", "name", "account", c) for c in ACCOUNT_SECRETS]
        targets += [("chains", "account", "chain", c) for c in CHAIN_SECRETS]
        targets += [("server_secrets", "name", "secret", "value")]
        count = 0
        with self._lock:
            with self._write() as conn:
                for table, pk, prefix, col in targets:
                    rows = conn.execute(f"SELECT {pk}, {col} FROM {table} WHERE {col} NOT NULL")
                    for row_id, sealed in rows.fetchall():
                        if table == "server_secrets" and row_id == KEY_CHECK:
                            continue  # written anew below
                        ctx = seal_context(prefix, row_id, col)
                        new = rewrap(sealed, context=ctx, old=self._box, new=new_box)
                        conn.execute(f"UPDATE {table} SET {col} = ? WHERE {pk} = ?", (new, row_id))
                        count += 1
                self._put_key_check(conn, new_box)  # from now on, only new_box may seal
            self._box = new_box
            # Best effort: copy the new pages into the main file and empty the WAL, so it stops
            # holding ciphertext under the retired key.
            self._db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return count

    def server_secret(self, name: str) -> bytes:
        """A random 32-byte server secret (e.g. the HMAC key of local keys), made on first use.

        Kept sealed in the database rather than derived from the master key, so that rotating
        the master key re-encrypts it instead of invalidating every local key.
        """
        ctx = seal_context("secret", name, "value")
        with self._lock:
            r = self._one("SELECT value FROM server_secrets WHERE name = ?", (name,))
            if r is None:
                with self._write() as conn:
                    r = conn.execute(
                        "SELECT value FROM server_secrets WHERE name = ?", (name,)
                    ).fetchone()
                    if r is None:
                        fresh = base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
                        conn.execute(
                            "INSERT INTO server_secrets (name, value) VALUES (?, ?)",
                            (name, self._box.seal(fresh, context=ctx)),
                        )
                        return base64.urlsafe_b64decode(fresh)
            return base64.urlsafe_b64decode(self._open(str(r[0]), ctx) or "")

    def add_audit_dropped(self, count: int) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO admin_settings (name, value) VALUES ('audit_dropped', ?) "
                "ON CONFLICT (name) DO UPDATE SET "
                "value = CAST(CAST(admin_settings.value AS INTEGER) + ? AS TEXT)",
                (str(count), count),
            )

    def audit_dropped(self) -> int:
        with self._lock:
            r = self._one("SELECT value FROM admin_settings WHERE name = 'audit_dropped'")
        return 0 if r is None else int(r[0])

    # -- admin page ---------------------------------------------------------------------------
    def admin_password(self) -> str | None:
        with self._lock:
            r = self._one("SELECT value FROM admin_settings WHERE name = 'password'")
        return None if r is None else str(r[0])

    def set_admin_password(self, hashed: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO admin_settings (name, value) VALUES ('password', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (hashed,),
            )

    def record_admin_action(
        self, at: float, actor: str, source: str, action: str, target: str | None, outcome: str
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO admin_actions (at, actor, source, action, target, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (at, actor, source, action, target, outcome),
            )

    def admin_actions(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._rows(
                "SELECT at, actor, source, action, target, outcome FROM admin_actions "
                "ORDER BY at DESC, rowid DESC LIMIT ?",
                (limit,),
            )
        return [_as_dict(r) for r in rows]

    def record_alert(self, at: float, account: str, event: str, error: str | None) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO alerts (at, account, event, error) VALUES (?, ?, ?, ?)",
                (at, account, event, error),
            )
            # A short history is all the admin page shows; the log and the webhook keep the rest.
            conn.execute(
                "DELETE FROM alerts WHERE rowid NOT IN "
                "(SELECT rowid FROM alerts ORDER BY at DESC, rowid DESC LIMIT 500)"
            )

    def recent_alerts(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._rows(
                "SELECT at, account, event, error FROM alerts ORDER BY at DESC, rowid DESC LIMIT ?",
                (limit,),
            )
        return [_as_dict(r) for r in rows]

    # -- audit --------------------------------------------------------------------------------
    def record_calls(self, records: Sequence[CallRecord]) -> None:
        if not records:
            return
        with self._write() as conn:
            sqlite_audit.insert(conn, records)

    def prune_calls(self, before: float) -> int:
        with self._write() as conn:
            return sqlite_audit.prune(conn, before)

    def admit_call(
        self, key_id: str, slot: int, window: int, limit: int, prev_weight: float
    ) -> tuple[int, int] | None:
        with self._rate_write() as conn:
            return sqlite_audit.admit_call(conn, key_id, slot, window, limit, prev_weight)

    def add_calls(self, key_id: str, slot: int, window: int, count: int) -> None:
        with self._rate_write() as conn:
            sqlite_audit.add_calls(conn, key_id, slot, window, count)

    def publish_rates(self, owner: str, counts: dict[tuple[str, int], int], oldest: int) -> None:
        with self._write() as conn:
            sqlite_audit.publish_rates(conn, owner, counts, oldest)

    def others_rates(
        self, subjects: Sequence[str], slot: int, owner: str
    ) -> dict[str, tuple[int, int]]:
        with self._lock:
            return sqlite_audit.others_rates(self._db.conn, subjects, slot, owner)

    def put_quota(self, figures: dict[str, tuple[dict[str, str], float]]) -> None:
        with self._write() as conn:
            sqlite_audit.put_quota(conn, figures)

    def get_quota(self) -> dict[str, tuple[dict[str, str], float]]:
        with self._lock:
            return sqlite_audit.get_quota(self._db.conn)

    # -- action sets (runActionSequence over REST v2) ---------------------------------------
    def put_action_set(self, account: str, set_id: int, steps: list[dict[str, Any]]) -> None:
        row = (account, set_id, json.dumps(steps), time.time())
        with self._write() as conn:
            conn.execute(
                "INSERT INTO action_sets (account, id, steps, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (account, id) DO UPDATE SET steps = excluded.steps, "
                "updated_at = excluded.updated_at",
                row,
            )

    def get_action_set(self, account: str, set_id: int) -> list[dict[str, Any]] | None:
        with self._lock:
            r = self._one(
                "SELECT steps FROM action_sets WHERE account = ? AND id = ?", (account, set_id)
            )
        return None if r is None else list(json.loads(r["steps"]))

    def list_action_sets(self, account: str) -> dict[int, list[dict[str, Any]]]:
        with self._lock:
            rows = self._rows(
                "SELECT id, steps FROM action_sets WHERE account = ? ORDER BY id", (account,)
            )
        return {int(r["id"]): list(json.loads(r["steps"])) for r in rows}

    def delete_action_set(self, account: str, set_id: int) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM action_sets WHERE account = ? AND id = ?", (account, set_id)
            )
        return cur.rowcount > 0

    def usage(self, since: float) -> list[dict[str, Any]]:
        with self._lock:
            rows = sqlite_audit.usage(self._db.conn, since)
            tags = sqlite_audit.fault_tags(self._db.conn, since)
        for row in rows:
            row["fault_tags"] = tags.get((row["key_id"], row["method"], row["table_name"]), {})
        return rows

    # -- moving an installation (shim store copy) ----------------------------------------------
    def _columns(self, table: str) -> list[str]:
        if table not in COPY_TABLES:
            raise ValueError(f"not a table keyshim copies: {table}")
        cols = [r[1] for r in self._rows(f"PRAGMA table_info({table})")]
        return [c for c in cols if not (table == "calls" and c == "id")]

    def export_rows(self, table: str) -> Iterator[dict[str, Any]]:
        """Rows as stored (secrets sealed), read in pages so a large audit trail streams."""
        columns = self._columns(table)
        last = 0
        while True:
            with self._lock:
                rows = self._db.conn.execute(
                    f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ? "
                    "ORDER BY rowid LIMIT 2000",
                    (last,),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield dict(zip(columns, tuple(r)[1:], strict=True))
            last = int(rows[-1][0])

    def import_rows(self, table: str, rows: Iterable[dict[str, Any]]) -> int:
        columns = self._columns(table)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        count = 0
        with self._write() as conn:
            if table == "server_secrets":  # the source's secrets win (a fresh init made some)
                conn.execute("DELETE FROM server_secrets")
            for row in rows:
                conn.execute(sql, tuple(row[c] for c in columns))
                count += 1
        return count

    def is_empty(self) -> bool:
        row = self._one(
            "SELECT (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM keys) "
            "+ (SELECT COUNT(*) FROM calls)"
        )
        return row is not None and int(row[0]) == 0


if TYPE_CHECKING:

    def _conforms(store: SqliteStore) -> Store:
        return store
