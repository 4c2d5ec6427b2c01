"""Chain health: one judgement for ``shim status`` and ``GET /healthz``; never a secret."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from shim.models import Account, Chain, RefreshJournal, TokenPair
from shim.oauth.health import Health, account_healths, exit_code, judge
from shim.store.sqlite import SqliteStore
from tests.support.stack import Stack

pytestmark = pytest.mark.timeout(30)

NOW = 1_700_000_000.0
SECRET = "CLIENT-SECRET-health"
OAUTH = Account(
    name="prod",
    kind="oauth",
    created_at=0,
    client_id="client-1",
    client_secret=SECRET,
    app_name="ab123",
)
SERVICE = Account(name="sak", kind="service_key", created_at=0, service_key="KeapAK-SECRET")
CHAIN = Chain(
    account="prod",
    access_token="AT-SECRET",
    refresh_token="RT-SECRET",
    expires_at=NOW + 3600,
    refresh_issued_at=NOW - 7200,
    generation=4,
    last_refresh_at=NOW - 7200,
)


def test_ok_with_facts() -> None:
    h = judge(OAUTH, CHAIN, False, NOW)
    assert (h.account, h.kind, h.state, h.usable) == ("prod", "oauth", "ok", True)
    assert h.facts == {
        "app_name": "ab123",
        "route": "xmlrpc",
        "access_token_expires_at": NOW + 3600,
        "access_token_expires_in": 3600.0,
        "refresh_token_age": 7200.0,
        "last_refresh_at": NOW - 7200,
        "last_error": None,
        "last_error_at": None,
        "failures": 0,
        "generation": 4,
    }


def test_refreshing() -> None:
    h = judge(OAUTH, CHAIN, True, NOW)
    assert h.state == "refreshing" and h.usable


@pytest.mark.parametrize(
    "chain",
    [
        replace(CHAIN, failures=1, last_error="HTTP 503", last_error_at=NOW - 5),
        replace(CHAIN, expires_at=NOW - 1),
        replace(CHAIN, expires_at=NOW),
    ],
    ids=["failures", "expired", "expires-now"],
)
def test_degraded(chain: Chain) -> None:
    h = judge(OAUTH, chain, False, NOW)
    assert h.state == "degraded" and not h.usable
    assert h.facts["failures"] == chain.failures


def test_refreshing_shows_over_past_failures() -> None:
    # A failed chain that is being refreshed right now shows as refreshing.
    h = judge(OAUTH, replace(CHAIN, failures=2), True, NOW)
    assert h.state == "refreshing"


def test_needs_reauth_wins_over_everything() -> None:
    dead = replace(CHAIN, state="needs_reauth", failures=1, last_error="invalid_grant")
    for refreshing in (False, True):
        h = judge(OAUTH, dead, refreshing, NOW)
        assert h.state == "needs_reauth" and not h.usable
        assert h.facts["last_error"] == "invalid_grant"


def test_no_tokens_yet() -> None:
    h = judge(OAUTH, None, False, NOW)
    assert h.state == "needs_reauth"
    assert "shim account authorize" in h.facts["last_error"]
    assert "generation" not in h.facts


def test_service_key_is_ok_without_a_chain() -> None:
    h = judge(SERVICE, None, False, NOW)
    assert h == Health("sak", "service_key", "ok", {"app_name": None, "route": "xmlrpc"})


def _h(state: str) -> Health:
    return Health("x", "oauth", state, {})


@pytest.mark.parametrize(
    "states,code",
    [
        ([], 0),
        (["ok"], 0),
        (["ok", "refreshing"], 0),
        (["ok", "degraded"], 1),
        (["degraded", "needs_reauth", "ok"], 2),
        (["needs_reauth"], 2),
    ],
)
def test_exit_code(states: list[str], code: int) -> None:
    assert exit_code([_h(s) for s in states]) == code


def test_account_healths_reads_the_store(store: SqliteStore) -> None:
    now = time.time()
    for name in ("ok", "failing", "dead", "busy", "stale", "never"):
        store.add_account(replace(OAUTH, name=name))
    store.add_account(SERVICE)
    for name in ("ok", "failing", "dead", "busy", "stale"):
        store.put_tokens(name, TokenPair("AT-SECRET", "RT-SECRET", now + 3600), now)
    store.end_refresh_failed("failing", "HTTP 503", now, dead=False)
    store.end_refresh_failed("dead", "invalid_grant", now, dead=True)
    for name in ("busy", "stale"):
        store.begin_refresh(RefreshJournal(name, "fp", "owner-" + name, now))
    held = store.try_lock("refresh:busy", "owner-busy")
    assert held is not None
    # "stale": a journal with nobody holding the lock is a crashed refresh, not a live one.

    healths = {h.account: h for h in account_healths(store, now)}
    assert {name: h.state for name, h in healths.items()} == {
        "busy": "refreshing",
        "dead": "needs_reauth",
        "failing": "degraded",
        "never": "needs_reauth",
        "ok": "ok",
        "sak": "ok",
        "stale": "ok",
    }
    assert healths["failing"].facts["last_error"] == "HTTP 503"
    assert healths["failing"].facts["failures"] == 1
    assert healths["ok"].facts["generation"] == 1
    assert exit_code(list(healths.values())) == 2
    held.release()

    text = json.dumps([{"state": h.state, **h.facts} for h in healths.values()])
    for secret in ("SECRET", "client-1"):
        assert secret not in text


# --- GET /healthz in-process -----------------------------------------------------------------


@pytest.mark.anyio
async def test_healthz_ok(stack: Stack) -> None:
    response = await stack.client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    prod = body["accounts"]["prod"]
    assert prod["state"] == "ok" and prod["kind"] == "oauth" and prod["generation"] >= 1
    _no_secrets(stack, response.text)


@pytest.mark.anyio
async def test_healthz_503_when_a_chain_is_dead(stack: Stack) -> None:
    stack.store.end_refresh_failed(
        "prod", "Keap rejected the refresh token: invalid_request", time.time(), dead=True
    )
    response = await stack.client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    prod = body["accounts"]["prod"]
    assert prod["state"] == "needs_reauth"
    assert "invalid_request" in prod["last_error"] and prod["failures"] == 1
    _no_secrets(stack, response.text)


@pytest.mark.anyio
async def test_healthz_503_when_degraded(stack: Stack) -> None:
    stack.store.end_refresh_failed("prod", "HTTP 503", time.time(), dead=False)
    response = await stack.client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["accounts"]["prod"]["state"] == "degraded"


@pytest.mark.anyio
async def test_healthz_head_and_wrong_method(stack: Stack) -> None:
    assert (await stack.client.head("/healthz")).status_code == 200
    assert (await stack.client.post("/healthz")).status_code == 404


def _no_secrets(stack: Stack, text: str) -> None:
    chain = stack.store.get_chain("prod")
    assert chain is not None
    secrets = [chain.access_token, chain.refresh_token, stack.account.client_secret, stack.key]
    for secret in secrets:
        assert secret and secret not in text
