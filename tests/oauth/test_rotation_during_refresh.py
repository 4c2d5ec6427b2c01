"""``shim rotate-master-key`` while a server runs (issue 11).

The server's store still holds the retired key. Before: a refresh in flight during the rotation
stored its new pair sealed under the retired key (the chain never opened again), and every
read of a rewrapped value failed. Now every sealed value names its key, a write under a key
that is no longer the store's is refused, and the server reloads the key file and goes on.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shim.keap.client import Upstream
from shim.oauth.chains import Chains
from shim.serve.runtime import open_store
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store import master_key
from shim.store.secrets import SecretBox
from shim.store.sqlite import SqliteStore
from tests.support.stack import add_oauth_account

pytestmark = pytest.mark.anyio

BASE = "http://keap.test"


def rotate(settings: Settings) -> None:
    """What ``shim rotate-master-key`` does, with its own store (another process)."""
    with open_store(settings) as cli_store:
        master_key.rotate(settings, cli_store, master_key.rotation_target(settings))


def reopened(settings: Settings) -> SqliteStore:
    """The store as a freshly started process sees it: with the key file as it is now."""
    return SqliteStore(settings.db, SecretBox(master_key.load(settings)))


async def test_rotation_during_a_held_refresh_keeps_the_chain(
    settings: Settings, store: SqliteStore
) -> None:
    sim = Simulator(SimConfig(hold_refresh="before"))
    account = add_oauth_account(store, sim, BASE)
    server_store = open_store(settings)  # the running server's, with the old key
    chains = Chains(server_store, Upstream(transport=httpx.ASGITransport(app=sim.app)), settings)
    try:
        task = asyncio.create_task(chains.refresh(account, seen_generation=None, reason="forced"))
        for _ in range(500):
            if sim.held == 1:
                break
            await asyncio.sleep(0.01)
        assert sim.held == 1
        rotate(settings)
        sim.release()
        chain = await task
        assert chain.generation == 2
        fresh = reopened(settings)
        try:
            stored = fresh.get_chain("prod")  # opens with the new key
            assert stored is not None and stored.generation == 2
            assert stored.access_token == chain.access_token
            assert stored.refresh_token == chain.refresh_token
        finally:
            fresh.close()
    finally:
        server_store.close()


def test_a_running_server_reads_on_after_a_rotation(settings: Settings, store: SqliteStore) -> None:
    sim = Simulator(SimConfig())
    add_oauth_account(store, sim, BASE)
    server_store = open_store(settings)
    try:
        before = server_store.get_chain("prod")
        rotate(settings)
        after = server_store.get_chain("prod")  # was: DecryptError, [Unexpected] every call
        assert before is not None and after is not None
        assert after.access_token == before.access_token
        account = server_store.get_account("prod")
        assert account is not None and account.client_secret
    finally:
        server_store.close()
