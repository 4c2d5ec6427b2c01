"""Shared fixtures: an in-process keyshim in front of an in-process Keap simulator.

Everything here runs without sockets (httpx.ASGITransport both ways). Tests about sockets,
processes and crashes build on ``shim.server.BackgroundServer`` and subprocesses instead.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from shim import keys, xmlrpc
from shim.app import KeyshimApp
from shim.models import Account, KeyRecord, TokenPair
from shim.runtime import build_services, init_files, open_store
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.sqlite_store import SqliteStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings.from_env(
        {},
        db=str(tmp_path / "keyshim.db"),
        inline_margin=2.0,
        retry_base=0.01,
        retry_cap=0.05,
        refresh_wait=10.0,
    )
    init_files(s)
    return s


@pytest.fixture
def store(settings: Settings) -> Iterator[SqliteStore]:
    st = open_store(settings)
    yield st
    st.close()


def add_oauth_account(
    store: SqliteStore, sim: Simulator, base: str, name: str = "prod", lifetime: float | None = None
) -> Account:
    """An account pointed at the simulator, with a fresh token pair imported."""
    client_id, secret = sim.add_client()
    account = Account(
        name=name,
        kind="oauth",
        created_at=time.time(),
        client_id=client_id,
        client_secret=secret,
        xmlrpc_url=base + "/crm/xmlrpc/v1",
        token_url=base + "/token",
        authorize_url=base + "/app/oauth/authorize",
    )
    store.add_account(account)
    pair = sim.issue_tokens(client_id)
    now = time.time()
    store.put_tokens(
        name,
        TokenPair(
            pair["access_token"], pair["refresh_token"], now + (lifetime or pair["expires_in"])
        ),
        now,
    )
    return account


def add_key_account(store: SqliteStore, sim: Simulator, base: str, name: str = "sak") -> Account:
    account = Account(
        name=name,
        kind="service_key",
        created_at=time.time(),
        service_key=sim.add_service_key(),
        xmlrpc_url=base + "/crm/xmlrpc/v1",
    )
    store.add_account(account)
    return account


def issue_key(store: SqliteStore, settings: Settings, account: str, **kw: Any) -> str:
    hmac_key = store.server_secret("key-hmac")
    issued = keys.make_key(hmac_key)
    store.add_key(
        KeyRecord(
            id=issued.id,
            account=account,
            label=kw.pop("label", "test"),
            digest=issued.digest,
            prefix=issued.prefix,
            created_at=time.time(),
            **kw,
        )
    )
    return issued.text


class Stack:
    """keyshim app + simulator, wired in-process; ``call`` speaks XML-RPC like a script."""

    def __init__(self, settings: Settings, store: SqliteStore, sim: Simulator) -> None:
        self.settings = settings
        self.store = store
        self.sim = sim
        self.base = "http://keap.test"
        self.app = KeyshimApp(
            settings,
            lambda s: build_services(s, transport=httpx.ASGITransport(app=sim.app)),
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://shim.test"
        )
        self.account = add_oauth_account(store, sim, self.base)
        self.key = issue_key(store, settings, "prod")

    async def post(
        self, body: bytes, path: str = "/api/xmlrpc", headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.client.post(
            path, content=body, headers={"Content-Type": "text/xml", **(headers or {})}
        )

    async def call(self, method: str, *params: xmlrpc.Value, key: str | None = None) -> Any:
        body = xmlrpc.dumps_call(method, [self.key if key is None else key, *params])
        response = await self.post(body)
        assert response.status_code == 200, response.text
        return xmlrpc.parse_response(response.content)

    async def fault(
        self, method: str, *params: xmlrpc.Value, key: str | None = None
    ) -> xmlrpc.Fault:
        with pytest.raises(xmlrpc.Fault) as info:
            await self.call(method, *params, key=key)
        return info.value


@pytest.fixture
async def stack(settings: Settings, store: SqliteStore) -> AsyncIterator[Stack]:
    sim = Simulator(SimConfig())
    s = Stack(replace(settings), store, sim)
    await s.app.startup()
    yield s
    await s.client.aclose()
    await s.app.shutdown()
