"""The Store interface: everything keyshim keeps, behind one small protocol.

SQLite (``shim.store.sqlite``) is the embedded default. The interface is deliberately narrow
and transactional per method, so a shared PostgreSQL store can serve several hosts later:
nothing above this module writes SQL, holds a transaction, or assumes a single process.

Rules every implementation keeps:
- Secrets (client secrets, tokens, service keys) are encrypted at rest; callers see plaintext.
- ``put_tokens`` and ``begin_refresh`` are durable before they return (SQLite: synchronous=FULL):
  a rotated refresh token that is not on disk is lost for good.
- No method holds a write transaction across anything but its own few statements; in
  particular, never across a network call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from shim.models import Account, CallRecord, Chain, KeyRecord, RefreshJournal, TokenPair


class StoreConflict(Exception):
    """An insert collided with an existing row (duplicate account name or key id)."""


class Store(Protocol):
    def migrate(self) -> int:
        """Apply pending numbered migrations; return the schema version now in force."""
        ...

    def close(self) -> None: ...

    # -- accounts -------------------------------------------------------------------------
    def add_account(self, account: Account) -> None:
        """Insert; raise StoreConflict if the name exists."""
        ...

    def get_account(self, name: str) -> Account | None: ...

    def list_accounts(self) -> list[Account]: ...

    def update_account(self, name: str, **changes: object) -> Account:
        """Change plain fields (route, urls, app_name, secrets); KeyError if unknown."""
        ...

    # -- token chains ---------------------------------------------------------------------
    def get_chain(self, account: str) -> Chain | None:
        """The chain with its in-flight journal row, if any."""
        ...

    def chain_generation(self, account: str) -> int | None:
        """Cheap read of the chain's generation (bumped by every put_tokens), for caches."""
        ...

    def put_tokens(self, account: str, pair: TokenPair, now: float) -> Chain:
        """Durably store a new pair in one transaction.

        Bumps the generation, sets state ok, clears failures, the last error and the journal,
        and sets ``refresh_issued_at`` and ``last_refresh_at`` to ``now``.
        """
        ...

    def begin_refresh(self, journal: RefreshJournal) -> None:
        """Durably record a refresh in flight (before the token endpoint is called)."""
        ...

    def end_refresh_failed(self, account: str, error: str, now: float, *, dead: bool) -> Chain:
        """Record a failed refresh: clear the journal, count the failure, keep the error.

        ``dead=True`` marks the chain ``needs_reauth``. A chain is never deleted.
        """
        ...

    # -- leases ---------------------------------------------------------------------------
    def acquire_lease(self, name: str, owner: str, ttl: float, now: float) -> bool:
        """Take the named lease if free, expired, or already held by ``owner`` (renewal)."""
        ...

    def release_lease(self, name: str, owner: str) -> bool:
        """Release only if ``owner`` still holds it; False means someone else took it."""
        ...

    def lease_holder(self, name: str, now: float) -> str | None: ...

    # -- local keys -----------------------------------------------------------------------
    def add_key(self, key: KeyRecord) -> None: ...

    def get_key(self, key_id: str) -> KeyRecord | None: ...

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

    # -- audit ----------------------------------------------------------------------------
    def record_calls(self, records: Sequence[CallRecord]) -> None:
        """Append a batch of call records in one transaction."""
        ...

    def prune_calls(self, before: float) -> int:
        """Delete records older than ``before`` (retention); return how many."""
        ...

    def publish_rates(self, owner: str, counts: dict[tuple[str, int], int], oldest: int) -> None:
        """Replace ``owner``'s per-(key, minute) call counts; drop minutes before ``oldest``."""
        ...

    def others_rates(self, key_id: str, minutes: tuple[int, int], owner: str) -> dict[int, int]:
        """Summed counts of every other owner for ``key_id`` in the given minutes."""
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
