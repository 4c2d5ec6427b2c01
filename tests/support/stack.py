"""What most tests build on: accounts, keys, and keyshim in front of the simulator, in-process.

keyshim is called in-process (httpx.ASGITransport). Forwarded XML-RPC calls go the production
way, through ``shim.keap.http1`` over a loopback socket to the simulator (``sim_server``); token
grants and REST v2, which go through httpx in production too, reach the simulator in-process
(httpx.ASGITransport). Tests about processes and crashes build on ``tests.support.servers``
and subprocesses instead.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from shim import xmlrpc
from shim.access import keys
from shim.models import Account, KeyRecord, TokenPair
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services
from shim.settings import Settings
from shim.simulator import Simulator
from shim.store.sqlite import SqliteStore


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
    """keyshim app + simulator; ``call`` speaks XML-RPC like a script. ``base`` is where the
    simulator listens (``sim_server.serve_simulator``): forwarded calls go there through http1."""

    def __init__(self, settings: Settings, store: SqliteStore, sim: Simulator, base: str) -> None:
        self.settings = settings
        self.store = store
        self.sim = sim
        self.base = base
        self.app = KeyshimApp(
            settings,
            lambda s: build_services(
                s, transport=httpx.ASGITransport(app=sim.app), forward_http1=True
            ),
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
