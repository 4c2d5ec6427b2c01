"""Shared fixtures: an in-process keyshim in front of an in-process Keap simulator (see
``tests.support.stack``).

keyshim is called in-process; its forwarded calls reach the simulator through http1 over a
loopback socket (``tests.support.sim_server``), token grants in-process. Tests about processes
and crashes build on ``tests.support.servers.BackgroundServer`` and subprocesses instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from shim.serve.runtime import init_files, open_store
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.pg import pg_url  # noqa: F401  (fixture)
from tests.support.sim_server import serve_simulator
from tests.support.stack import Stack


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


@pytest.fixture
async def stack(settings: Settings, store: SqliteStore) -> AsyncIterator[Stack]:
    sim = Simulator(SimConfig())
    async with serve_simulator(sim) as base:
        s = Stack(replace(settings), store, sim, base)
        await s.app.startup()
        yield s
        await s.client.aclose()
        await s.app.shutdown()
