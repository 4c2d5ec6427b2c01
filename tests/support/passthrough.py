"""keyshim and the simulator each under uvicorn on loopback, with an account whose REST base
is the simulator's: what the REST pass-through tests build on (issue 17)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx

from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.servers import BackgroundServer
from tests.support.stack import add_oauth_account, issue_key

HOST = "127.0.0.1"


@dataclass
class Rest:
    settings: Settings
    store: SqliteStore
    sim: Simulator
    sim_server: BackgroundServer
    shim: BackgroundServer
    key: str

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.shim.port}/crm/rest/v2"

    def client(self, key: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30, **kw)

    def upstream(self) -> int:
        """REST requests that reached the simulator (refused or not)."""
        endpoint = self.sim.rest_endpoint
        return endpoint.calls + endpoint.unauthorized + endpoint.throttled


def start_shim(settings: Settings) -> BackgroundServer:
    server = BackgroundServer(KeyshimApp(settings, build_services))
    server.__enter__()
    return server


@contextlib.contextmanager
def rest_stack(settings: Settings, store: SqliteStore) -> Iterator[Rest]:
    sim = Simulator(SimConfig())
    with BackgroundServer(sim.app) as sim_server:
        add_oauth_account(store, sim, sim_server.url)
        store.update_account("prod", rest_url=sim_server.url + "/crm/rest/v2")
        key = issue_key(store, settings, "prod")
        shim = start_shim(replace(settings, audit_flush=0.05))
        try:
            yield Rest(settings, store, sim, sim_server, shim, key)
        finally:
            shim.__exit__(None, None, None)
