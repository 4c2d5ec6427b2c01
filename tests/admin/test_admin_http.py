"""The admin page without a browser: sessions, cookies, CSRF, the rate limit, and off by
default."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from click.testing import CliRunner

from shim import xmlrpc
from shim.cli import cli
from shim.models import Account
from shim.serve.admin import passwords, sessions
from shim.serve.admin.app import check_exposure
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services, create_admin_app
from shim.settings import Settings
from shim.store.sqlite import SqliteStore
from tests.admin.support import PASSWORD, csrf_of, log_in, set_password
from tests.support.locks import hold_write_lock
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def _client(settings: Settings, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    app = KeyshimApp(settings, build_services, clock=clock)
    await app.startup()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        yield client
    await app.shutdown()


@pytest.fixture
async def client(
    settings: Settings, store: SqliteStore, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    set_password(store)
    async for c in _client(replace(settings, admin=True, admin_session=600.0), clock):
        yield c


async def test_off_by_default(settings: Settings, store: SqliteStore, clock: Clock) -> None:
    set_password(store)
    async for client in _client(settings, clock):
        for path in ("/admin", "/admin/login", "/admin/accounts"):
            assert (await client.get(path)).status_code == 404
        page = await client.post("/admin/login", data={"password": PASSWORD})
        assert page.status_code == 404


async def test_login_sets_strict_httponly_cookie(client: httpx.AsyncClient) -> None:
    answer = await log_in(client)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/accounts"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith(sessions.COOKIE + "=")
    )
    flags = [part.strip() for part in cookie.split(";")]
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/admin" in flags
    assert "Max-Age=600" in flags
    assert PASSWORD not in cookie
    page = await client.get("/admin/accounts")
    assert page.status_code == 200 and "<h1>Accounts</h1>" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_session_expires(client: httpx.AsyncClient, clock: Clock) -> None:
    await log_in(client)
    clock.now += 599
    assert (await client.get("/admin/keys")).status_code == 200
    clock.now += 2
    answer = await client.get("/admin/keys")
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/login"


async def test_new_password_ends_sessions(client: httpx.AsyncClient, store: SqliteStore) -> None:
    await log_in(client)
    set_password(store, "another long password")
    assert (await client.get("/admin/keys")).status_code == 303


async def test_forged_session_refused(client: httpx.AsyncClient) -> None:
    await log_in(client)
    value = client.cookies[sessions.COOKIE]
    sid, rest = value.split("|", 1)
    forged = ("A" if sid[0] != "A" else "B") + sid[1:] + "|" + rest
    client.cookies.clear()
    client.cookies.set(sessions.COOKIE, forged, domain="127.0.0.1", path="/admin")
    assert (await client.get("/admin/keys")).status_code == 303


async def test_wrong_password_and_rate_limit(client: httpx.AsyncClient, store: SqliteStore) -> None:
    for _ in range(5):
        answer = await log_in(client, "not the password")
        assert answer.status_code == 401 and "Wrong password" in answer.text
        assert sessions.COOKIE + "=" not in answer.headers.get("set-cookie", "")
    answer = await log_in(client)  # the right one, but too late
    assert answer.status_code == 429
    outcomes = [a["outcome"] for a in store.admin_actions()]
    assert outcomes[0] == "refused: rate limit"
    assert outcomes.count("refused: wrong password") == 5
    assert all(a["source"] == "127.0.0.1" for a in store.admin_actions())


async def test_post_without_csrf_refused(client: httpx.AsyncClient, store: SqliteStore) -> None:
    page = await client.get("/admin/login")
    answer = await client.post("/admin/login", data={"password": PASSWORD})
    assert answer.status_code == 403
    await log_in(client)
    answer = await client.post("/admin/keys", data={"account": "prod", "label": "x"})
    assert answer.status_code == 403 and "did not come from this page" in answer.text
    answer = await client.post(
        "/admin/keys", data={"account": "prod", "label": "x", "csrf": csrf_of(page.text)}
    )
    assert answer.status_code == 403  # the pre-login token is not a session's
    assert store.list_keys() == []


async def test_no_secret_on_pages(client: httpx.AsyncClient, store: SqliteStore) -> None:
    stored = store.admin_password()
    assert stored is not None and passwords.verify_password(PASSWORD, stored)
    await log_in(client)
    for path in ("/admin/accounts", "/admin/keys", "/admin/usage", "/admin/alerts"):
        text = (await client.get(path)).text
        assert PASSWORD not in text and stored not in text


def test_exposure_needs_tls_or_insecure(settings: Settings) -> None:
    on = replace(settings, admin=True)
    assert check_exposure(on) is None
    wide = replace(on, admin_host="0.0.0.0")  # all interfaces
    assert "TLS" in (check_exposure(wide) or "")
    assert check_exposure(replace(wide, admin_insecure=True)) is None
    assert check_exposure(replace(wide, certfile="c.pem", keyfile="k.pem")) is None
    assert check_exposure(replace(wide, admin=False)) is None


async def test_other_addresses_refused_unless_admin_host_allows(
    settings: Settings, store: SqliteStore
) -> None:
    set_password(store)
    everyone = "0.0.0.0"  # all interfaces: any client address is admitted
    for admin_host, status in (("127.0.0.1", 404), (everyone, 200)):
        app = KeyshimApp(replace(settings, admin=True, admin_host=admin_host), build_services)
        await app.startup()
        # A client that is not this machine (nothing is sent anywhere: in-process ASGI).
        transport = httpx.ASGITransport(app=app, client=("elsewhere.test", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://shim.test") as c:
            assert (await c.get("/admin/login")).status_code == status
        await app.shutdown()


def test_own_port(settings: Settings, store: SqliteStore) -> None:
    """--admin-port: the page on its own server; the main port has no /admin."""
    set_password(store)
    on = replace(settings, admin=True, admin_port=1)
    assert KeyshimApp(on, build_services).admin is None
    with BackgroundServer(create_admin_app(on)) as admin, httpx.Client(base_url=admin.url) as c:
        login = c.get("/admin/login")
        assert login.status_code == 200
        answer = c.post("/admin/login", data={"csrf": csrf_of(login.text), "password": PASSWORD})
        assert answer.status_code == 303
        assert c.get("/admin/keys").status_code == 200
        assert c.get("/api/xmlrpc").status_code == 404
    assert [a["action"] for a in store.admin_actions()] == ["login"]


async def test_issue_rotate_with_overlap_and_bad_input(
    client: httpx.AsyncClient, store: SqliteStore, clock: Clock
) -> None:
    store.add_account(Account(name="prod", kind="service_key", created_at=clock.now))
    await log_in(client)
    csrf = csrf_of((await client.get("/admin/keys")).text)
    bad = await client.post(
        "/admin/keys", data={"csrf": csrf, "account": "prod", "label": "x", "rate": "lots"}
    )
    assert bad.status_code == 200 and 'role="alert"' in bad.text and store.list_keys() == []
    issued = await client.post("/admin/keys", data={"csrf": csrf, "account": "prod", "label": "s"})
    old = store.list_keys()[0]
    assert 'id="new-key"' in issued.text
    form = {"csrf": csrf, "overlap": "7d"}
    asked = await client.post(f"/admin/keys/{old.id}/rotate", data=form)
    assert "Please confirm" in asked.text and len(store.list_keys()) == 1
    done = await client.post(f"/admin/keys/{old.id}/rotate", data={**form, "confirm": "yes"})
    assert 'id="new-key"' in done.text and "stops working" in done.text
    kept = store.get_key(old.id)
    assert kept is not None and kept.revoked_at == clock.now + 7 * 86400
    assert [a["action"] for a in store.admin_actions()][:3] == [
        "key rotate",
        "key issue",
        "key issue",
    ]


def test_set_password_command(settings: Settings, store: SqliteStore) -> None:
    """Prompted twice, kept only as a scrypt hash; too short is refused in one line."""
    runner = CliRunner()
    args = ["--db", settings.db, "admin", "set-password"]
    short = runner.invoke(cli, args, input="short\nshort\n")
    assert short.exit_code != 0 and "at least 10 characters" in short.output
    assert store.admin_password() is None
    done = runner.invoke(cli, args, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert done.exit_code == 0, done.output
    stored = store.admin_password()
    assert stored is not None and stored.startswith("scrypt$") and PASSWORD not in stored
    assert passwords.verify_password(PASSWORD, stored)
    assert not passwords.verify_password("wrong password", stored)


async def test_the_admin_page_waits_on_a_locked_store_without_stalling_calls(
    client: httpx.AsyncClient, store: SqliteStore
) -> None:
    """Issue 11 §2: an admin action whose store write waits on another connection's write
    lock waits in a worker thread; calls on the same server answer meanwhile."""
    store.add_account(Account("prod", "service_key", 1.0, service_key="KeapAK-x"))
    assert (await log_in(client)).status_code == 303
    csrf = csrf_of((await client.get("/admin/keys")).text)
    taken, hold = threading.Event(), 3.0
    holder = threading.Thread(target=hold_write_lock, args=(store.path, hold, taken))
    holder.start()
    assert await asyncio.to_thread(taken.wait, 5)
    started = time.monotonic()
    issuing = asyncio.create_task(
        client.post("/admin/keys", data={"csrf": csrf, "account": "prod", "label": "late"})
    )
    await asyncio.sleep(0.2)  # the issue is waiting on the lock by now
    echoes = []
    for n in range(5):
        sent = time.monotonic()
        body = xmlrpc.dumps_call("DataService.echo", [f"e{n}"])
        answer = await client.post("/api/xmlrpc", content=body)
        assert xmlrpc.parse_response(answer.content) == f"e{n}"
        echoes.append(time.monotonic() - sent)
    assert not issuing.done()  # still waiting on the store
    page = await issuing
    await asyncio.to_thread(holder.join, 10)
    assert page.status_code == 200 and "late" in page.text
    assert time.monotonic() - started >= hold - 0.5
    assert max(echoes) < 0.5, echoes
