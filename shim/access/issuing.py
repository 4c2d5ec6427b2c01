"""Issuing and rotating local keys: the store edge of :mod:`shim.access.keys`.

``keys`` makes and checks key text without I/O; this module takes the HMAC key from the store,
checks what an issue or a rotation needs (the account exists, the old key is still active) and
stores the record. The key text is returned once and never stored.
"""

from __future__ import annotations

from dataclasses import replace

from shim.access import keys
from shim.access.rate_policy import parse_rate
from shim.errors import CliError
from shim.models import KeyRecord
from shim.store.protocol import Store

#: The store's name for the server secret that keys are HMAC'd under.
HMAC_SECRET = "key-hmac"


def store_new(store: Store, template: KeyRecord) -> tuple[keys.IssuedKey, KeyRecord]:
    """Make a key and store the record built from ``template`` (id, digest and prefix set)."""
    issued = keys.make_key(store.server_secret(HMAC_SECRET))
    record = replace(template, id=issued.id, digest=issued.digest, prefix=issued.prefix)
    store.add_key(record)
    return issued, record


def issue(
    store: Store,
    account: str,
    *,
    label: str,
    now: float,
    expires_in: float | None = None,
    allow: tuple[str, ...] = (),
    rate: str | None = None,
) -> tuple[keys.IssuedKey, KeyRecord]:
    """A new key for ``account``: no expiry unless ``expires_in``, any method unless ``allow``."""
    if expires_in is not None and expires_in <= 0:
        raise CliError("--expires-in must be positive")
    if store.get_account(account) is None:
        raise CliError(f"no account named {account!r} (see: shim account list)")
    parsed = parse_rate(rate) if rate is not None else None
    return store_new(
        store,
        KeyRecord(
            id="", account=account, label=label, digest="", prefix="", created_at=now,
            expires_at=now + expires_in if expires_in else None,
            allow=keys.validate_allow(allow),
            rate_per_min=parsed.count if parsed else None,
            rate_window=parsed.window if parsed else None,
        ),
    )  # fmt: skip


def rotate(
    store: Store, key_id: str, *, now: float, overlap: float = 0.0
) -> tuple[keys.IssuedKey, KeyRecord]:
    """A successor to an active key (same account, label, allowlist and rate); the old key is
    revoked as of ``now + overlap``, so scripts can switch over while both work."""
    if overlap < 0:
        raise CliError("--overlap cannot be negative")
    old = store.get_key(key_id)
    if old is None:
        raise CliError(f"no key with id {key_id!r} (see: shim key list)")
    if old.state(now) != "active":
        raise CliError(f"key {key_id} is {old.state(now)}; issue a new one instead")
    issued, record = store_new(
        store, replace(old, created_at=now, last_used_at=None, revoked_at=None)
    )
    store.revoke_key(key_id, now + overlap)
    return issued, record
