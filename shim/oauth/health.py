"""Chain health, as one pure judgement shared by ``shim status`` and ``GET /healthz``.

States, worst last: ``ok``; ``refreshing`` (a refresh is in flight right now); ``degraded``
(the last refresh failed, or the access token has expired, but the chain can still recover
on its own); ``needs_reauth`` (the refresh token is spent: a human must run
``shim account authorize``). No secret ever appears in these facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shim.models import Account, Chain
from shim.oauth.token_policy import refresh_lock
from shim.store.protocol import Store

SEVERITY = {"ok": 0, "refreshing": 0, "degraded": 1, "needs_reauth": 2}


@dataclass(frozen=True)
class Health:
    account: str
    kind: str
    state: str
    facts: dict[str, Any]

    @property
    def usable(self) -> bool:
        return self.state in ("ok", "refreshing")


def judge(account: Account, chain: Chain | None, refreshing: bool, now: float) -> Health:
    """The health of one account from its stored facts."""
    facts: dict[str, Any] = {"app_name": account.app_name, "route": account.route}
    if account.kind == "service_key":
        return Health(account.name, account.kind, "ok", facts)
    if chain is None:
        facts["last_error"] = "no tokens yet (shim account authorize / import-tokens)"
        return Health(account.name, account.kind, "needs_reauth", facts)
    facts.update(
        access_token_expires_at=chain.expires_at,
        access_token_expires_in=round(chain.expires_at - now, 1),
        refresh_token_age=round(now - chain.refresh_issued_at, 1),
        last_refresh_at=chain.last_refresh_at,
        last_error=chain.last_error,
        last_error_at=chain.last_error_at,
        failures=chain.failures,
        generation=chain.generation,
    )
    if chain.state == "needs_reauth":
        state = "needs_reauth"
    elif refreshing:
        state = "refreshing"
    elif chain.failures > 0 or chain.expires_at <= now:
        state = "degraded"
    else:
        state = "ok"
    return Health(account.name, account.kind, state, facts)


def exit_code(healths: list[Health]) -> int:
    """0 when all are ok, 1 when any is degraded, 2 when any needs re-authorization."""
    return max((SEVERITY[h.state] for h in healths), default=0)


def account_healths(store: Store, now: float) -> list[Health]:
    """Judge every account from the store (the one place that reads what ``judge`` needs)."""
    out = []
    quota = store.get_quota()
    for account in store.list_accounts():
        chain = store.get_chain(account.name) if account.kind == "oauth" else None
        refreshing = (
            chain is not None
            and chain.in_flight is not None
            and store.lock_holder(refresh_lock(account.name)) is not None
        )
        health = judge(account, chain, refreshing, now)
        if account.name in quota:
            figures, at = quota[account.name]
            health.facts["keap_quota"] = {**figures, "seen_at": at}
        out.append(health)
    return out
