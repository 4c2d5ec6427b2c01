"""What both stores agree on, row for row: column names, which columns are sealed, the seal
context, and the checks an account change and a chain write must pass.

``shim store copy`` moves sealed text between SQLite and PostgreSQL without opening it, so the
seal context and the column lists must be one definition, not two copies that happen to agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

from shim.errors import StaleTokenWrite
from shim.models import AccountKind, Route

ACCOUNT_COLUMNS = (
    "name", "kind", "client_id", "client_secret", "service_key", "xmlrpc_url", "token_url",
    "authorize_url", "rest_url", "route", "app_name", "created_at",
)  # fmt: skip
KEY_COLUMNS = (
    "id", "account", "label", "digest", "prefix", "created_at", "expires_at", "revoked_at",
    "last_used_at", "allow", "rate_per_min", "rate_window",
)  # fmt: skip
ACCOUNT_SECRETS = ("client_secret", "service_key")
CHAIN_SECRETS = ("access_token", "refresh_token")
SELECT_ACCOUNT = f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM accounts"
SELECT_KEY = f"SELECT {', '.join(KEY_COLUMNS)} FROM keys"

_ACCOUNT_UPDATABLE = frozenset(ACCOUNT_COLUMNS) - {"name", "created_at"}
_CHOICES: dict[str, tuple[str, ...]] = {"kind": get_args(AccountKind), "route": get_args(Route)}


def seal_context(table: str, row: str, column: str) -> str:
    """Seal context binding a value to its row and column (column last, so it is unambiguous
    even if the row name contains a colon)."""
    return f"{table}:{row}:{column}"


def check_account_changes(changes: Mapping[str, object]) -> dict[str, str | None]:
    """``update_account``'s rules: only plain text fields other than name and created_at, and
    kind/route from their fixed choices (ValueError or TypeError otherwise). Returns the
    changes, typed as the text they were checked to be."""
    unknown = sorted(set(changes) - _ACCOUNT_UPDATABLE)
    if unknown:
        raise ValueError(f"account fields that cannot be changed: {', '.join(unknown)}")
    checked: dict[str, str | None] = {}
    for col, value in changes.items():
        if value is not None and not isinstance(value, str):
            raise TypeError(f"account field {col} must be a string or None")
        if col in _CHOICES and value not in _CHOICES[col]:
            raise ValueError(f"account {col} must be one of {', '.join(_CHOICES[col])}")
        checked[col] = value
    return checked


def check_generation(account: str, current: int | None, expected: int) -> None:
    """Fencing: a chain write whose writer started from another generation is refused."""
    if current != expected:
        raise StaleTokenWrite(
            f"refused a token write for account {account!r}: the chain is at generation "
            f"{current}, not {expected} where this refresh started"
        )
