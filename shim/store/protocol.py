"""The Store interface: everything keyshim keeps, behind one small protocol.

SQLite (``shim.store.sqlite``) is the embedded default; PostgreSQL (``shim.store.postgres``) is
the shared store of several hosts. The interface is not small (accounts, token chains, locks,
keys, server secrets, the admin page's password, actions and alerts, the audit trail, shared
rate counts, Keap quota figures, usage reports, action sets and moving an installation), but
every method is one transaction of its own: nothing above this module writes SQL, holds a
transaction, knows which backend it talks to, or assumes a single process or host.

Rules every implementation keeps:
- Secrets (client secrets, tokens, service keys) are encrypted at rest; callers see plaintext.
- ``put_tokens`` and ``begin_refresh`` are durable before they return (SQLite: synchronous=FULL):
  a rotated refresh token that is not on disk is lost for good.
- No method holds a write transaction across anything but its own few statements; in
  particular, never across a network call.
- Chain writes are fenced: ``put_tokens``, ``begin_refresh`` and ``end_refresh_failed`` take the
  generation the writer started from and refuse (``StaleTokenWrite``) when the chain has moved
  on, so a writer that lost its lock can never overwrite a newer pair or kill a live chain.
- Locks (``try_lock``) are freed by the holder's death at once (SQLite: ``flock`` on a file
  beside the database; PostgreSQL: a session advisory lock on the lock's own connection). They
  have no TTL: nothing waits out a dead holder.
- An unreachable database surfaces as ``StoreUnavailable`` (a clear fault), never a hang.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from shim.models import Account, CallRecord, Chain, KeyRecord, RefreshJournal, TokenPair
from shim.store.secrets import SecretBox

#: What ``shim store copy`` moves, in foreign-key order. Rate counters are left behind: they
#: describe the last minute of the old installation's traffic.
COPY_TABLES = (
    "accounts", "chains", "refresh_journal", "keys", "server_secrets", "quota_figures", "calls",
)  # fmt: skip


class Unread(enum.Enum):
    """What ``peek_key`` and ``peek_generation`` answer when only a wait could tell."""

    UNREAD = "unread"


#: The caller reads it off the event loop instead (``shim.store.offloop.peek_or_read``).
UNREAD = Unread.UNREAD


class StoreConflict(Exception):
    """An insert collided with an existing row (duplicate account name or key id)."""


class HeldLock(Protocol):
    """A named lock this process holds until :meth:`release` (or until it dies)."""

    name: str
    owner: str

    def held(self) -> bool:
        """False once the lock is known to be lost (PostgreSQL: its connection died)."""
        ...

    def release(self) -> None:
        """Give the lock up; harmless when it is already lost."""
        ...


class Store(Protocol):
    def migrate(self) -> int:
        """Apply pending numbered migrations; return the schema version now in force."""
        ...

    def close(self) -> None: ...

    def rekey(self, new_box: SecretBox) -> int:
        """Re-encrypt every sealed value under ``new_box`` in one transaction; return how many."""
        ...

    # -- accounts -------------------------------------------------------------------------
    def add_account(self, account: Account) -> None:
        """Insert; raise StoreConflict if the name exists."""
        ...

    def get_account(self, name: str) -> Account | None: ...

    def list_accounts(self) -> list[Account]: ...

    def update_account(self, name: str, **changes: object) -> Account:
        """Change plain fields (route, urls, app_name, secrets); KeyError if unknown."""
        ...

    def remove_account(self, name: str) -> int:
        """Delete an account with its token chain and keys; return how many keys went with
        it (the audit trail stays). KeyError if unknown."""
        ...

    # -- token chains ---------------------------------------------------------------------
    def get_chain(self, account: str) -> Chain | None:
        """The chain with its in-flight journal row, if any."""
        ...

    def chain_generation(self, account: str) -> int | None:
        """Cheap read of the chain's generation (bumped by every put_tokens), for caches."""
        ...

    def peek_generation(self, account: str) -> int | Unread | None:
        """``chain_generation``'s answer if it can be had without waiting on the database (see
        ``peek_key``), else ``UNREAD``."""
        ...

    def put_tokens(
        self, account: str, pair: TokenPair, now: float, *, generation: int | None = None
    ) -> Chain:
        """Durably store a new pair in one transaction.

        Bumps the generation, sets state ok, clears failures, the last error and the journal,
        and sets ``refresh_issued_at`` and ``last_refresh_at`` to ``now``. With ``generation``
        (every refresh passes the one it started from) it is a compare-and-swap: a chain that
        is no longer at that generation raises ``StaleTokenWrite`` and nothing is written.
        ``None`` (a human's import or authorization) writes unconditionally.
        """
        ...

    def begin_refresh(self, journal: RefreshJournal, *, generation: int | None = None) -> None:
        """Durably record a refresh in flight (before the token endpoint is called); fenced
        on ``generation`` like ``put_tokens``."""
        ...

    def end_refresh_failed(
        self, account: str, error: str, now: float, *, dead: bool, generation: int | None = None
    ) -> Chain:
        """Record a failed refresh: clear the journal, count the failure, keep the error.

        ``dead=True`` marks the chain ``needs_reauth``. A chain is never deleted. Fenced on
        ``generation``: a failure of a refresh someone else has since overtaken is refused.
        """
        ...

    # -- locks ----------------------------------------------------------------------------
    def try_lock(self, name: str, owner: str, *, shared: bool = False) -> HeldLock | None:
        """Take the named lock without waiting; None when another holder has it.

        Exclusive between processes, hosts, and two calls in one process alike; ``shared``
        holders only exclude an exclusive one (every server holds ``serving`` shared, so
        ``shim store copy`` can tell a server is running). Freed at once when the holder
        releases it or dies; never by a timer.
        """
        ...

    def lock_holder(self, name: str) -> str | None:
        """The owner holding ``name`` right now, or None (for health and recovery)."""
        ...

    def owner_alive(self, owner: str) -> bool:
        """Whether the process ``owner`` names is still connected to the store.

        Lets recovery tell a dead process's unfinished refresh from a live one that only lost
        its lock (PostgreSQL restarted under it). False when the backend cannot tell.
        """
        ...

    # -- local keys -----------------------------------------------------------------------
    def add_key(self, key: KeyRecord) -> None: ...

    def get_key(self, key_id: str) -> KeyRecord | None: ...

    def peek_key(self, key_id: str) -> KeyRecord | Unread | None:
        """``get_key``'s answer if it can be had without waiting on the database, else
        ``UNREAD``. Every call asks, on the event loop, so this never waits: PostgreSQL
        answers from memory only; SQLite also reads on its per-call connection, which in WAL
        mode never waits for a writer (but not while another thread is using it)."""
        ...

    def list_keys(self, account: str | None = None) -> list[KeyRecord]: ...

    def revoke_key(self, key_id: str, at: float) -> bool:
        """Set revoked_at (may lie in the future, for rotation overlap); False if unknown."""
        ...

    def touch_keys(self, last_used: Mapping[str, float]) -> None:
        """Batch update of last-used times (written off the hot path)."""
        ...

    def server_secret(self, name: str) -> bytes:
        """A random server secret made on first use and kept sealed (local-key HMAC key)."""
        ...

    def add_audit_dropped(self, count: int) -> None:
        """Add ``count`` audit records dropped from a full buffer to the persisted total (a
        row of ``admin_settings``), so that ``shim status`` can tell after a restart."""
        ...

    def audit_dropped(self) -> int:
        """Audit records ever dropped from a full buffer, by every process (0 if none)."""
        ...

    # -- admin page -----------------------------------------------------------------------
    def admin_password(self) -> str | None:
        """The admin page's password hash (``shim admin set-password``), or None if unset."""
        ...

    def set_admin_password(self, hashed: str) -> None:
        """Store (replace) the admin page's password hash; never the password itself."""
        ...

    def record_admin_action(
        self, at: float, actor: str, source: str, action: str, target: str | None, outcome: str
    ) -> None:
        """Append one admin-page action: who, from where, what, on what, and how it ended."""
        ...

    def admin_actions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest admin-page actions, newest first (keys as record_admin_action's)."""
        ...

    def record_alert(self, at: float, account: str, event: str, error: str | None) -> None:
        """Keep a chain alert (degraded, dead, recovered) for the admin page; the latest 500."""
        ...

    def recent_alerts(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest chain alerts, newest first: at, account, event, error."""
        ...

    # -- audit ----------------------------------------------------------------------------
    def record_calls(self, records: Sequence[CallRecord]) -> None:
        """Append a batch of call records in one transaction."""
        ...

    def prune_calls(self, before: float) -> int:
        """Delete records older than ``before`` (retention); return how many."""
        ...

    def admit_call(
        self, key_id: str, slot: int, window: int, limit: int, prev_weight: float
    ) -> tuple[int, int] | None:
        """Count one call of ``key_id`` in the window starting at ``slot`` (epoch seconds,
        ``window`` long) if the combined estimate stays within ``limit``
        (``prev * prev_weight + cur + 1 <= limit``, where prev is the window before, counts of
        every process and host); atomic, one round trip. None when admitted, else the combined
        (prev, cur)."""
        ...

    def add_calls(self, key_id: str, slot: int, window: int, count: int) -> None:
        """Add ``count`` calls of ``key_id`` to the window starting at ``slot`` without a
        check: the calls a process admitted on its own while the store did not answer
        (``shim.access.rate_enforcer``), so the shared window learns of them afterwards."""
        ...

    def publish_rates(self, owner: str, counts: dict[tuple[str, int], int], oldest: int) -> None:
        """Replace ``owner``'s per-(subject, minute) counts; drop minutes before ``oldest``.

        The upstream budget publishes its calls per Keap credential here (off the hot path).
        """
        ...

    def others_rates(
        self, subjects: Sequence[str], slot: int, owner: str
    ) -> dict[str, tuple[int, int]]:
        """Per subject: (summed count in the minute starting at ``slot`` of every other owner,
        how many other owners published for it in that minute or the one before)."""
        ...

    def put_quota(self, figures: dict[str, tuple[dict[str, str], float]]) -> None:
        """Remember Keap's latest quota/throttle figures per account (newer ones win)."""
        ...

    def get_quota(self) -> dict[str, tuple[dict[str, str], float]]: ...

    def usage(self, since: float) -> list[dict[str, Any]]:
        """Per key and method since ``since``: calls, faults, errors, first/last seen."""
        ...

    # -- action sets: an account's legacy action-set id -> REST steps (migration 6) --------
    def put_action_set(self, account: str, set_id: int, steps: list[dict[str, Any]]) -> None:
        """Map (or re-map) an action set; ``steps`` is a JSON-able list of step objects."""
        ...

    def get_action_set(self, account: str, set_id: int) -> list[dict[str, Any]] | None: ...

    def list_action_sets(self, account: str) -> dict[int, list[dict[str, Any]]]: ...

    def delete_action_set(self, account: str, set_id: int) -> bool: ...

    # -- moving an installation -----------------------------------------------------------
    def export_rows(self, table: str) -> Iterator[dict[str, Any]]:
        """Every row of ``table`` (one of COPY_TABLES) as stored: secrets stay sealed."""
        ...

    def import_rows(self, table: str, rows: Iterable[dict[str, Any]]) -> int:
        """Append exported rows unchanged, in one transaction; return how many."""
        ...

    def is_empty(self) -> bool:
        """No accounts, keys or calls yet (a safe target for a copy)."""
        ...
