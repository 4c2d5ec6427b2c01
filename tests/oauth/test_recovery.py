"""A pair Keap issued is never lost while the store refuses it (issue #11 §1).

The store failure is real: another SQLite connection holds the write lock past the store's
busy timeout, taken the moment Keap answers (the journal row before the grant still gets in).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from shim.keap.client import Upstream
from shim.models import Account, TokenPair
from shim.oauth.chains import ChainEvent, Chains
from shim.settings import Settings
from shim.store.master_key import load as load_master_key
from shim.store.recovery import RecoveredPair, RecoveryFiles, recovery_files
from shim.store.secrets import SecretBox
from shim.store.sqlite import SqliteStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

OLD_AT, OLD_RT = "AT-old-secret-value", "RT-old-secret-value"
NEW_AT, NEW_RT = "AT-new-secret-value", "RT-new-secret-value"
BUSY_TIMEOUT = 0.2


@dataclass
class Rig:
    settings: Settings
    store: SqliteStore
    chains: Chains
    recovery: RecoveryFiles
    account: Account
    locker: sqlite3.Connection
    events: list[ChainEvent] = field(default_factory=list)
    lock_on_answer: bool = False

    def lock(self) -> None:
        self.locker.execute("BEGIN IMMEDIATE")  # the write lock, until unlock()

    def unlock(self) -> None:
        self.locker.execute("ROLLBACK")

    def stored(self) -> TokenPair:
        chain = self.store.get_chain("prod")
        assert chain is not None
        return TokenPair(chain.access_token, chain.refresh_token, chain.expires_at)

    @property
    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture
async def rig(settings: Settings) -> AsyncIterator[Rig]:
    box = SecretBox(load_master_key(settings))
    store = SqliteStore(settings.db, box, timeout=BUSY_TIMEOUT)
    store.migrate()
    recovery = recovery_files(settings, box)
    holder: list[Rig] = []
    issued: list[httpx.Request] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        if holder[0].lock_on_answer:  # Keap has rotated; now the store refuses writes
            holder[0].lock()
        issued.append(request)
        n = "" if len(issued) == 1 else f"-{len(issued)}"  # the first pair, then -2, -3...
        body = {"access_token": NEW_AT + n, "refresh_token": NEW_RT + n, "expires_in": 86400}
        return httpx.Response(200, json={**body, "token_type": "bearer"})

    upstream = Upstream(transport=httpx.MockTransport(token_endpoint))
    account = Account(
        "prod", "oauth", time.time(), client_id="c", client_secret="s", token_url="http://k/token"
    )
    store.add_account(account)
    store.put_tokens("prod", TokenPair(OLD_AT, OLD_RT, time.time() + 1.0), time.time())
    locker = sqlite3.connect(settings.db, isolation_level=None, check_same_thread=False)
    rig = Rig(settings, store, None, recovery, account, locker)  # type: ignore[arg-type]

    async def on_event(event: ChainEvent) -> None:
        rig.events.append(event)

    rig.chains = Chains(store, upstream, settings, on_event=on_event, recovery=recovery)
    holder.append(rig)
    yield rig
    await rig.chains.drain(0.0)  # stops the write-back
    if locker.in_transaction:
        rig.unlock()
    locker.close()
    await upstream.aclose()
    store.close()


async def eventually(check: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def hold_write_backs(rig: Rig) -> None:
    """The write-back never gets its turn (its backoff waits for ever): a test drives what
    happens to a pair kept aside itself."""
    never = asyncio.Event()

    async def no_write_back(seconds: float) -> None:
        await never.wait()

    rig.chains.sleep = no_write_back


async def test_a_refused_pair_is_served_kept_sealed_and_written_back(rig: Rig) -> None:
    before = rig.store.get_chain("prod")
    assert before is not None
    rig.lock_on_answer = True
    token, generation = await rig.chains.access_token(rig.account)  # inline: 1 s left
    assert (token, generation) == (NEW_AT, before.generation + 1)

    # The store still has the old pair: its write failed (database is locked).
    assert rig.stored().refresh_token == OLD_RT
    assert rig.kinds == ["unsaved"] and "locked" in str(rig.events[0].error)
    # Calls keep working, from memory, with no second refresh.
    for _ in range(3):
        assert await rig.chains.access_token(rig.account) == (NEW_AT, before.generation + 1)
    assert rig.chains.refreshes == 1

    # Sealed beside the database: no token in it, and it opens to the new pair.
    path = rig.recovery.path("prod")
    assert path.parent == Path(rig.settings.db).parent and path.exists()
    assert path.stat().st_mode & 0o777 == 0o600
    raw = path.read_bytes()
    for secret in (NEW_AT, NEW_RT, OLD_AT, OLD_RT):
        assert secret.encode() not in raw
    kept = rig.recovery.read("prod")
    assert kept is not None and kept.pair.refresh_token == NEW_RT
    assert kept.base_generation == before.generation

    # The lock goes: the write-back stores the pair and removes the file.
    await asyncio.sleep(3 * BUSY_TIMEOUT)  # a few more refused write-backs meanwhile
    assert path.exists()
    rig.unlock()
    await eventually(lambda: rig.stored().refresh_token == NEW_RT, "the write-back")
    await eventually(lambda: not path.exists(), "the recovery file to go")
    chain = rig.store.get_chain("prod")
    assert chain is not None and chain.generation == before.generation + 1
    assert chain.state == "ok" and chain.in_flight is None
    assert await rig.chains.access_token(rig.account) == (NEW_AT, before.generation + 1)
    await eventually(lambda: rig.kinds == ["unsaved", "recovered"], "the recovered alert")


async def test_drain_writes_back_or_leaves_the_file(rig: Rig) -> None:
    rig.lock_on_answer = True
    await rig.chains.access_token(rig.account)
    await rig.chains.drain(1.0)  # still locked: the file stays for the next start
    assert rig.recovery.path("prod").exists() and rig.stored().refresh_token == OLD_RT
    rig.unlock()
    await rig.chains.drain(1.0)
    assert not rig.recovery.path("prod").exists() and rig.stored().refresh_token == NEW_RT


async def test_startup_applies_only_a_newer_recovery_file(rig: Rig) -> None:
    before = rig.store.get_chain("prod")
    assert before is not None
    now = time.time()
    rig.recovery.write(
        RecoveredPair("prod", TokenPair(NEW_AT, NEW_RT, now + 86400), before.generation, now)
    )
    assert rig.chains.adopt_recovered() == ["prod"]
    assert rig.stored().refresh_token == NEW_RT and not rig.recovery.path("prod").exists()

    # A file for a generation the store has passed is stale: removed, never applied.
    stale = TokenPair("AT-stale", "RT-stale", now + 86400)
    rig.recovery.write(RecoveredPair("prod", stale, before.generation, now))
    assert rig.chains.adopt_recovered() == []
    assert rig.stored().refresh_token == NEW_RT and not rig.recovery.path("prod").exists()


async def test_the_recovery_directory_is_a_setting(settings: Settings, tmp_path: Path) -> None:
    box = SecretBox(load_master_key(settings))
    assert recovery_files(settings, box).directory == Path(settings.db).parent
    elsewhere = Settings.from_env({"SHIM_RECOVERY_DIR": str(tmp_path / "kept")}, db=settings.db)
    files = recovery_files(elsewhere, box)
    now = time.time()
    files.write(RecoveredPair("prod", TokenPair(NEW_AT, NEW_RT, now), 3, now))
    assert files.path("prod").parent == tmp_path / "kept" and files.accounts() == ["prod"]
    # Bound to the account: a file renamed to another account's name does not open.
    files.path("prod").rename(files.path("other"))
    with pytest.raises(Exception, match="does not open"):
        files.read("other")


async def test_a_later_refresh_replaces_the_pair_kept_aside(rig: Rig) -> None:
    """The store is back and the next refresh stores a newer pair before the write-back ran:
    the newer pair wins, in memory and on disk."""
    hold_write_backs(rig)
    rig.lock_on_answer = True
    kept, generation = await rig.chains.access_token(rig.account)
    assert kept == NEW_AT and rig.recovery.path("prod").exists()
    rig.lock_on_answer = False
    rig.unlock()
    fresh = await rig.chains.refresh(rig.account, seen_generation=generation, reason="forced")
    assert fresh.refresh_token == NEW_RT + "-2"
    assert await rig.chains.access_token(rig.account) == (NEW_AT + "-2", fresh.generation)
    assert rig.chains.refreshes == 2 and rig.stored().refresh_token == NEW_RT + "-2"
    assert not rig.recovery.path("prod").exists()


async def test_a_second_refused_pair_follows_the_stored_chain_not_the_one_kept_aside(
    rig: Rig,
) -> None:
    """The store takes the journal but refuses the new pair twice running (it flaps): the
    second pair, kept aside on top of the first, must still apply to the stored chain, by
    the write-back and after a restart alike. (It used to name the unsaved generation as the
    one it follows, so the store, still at the older one, judged it stale and dropped it.)"""
    before = rig.store.get_chain("prod")
    assert before is not None
    hold_write_backs(rig)
    rig.lock_on_answer = True
    _, generation = await rig.chains.access_token(rig.account)
    rig.unlock()  # the journal of the next refresh gets in; its pair does not
    second = await rig.chains.refresh(rig.account, seen_generation=generation, reason="forced")
    assert second.refresh_token == NEW_RT + "-2" and rig.stored().refresh_token == OLD_RT
    kept = rig.recovery.read("prod")
    assert kept is not None and kept.pair.refresh_token == NEW_RT + "-2"
    assert kept.base_generation == before.generation  # the stored one
    rig.unlock()

    # The process dies here; the next one applies the file before any refresh.
    upstream = Upstream(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    restarted = Chains(rig.store, upstream, rig.settings, recovery=rig.recovery)
    assert restarted.adopt_recovered() == ["prod"]
    assert rig.stored().refresh_token == NEW_RT + "-2"
    await upstream.aclose()


async def test_the_write_back_never_stores_a_pair_a_refresh_is_spending(rig: Rig) -> None:
    """A pair kept aside (P1) is being refreshed (Keap has spent P1's refresh token and
    issued P2) when the write-back's turn comes: storing P1 then would put a spent token in
    the store and fence P2 out. The write-back waits for the refresh, which stores P2."""
    hold_write_backs(rig)
    rig.lock_on_answer = True
    _, generation = await rig.chains.access_token(rig.account)  # P1, kept aside
    rig.lock_on_answer = False
    rig.unlock()
    write_ahead = rig.chains._write_ahead
    raced: list[asyncio.Task[None]] = []

    async def racing_write_ahead(kept: RecoveredPair) -> bool:
        written = await write_ahead(kept)
        rig.chains.sleep = lambda seconds: asyncio.sleep(0)  # the write-back's turn, now
        raced.append(asyncio.ensure_future(rig.chains._write_back("prod")))
        await asyncio.sleep(0.3)  # room for it to store P1, if nothing stops it
        return written

    rig.chains._write_ahead = racing_write_ahead  # type: ignore[method-assign]
    fresh = await rig.chains.refresh(rig.account, seen_generation=generation, reason="forced")
    await asyncio.wait_for(raced[0], 5)
    assert fresh.refresh_token == NEW_RT + "-2"
    assert rig.stored().refresh_token == NEW_RT + "-2"  # P2, never the spent P1
    assert not rig.recovery.path("prod").exists()
    assert await rig.chains.access_token(rig.account) == (NEW_AT + "-2", fresh.generation)


async def test_a_recovery_file_another_process_rewrote_is_left_alone(rig: Rig) -> None:
    """Removing a recovery file after storing its pair checks it still holds that pair: a
    process sharing the directory may have written a newer one ahead of its store write."""
    now = time.time()
    mine = TokenPair("AT-mine", "RT-mine", now + 60)
    theirs = TokenPair("AT-theirs", "RT-theirs", now + 60)
    rig.recovery.write(RecoveredPair("prod", theirs, 7, now))
    assert not rig.recovery.discard("prod", mine)
    kept = rig.recovery.read("prod")
    assert kept is not None and kept.pair.refresh_token == "RT-theirs"
    assert rig.recovery.discard("prod", mine, theirs) and not rig.recovery.path("prod").exists()


async def test_a_pair_stored_by_another_process_meanwhile_is_followed_not_kept(rig: Rig) -> None:
    """Another process stored the pair kept aside here (P1, from its recovery file) while
    this one refreshed from it: this refresh's P2 is fenced out of P1's old generation, but
    P1's refresh token is spent, so P2 goes in after P1 rather than being dropped."""
    before = rig.store.get_chain("prod")
    assert before is not None
    hold_write_backs(rig)
    rig.lock_on_answer = True
    _, generation = await rig.chains.access_token(rig.account)  # P1, kept aside
    rig.lock_on_answer = False
    rig.unlock()
    write_ahead = rig.chains._write_ahead

    async def another_process_stores_p1(kept: RecoveredPair) -> bool:
        now = time.time()
        p1 = TokenPair(NEW_AT, NEW_RT, now + 86400)
        rig.store.put_tokens("prod", p1, now, generation=before.generation)
        return await write_ahead(kept)

    rig.chains._write_ahead = another_process_stores_p1  # type: ignore[method-assign]
    fresh = await rig.chains.refresh(rig.account, seen_generation=generation, reason="forced")
    assert fresh.refresh_token == NEW_RT + "-2" == rig.stored().refresh_token
    assert fresh.generation == before.generation + 2
