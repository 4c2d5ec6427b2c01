"""First authorization (URL, pasted redirect, one-shot listener) and the token CLI commands.

The CLI tests run ``shim`` through click's CliRunner against a simulator on a loopback socket
(``BackgroundServer``): the commands build their own httpx client, as they do in production.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner, Result

from shim.cli import cli
from shim.errors import CliError
from shim.oauth import authorize
from shim.oauth.authorize import (
    DEFAULT_REDIRECT,
    Redirect,
    authorize_url,
    listen_once,
    parse_listen,
    parse_redirect,
)
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.timeout(30)

STATE = "st4te-Of-this-attempt"
SCOPE = "full|ab123.infusionsoft.com"


# --- the authorize URL -------------------------------------------------------------------------


def test_authorize_url_carries_everything_keap_needs() -> None:
    base = "https://accounts.infusionsoft.com/app/oauth/authorize"
    url = authorize_url(base, "client-1", "http://localhost:8976/callback", STATE)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == base
    assert parse_qs(parts.query) == {
        "client_id": ["client-1"],
        "redirect_uri": ["http://localhost:8976/callback"],
        "response_type": ["code"],
        "scope": ["full"],
        "state": [STATE],
    }


def test_authorize_url_keeps_an_existing_query() -> None:
    url = authorize_url("https://a.test/auth?tenant=x", "c", "http://h/cb?x=1", "s")
    query = parse_qs(urlsplit(url).query)
    assert query["tenant"] == ["x"] and query["redirect_uri"] == ["http://h/cb?x=1"]
    assert url.count("?") == 1


def test_new_state_is_unguessable() -> None:
    states = {authorize.new_state() for _ in range(50)}
    assert len(states) == 50 and all(len(s) >= 20 for s in states)


# --- pasted redirects --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"http://localhost:8976/callback?code=abc123&scope=full%7Cab123.infusionsoft.com&state={STATE}",
        f"  http://localhost:8976/callback?state={STATE}&code=abc123&scope=full%7Cab123.infusionsoft.com\n",
        f"code=abc123&scope=full%7Cab123.infusionsoft.com&state={STATE}",
        f"?code=abc123&scope=full%7Cab123.infusionsoft.com&state={STATE}",
    ],
    ids=["url", "url-other-order", "query", "query-with-?"],
)
def test_parse_redirect_accepts_urls_and_queries(text: str) -> None:
    assert parse_redirect(text, STATE) == Redirect("abc123", STATE, SCOPE)


def test_parse_redirect_accepts_a_bare_code() -> None:
    assert parse_redirect("  Xy9-_.abc \n", STATE) == Redirect("Xy9-_.abc", None, None)


def test_parse_redirect_accepts_a_request_path() -> None:
    text = f"/callback?code=abc123&scope=full%7Cab123.infusionsoft.com&state={STATE}"
    assert parse_redirect(text, STATE) == Redirect("abc123", STATE, SCOPE)


@pytest.mark.parametrize(
    "text,message",
    [
        ("http://localhost:8976/callback?code=abc&state=other", "state does not match"),
        ("http://localhost:8976/callback?code=abc", "state does not match"),
        (f"http://localhost:8976/callback?error=access_denied&state={STATE}", "refused"),
        ("?error=access_denied", "refused"),
        (f"http://localhost:8976/callback?code=&state={STATE}", "no code"),
        ("", "nothing pasted"),
        ("   \n", "nothing pasted"),
        ("hello world", "does not look like"),
        ("http://localhost:8976/callback", "does not look like"),
        ("a=b", "does not look like"),
    ],
)
def test_parse_redirect_rejects(text: str, message: str) -> None:
    with pytest.raises(CliError, match=message):
        parse_redirect(text, STATE)


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8976") == ("127.0.0.1", 8976)
    for bad in ("8976", "host:", ":80", "h:eighty"):
        with pytest.raises(CliError, match="HOST:PORT"):
            parse_listen(bad)


# --- the one-shot listener ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Browser:
    """A thread that sends GETs to the listener once it is up, like a redirected browser."""

    answers: list[tuple[int, bytes]]
    thread: threading.Thread

    @classmethod
    def send(cls, *urls: str) -> Browser:
        answers: list[tuple[int, bytes]] = []

        def run() -> None:
            for url in urls:
                answers.append(_get_when_up(url))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return cls(answers, thread)

    def join(self) -> list[tuple[int, bytes]]:
        self.thread.join(timeout=10)
        return self.answers


def _get_when_up(url: str) -> tuple[int, bytes]:
    deadline = time.monotonic() + 5
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_listen_once_returns_the_code() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    browser = Browser.send(
        base + "/favicon.ico",  # a browser's stray request is answered and ignored
        f"{base}/callback?code=abc123&scope=full%7Cab123.infusionsoft.com&state={STATE}",
    )
    redirect = listen_once("127.0.0.1", port, STATE, timeout=5)
    answers = browser.join()
    assert redirect == Redirect("abc123", STATE, SCOPE)
    assert answers[0][0] == 400
    assert answers[1] == (200, b"keyshim: authorized. You can close this tab.\n")


def test_listen_once_refuses_a_wrong_state() -> None:
    port = free_port()
    browser = Browser.send(f"http://127.0.0.1:{port}/callback?state=forged&code=abc")
    with pytest.raises(CliError, match="state does not match"):
        listen_once("127.0.0.1", port, STATE, timeout=5)
    status, body = browser.join()[0]
    assert status == 400 and b"state does not match" in body


def test_listen_once_times_out_cleanly() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(CliError, match="no redirect arrived"):
        listen_once("127.0.0.1", port, STATE, timeout=0.3)
    assert time.monotonic() - started < 3
    with socket.socket() as s:  # the port was given back
        s.bind(("127.0.0.1", port))


def test_listen_once_on_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CliError, match="cannot listen"):
            listen_once("127.0.0.1", port, STATE, timeout=1)


# --- the CLI end to end ------------------------------------------------------------------------


@dataclass
class Env:
    settings: Settings
    store: SqliteStore
    sim: Simulator
    url: str
    runner: CliRunner
    env: dict[str, str]

    def run(self, *args: str, input: str | None = None, code: int | None = 0) -> Result:
        result = self.runner.invoke(cli, list(args), env=self.env, input=input)
        if code is not None:
            assert result.exit_code == code, (result.output, result.exception)
        assert "Traceback" not in result.output
        return result

    def add(self, name: str = "prod") -> tuple[str, str]:
        client_id, secret = self.sim.add_client()
        self.run(
            "account",
            "add",
            name,
            "--client-id",
            client_id,
            "--client-secret",
            secret,
            "--xmlrpc-url",
            self.url + "/crm/xmlrpc/v1",
            "--token-url",
            self.url + "/token",
            "--authorize-url",
            self.url + "/app/oauth/authorize",
        )
        return client_id, secret

    def import_tokens(self, name: str, client_id: str, expires_in: str = "24h") -> None:
        pair = self.sim.issue_tokens(client_id)
        self.run(
            "account",
            "import-tokens",
            name,
            "--access-token",
            pair["access_token"],
            "--refresh-token",
            pair["refresh_token"],
            "--expires-in",
            expires_in,
        )

    def status(self, code: int) -> list[dict[str, Any]]:
        text = self.run("status", code=code).output
        result = self.run("status", "--json", code=code)
        assert text and result.stderr == ""
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows


class Switch:
    """One loopback server for the module, in front of a fresh simulator for each test."""

    def __init__(self) -> None:
        self.sim = Simulator(SimConfig())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.sim.app(scope, receive, send)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Switch, str]]:
    switch = Switch()
    with BackgroundServer(switch) as background:
        yield switch, background.url


@pytest.fixture
def keap(server: tuple[Switch, str]) -> tuple[Simulator, str]:
    switch, url = server
    switch.sim = Simulator(SimConfig())
    return switch.sim, url


@pytest.fixture
def e(settings: Settings, store: SqliteStore, keap: tuple[Simulator, str]) -> Env:
    sim, url = keap
    env = {
        "SHIM_DB": settings.db,
        "SHIM_SECRET_KEY": "",
        "SHIM_KEY_FILE": settings.key_file,
        "SHIM_RETRY_BASE": "0.01",
        "SHIM_RETRY_CAP": "0.02",
        "SHIM_REFRESH_RETRIES": "1",
        "SHIM_ALERT_WEBHOOK": "",
    }
    return Env(settings, store, sim, url, CliRunner(), env)


def consent(sim: Simulator, url: str) -> str:
    """What the browser is sent to after "Allow": the simulator's 302, fetched in-process."""

    async def go() -> str:
        transport = httpx.ASGITransport(app=sim.app)
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(url)
        assert response.status_code == 302
        return response.headers["location"]

    return asyncio.run(go())


def test_cli_authorize_by_pasting_the_redirect(e: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    client_id, secret = e.add()
    monkeypatch.setattr(authorize, "new_state", lambda: STATE)
    url = authorize_url(e.url + "/app/oauth/authorize", client_id, DEFAULT_REDIRECT, STATE)
    redirect = consent(e.sim, url)
    assert redirect.startswith(DEFAULT_REDIRECT + "?")

    result = e.run("account", "authorize", "prod", input=redirect + "\n")
    assert result.stdout.splitlines()[0] == url  # the printed URL is the one the browser opened
    assert "paste the URL" in result.stderr
    assert "authorized 'prod' for Keap app ab123" in result.stdout
    assert secret not in result.output

    chain = e.store.get_chain("prod")
    account = e.store.get_account("prod")
    assert chain is not None and account is not None
    assert chain.generation == 1 and chain.state == "ok"
    assert account.app_name == "ab123"
    assert e.sim.stats()["code_exchanges"] == 1
    assert e.sim.auth.credential(chain.access_token, None, e.sim.now()) is not None
    assert abs(chain.expires_at - (time.time() + 86400)) < 60

    # The chain works: a refresh through the CLI rotates it.
    assert "prod: refreshed" in e.run("refresh", "prod").stdout
    assert e.sim.stats()["refreshes_served"] == 1


def test_cli_authorize_mistakes(e: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    client_id, _ = e.add()
    e.run("account", "add", "sak", "--service-key", "KeapAK-x")
    monkeypatch.setattr(authorize, "new_state", lambda: STATE)
    url = authorize_url(e.url + "/app/oauth/authorize", client_id, DEFAULT_REDIRECT, STATE)

    forged = consent(e.sim, url.replace(STATE, "forged"))
    result = e.run("account", "authorize", "prod", input=forged + "\n", code=1)
    assert "state does not match" in result.stderr
    result = e.run("account", "authorize", "prod", input="\n", code=1)
    assert "nothing pasted" in result.stderr
    result = e.run("account", "authorize", "nope", code=1)
    assert "no account named 'nope'" in result.stderr
    result = e.run("account", "authorize", "sak", code=1)
    assert "service key" in result.stderr
    # A code Keap never issued: the exchange fails and nothing is stored.
    result = e.run("account", "authorize", "prod", input="not-a-real-code\n", code=1)
    assert "invalid_grant" in result.stderr
    assert "refresh token" not in result.stderr  # it was a code, not a refresh token
    assert "authorization code" in result.stderr and "single-use" in result.stderr
    assert e.store.get_chain("prod") is None
    assert e.sim.stats()["code_exchanges"] == 0


def test_cli_reauthorize_a_dead_chain(e: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    client_id, _ = e.add()
    e.import_tokens("prod", client_id)
    e.store.end_refresh_failed("prod", "invalid_grant", time.time(), dead=True)
    assert e.status(2)[0]["state"] == "needs_reauth"
    monkeypatch.setattr(authorize, "new_state", lambda: STATE)
    url = authorize_url(e.url + "/app/oauth/authorize", client_id, DEFAULT_REDIRECT, STATE)
    bare_code = parse_qs(urlsplit(consent(e.sim, url)).query)["code"][0]
    result = e.run("account", "authorize", "prod", input=bare_code + "\n")
    assert "authorized 'prod' for Keap app ab123" in result.stdout  # scope from the answer
    chain = e.store.get_chain("prod")
    assert chain is not None and chain.state == "ok" and chain.generation == 2
    assert chain.failures == 0 and chain.last_error is None
    assert e.status(0)[0]["state"] == "ok"


def test_cli_authorize_with_listen(e: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    client_id, _ = e.add()
    monkeypatch.setattr(authorize, "new_state", lambda: STATE)
    port = free_port()
    redirect_uri = f"http://127.0.0.1:{port}/callback"
    url = authorize_url(e.url + "/app/oauth/authorize", client_id, redirect_uri, STATE)
    browser = Browser.send(consent(e.sim, url))
    result = e.run("account", "authorize", "prod", "--listen", f"127.0.0.1:{port}")
    assert browser.join()[0][0] == 200
    assert "authorized 'prod'" in result.stdout


def test_cli_refresh(e: Env) -> None:
    a_id, _ = e.add("a")
    b_id, _ = e.add("b")
    e.run("account", "add", "sak", "--service-key", "KeapAK-x")
    e.import_tokens("a", a_id)
    e.import_tokens("b", b_id, expires_in="1h")  # due: less than refresh_margin left

    result = e.run("refresh", "--due")
    assert "a: not due" in result.stdout and "b: refreshed" in result.stdout
    assert e.sim.stats()["refreshes_served"] == 1
    assert e.store.chain_generation("a") == 1 and e.store.chain_generation("b") == 2

    result = e.run("refresh", "a")
    assert result.stdout.startswith("a: refreshed; access token expires ")
    assert e.store.chain_generation("a") == 2

    result = e.run("refresh", "--all")
    assert "a: refreshed" in result.stdout and "b: refreshed" in result.stdout
    assert "sak" not in result.output
    assert e.sim.stats()["refreshes_served"] == 4
    assert (e.store.chain_generation("a"), e.store.chain_generation("b")) == (3, 3)


REFRESH_MISTAKES = [
    ([], "exactly one of NAME, --all or --due"),
    (["a", "--all"], "exactly one"),
    (["a", "--due"], "exactly one"),
    (["--all", "--due"], "exactly one"),
    (["nope"], "no account named 'nope'"),
    (["sak"], "uses a service key"),
]


def test_cli_refresh_mistakes(e: Env) -> None:
    a_id, _ = e.add("a")
    e.import_tokens("a", a_id)
    e.run("account", "add", "sak", "--service-key", "KeapAK-x")
    for args, message in REFRESH_MISTAKES:
        result = e.run("refresh", *args, code=1)
        assert message in result.stderr, args
        assert len(result.stderr.strip().splitlines()) == 1, args
    assert e.sim.stats()["token_requests"] == 0


def test_cli_refresh_failures_and_status(e: Env) -> None:
    a_id, a_secret = e.add("a")
    e.run("account", "add", "sak", "--service-key", "KeapAK-SECRET-sak")
    assert [r["state"] for r in e.status(2)] == ["needs_reauth", "ok"]  # a: no tokens yet
    e.import_tokens("a", a_id)

    rows = e.status(0)
    a = rows[0]
    assert a["account"] == "a" and a["kind"] == "oauth" and a["state"] == "ok"
    assert a["generation"] == 1 and a["failures"] == 0 and a["last_error"] is None
    assert a["route"] == "auto" and a["app_name"] is None  # new accounts default to auto
    assert time.strptime(a["access_token_expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert time.strptime(a["last_refresh_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert 86000 < a["access_token_expires_in"] <= 86400
    sak = rows[1]
    assert (sak["account"], sak["kind"], sak["state"]) == ("sak", "service_key", "ok")
    assert "generation" not in sak and "access_token_expires_at" not in sak

    # Keap's token endpoint is down: the refresh fails, the chain is degraded, not dead.
    e.sim.fail_token_requests("503", "503")
    result = e.run("refresh", "a", code=1)
    assert "a: FAILED" in result.stderr and "refresh failed for: a" in result.stderr
    a = e.status(1)[0]
    assert a["state"] == "degraded" and a["failures"] == 1 and "503" in a["last_error"]
    assert time.strptime(a["last_error_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert "last error" in e.run("status", code=1).stdout

    # The refresh token was spent elsewhere: the chain is dead, status says so with 2.
    chain = e.store.get_chain("a")
    assert chain is not None
    e.sim.auth.revoke(chain.refresh_token)
    result = e.run("refresh", "a", code=1)
    assert "re-authorization" in result.stderr
    a = e.status(2)[0]
    assert a["state"] == "needs_reauth" and a["failures"] == 2

    chain = e.store.get_chain("a")
    assert chain is not None
    output = e.run("status", "--json", code=2).output + e.run("status", code=2).output
    for secret in (a_secret, chain.access_token, chain.refresh_token, "KeapAK-SECRET-sak"):
        assert secret not in output


def test_cli_status_with_no_accounts(e: Env) -> None:
    assert "no accounts yet" in e.run("status").stdout
    assert json.loads(e.run("status", "--json").stdout) == []
