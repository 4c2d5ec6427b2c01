"""Store records the store tests write: an account, a token pair, a key, with secrets that are
easy to find in a raw database file (to prove they are sealed there)."""

from __future__ import annotations

from typing import Any

from shim.models import Account, KeyRecord, TokenPair

SECRETS = {
    "client_secret": "CLIENT-SECRET-q8Zr1",
    "service_key": "SERVICE-KEY-p4Lw9",
    "access_token": "ACCESS-TOKEN-x7Vb2",
    "refresh_token": "REFRESH-TOKEN-k3Nm5",
}


def account(name: str = "prod", **kw: Any) -> Account:
    fields: dict[str, Any] = {"kind": "oauth", "created_at": 1000.0, "client_id": "cid"}
    fields["client_secret"] = SECRETS["client_secret"]
    return Account(name=name, **{**fields, **kw})


def pair(n: int = 0) -> TokenPair:
    return TokenPair(
        access_token=f"{SECRETS['access_token']}-{n}",
        refresh_token=f"{SECRETS['refresh_token']}-{n}",
        expires_at=5000.0 + n,
    )


def key(key_id: str = "k1", account: str = "prod", **kw: Any) -> KeyRecord:
    fields: dict[str, Any] = {"label": "script", "digest": f"d-{key_id}", "prefix": "shk_k1"}
    return KeyRecord(id=key_id, account=account, **{"created_at": 100.0, **fields, **kw})
