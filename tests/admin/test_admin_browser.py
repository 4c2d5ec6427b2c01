"""The admin page in a real browser: Debian's Chromium driven by Playwright, against keyshim
(uvicorn on loopback) in front of the simulator (uvicorn on loopback).

One walk through what an admin does: log in (after a wrong password), issue a key and see it
once, use it from an ``xmlrpc.client`` script, revoke it and see the next call refused, refresh
a chain and see the simulator serve the refresh, change a route, and see a POST without a CSRF
token refused. Each page is saved as a screenshot (``KEYSHIM_SCREENSHOTS`` names the folder;
the README's pictures in docs/ come from here).

Without Chromium or Playwright these tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import shutil
import time
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.admin.support import PASSWORD, set_password
from tests.support.servers import BackgroundServer
from tests.support.stack import add_oauth_account

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = _missing()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("KEYSHIM_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def served(settings: Settings, store: SqliteStore) -> Iterator[tuple[str, Simulator]]:
    """keyshim with --admin on loopback, in front of the simulator; yields its URL."""
    sim = Simulator(SimConfig())
    with BackgroundServer(sim.app) as keap:
        add_oauth_account(store, sim, keap.url)
        set_password(store)
        app = KeyshimApp(replace(settings, admin=True, audit_flush=0.05), build_services)
        with BackgroundServer(app) as shim:
            yield shim.url, sim


def test_admin_walkthrough(
    browser: Any, served: tuple[str, Simulator], store: SqliteStore, shots: Path
) -> None:
    url, sim = served
    context = browser.new_context(viewport={"width": 1360, "height": 760})
    page = context.new_page()
    page.set_default_timeout(15_000)

    # Log in: a wrong password is refused, the right one opens the accounts page.
    page.goto(url + "/admin")
    assert page.url.endswith("/admin/login")
    page.get_by_label("Admin password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong password."
    page.screenshot(path=str(shots / "admin-login.png"))
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/accounts")

    # Issue a key: shown once, with a copy button (JavaScript on), never again.
    page.get_by_role("link", name="Keys").click()
    page.get_by_label("Label (who or what uses it)").fill("nightly export script")
    page.get_by_label("Rate (e.g. 120/min; empty: no limit)").fill("120/min")
    page.get_by_role("button", name="Issue key").click()
    key = page.locator("#new-key").input_value()
    assert key.startswith("shk_")
    assert page.get_by_role("button", name="Copy").is_visible()
    page.screenshot(path=str(shots / "admin-key-issued.png"), full_page=True)
    page.goto(url + "/admin/keys")
    assert key not in page.content()
    assert page.locator("#new-key").count() == 0

    # The key works from a legacy-style script.
    proxy = xmlrpc.client.ServerProxy(url + "/api/xmlrpc")
    assert proxy.DataService.echo(key, "hello") == "hello"

    # Revoke it in the page (confirmed); the next call is refused.
    key_id = store.list_keys()[0].id
    page.get_by_role("button", name=f"Revoke key {key_id}").click()
    page.get_by_role("button", name="Revoke key").click()
    assert "is revoked" in page.get_by_role("status").inner_text()
    with pytest.raises(xmlrpc.client.Fault) as refused:
        proxy.DataService.echo(key, "again")
    assert "[InvalidKey]" in refused.value.faultString
    page.screenshot(path=str(shots / "admin-keys.png"), full_page=True)

    # A refresh that Keap's token endpoint keeps failing: the page says so, and alerts.
    generation = store.chain_generation("prod")
    sim.fail_token_requests(*["503"] * 4)  # the first try and its three retries
    page.get_by_role("link", name="Accounts").click()
    page.get_by_role("button", name="Refresh now…").click()
    page.get_by_role("button", name="Refresh now").click()
    assert "503" in page.get_by_role("alert").inner_text()
    assert page.locator(".state-degraded").first.inner_text() == "degraded"
    assert store.chain_generation("prod") == generation

    # Refresh the chain now (confirmed): the simulator serves one refresh.
    before = sim.stats()["refreshes_served"]
    page.get_by_role("button", name="Refresh now…").click()
    assert "Refresh the token chain of prod now?" in page.content()
    page.get_by_role("button", name="Refresh now").click()
    assert "prod: refreshed" in page.get_by_role("status").inner_text()
    assert sim.stats()["refreshes_served"] == before + 1
    assert store.chain_generation("prod") == (generation or 0) + 1
    assert f"generation {(generation or 0) + 1}" in page.content()

    # Change the route (confirmed).
    page.get_by_label("Route of prod").select_option("auto")
    page.get_by_role("button", name="Change route…").click()
    page.get_by_role("button", name="Change route").click()
    assert "now routes its calls through auto" in page.get_by_role("status").inner_text()
    account = store.get_account("prod")
    assert account is not None and account.route == "auto"
    page.screenshot(path=str(shots / "admin-accounts.png"), full_page=True)

    # A POST without the CSRF token, with the session cookie, is refused.
    answer = context.request.post(
        url + "/admin/keys", form={"account": "prod", "label": "forged"}, max_redirects=0
    )
    assert answer.status == 403
    assert [k.label for k in store.list_keys()] == ["nightly export script"]

    # Usage and readiness show the script's calls; alerts show the admin actions.
    time.sleep(0.3)  # the audit is written in the background
    page.get_by_role("link", name="Usage and readiness").click()
    assert "DataService.echo" in page.content()
    page.screenshot(path=str(shots / "admin-usage.png"), full_page=True)
    page.get_by_role("link", name="Alerts").click()
    assert "key revoke" in page.content() and "refused: no CSRF" in page.content()
    events = [a["event"] for a in store.recent_alerts()]
    assert events == ["recovered", "degraded"]
    recent = page.get_by_role("region", name="Recent alerts")
    assert recent.get_by_text("degraded", exact=True).is_visible()
    page.screenshot(path=str(shots / "admin-alerts.png"), full_page=True)

    # Nothing secret on any page: no key text, no token, no password.
    chain = store.get_chain("prod")
    assert chain is not None
    for path in ("accounts", "keys", "usage", "alerts"):
        page.goto(f"{url}/admin/{path}")
        html = page.content()
        for secret in (key, chain.access_token, chain.refresh_token, PASSWORD):
            assert secret not in html
    context.close()


def test_works_without_javascript(browser: Any, served: tuple[str, Simulator]) -> None:
    url, _ = served
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(url + "/admin/login")
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_label("Admin password").press("Enter")  # keyboard only
    page.wait_for_url("**/admin/accounts")
    page.get_by_role("link", name="Keys").click()
    page.get_by_label("Label (who or what uses it)").fill("no-js")
    page.get_by_role("button", name="Issue key").click()
    assert page.locator("#new-key").input_value().startswith("shk_")
    assert not page.get_by_role("button", name="Copy").is_visible()  # JavaScript only adds it
    context.close()
