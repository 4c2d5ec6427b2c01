"""The token life of each account: single-flight refresh, lock, fencing, journal, recovery.

Keap refresh tokens are single-use. Two refreshes of one chain kill it, and a rotated token
that is not written down is lost. So every refresh, wherever it starts (a call that finds the
token about to expire, a 401 from Keap, the background scheduler, ``shim refresh``, recovery
after a crash) goes through ``Chains.refresh``:

1. one asyncio lock per account in this process, so concurrent callers share one refresh;
2. a lock in the store (``refresh_lock(account)``), so only one process or host refreshes a chain
   at a time; callers that lose wait (bounded) for the winner's result by watching the chain's
   generation. The lock dies with its holder (no TTL), so a killed host blocks nobody;
3. after taking the lock the chain is read again: somebody may have refreshed meanwhile;
4. a journal row ("refresh in flight": which token, by whom, when) is written durably before the
   token endpoint is called, and the new pair is stored durably the moment it arrives, before
   anything uses it; if the store is unreachable right then, storing is retried (the old
   refresh token is already spent);
5. every chain write is fenced on the generation the refresh started from, so a writer that
   lost its lock cannot overwrite a newer pair or kill a chain someone else rotated: the store
   refuses (``StaleTokenWrite``) and this process uses the stored chain;
6. a "spent" answer is only believed if the fenced write of the failure goes through (nobody
   rotated the chain meanwhile); only then is the chain marked ``needs_reauth``. Transient
   failures are retried with jittered backoff under the lock and never kill a chain.

No store transaction is ever open across the network call: each store method is its own short
transaction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shim import failpoints
from shim.errors import (
    NoTokens,
    ReauthorizationRequired,
    RefreshInProgress,
    SpentRefreshToken,
    StaleTokenWrite,
    StoreUnavailable,
    TokenEndpointError,
    TransientTokenError,
)
from shim.keap.client import Upstream
from shim.models import Account, Chain, RefreshJournal, TokenPair
from shim.oauth.token_policy import (
    backoff,
    fingerprint,
    is_due,
    needs_inline_refresh,
    refresh_lock,
)
from shim.settings import Settings
from shim.store.protocol import HeldLock, Store

log = logging.getLogger("shim.oauth.chains")

#: How often a waiting caller looks at the store for another process's refresh result.
POLL_INTERVAL = 0.05
#: How often a new pair that could not be stored (database unreachable) is tried again.
STORE_RETRY = 0.25


@dataclass(frozen=True)
class ChainEvent:
    """A change of a chain's health worth telling a human about."""

    account: str
    kind: str  # "degraded" | "dead" | "recovered"
    error: str | None
    at: float


EventSink = Callable[[ChainEvent], Awaitable[None]]


def make_owner() -> str:
    """An owner id unique to this process and instance: host, pid, random."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Chains:
    """Hands out fresh access tokens and owns every refresh of this process."""

    def __init__(
        self,
        store: Store,
        upstream: Upstream,
        settings: Settings,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_event: EventSink | None = None,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.settings = settings
        self.owner = owner or make_owner()
        self.clock = clock
        self.sleep = sleep
        self.on_event = on_event
        self.refreshes = 0  # token-endpoint refreshes this instance completed
        #: Told the outcome of every refresh attempt (metrics): ok, raced, spent, transient, error.
        self.observer: Callable[[str, str], None] | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._cache: dict[str, Chain] = {}

    # -- the hot path -------------------------------------------------------------------
    async def access_token(self, account: Account) -> tuple[str, int]:
        """A usable bearer token for ``account`` and the chain generation it belongs to."""
        chain = self._current(account.name)
        now = self.clock()
        if not needs_inline_refresh(chain, now, self.settings.inline_margin):
            return chain.access_token, chain.generation
        try:
            chain = await self.refresh(account, seen_generation=chain.generation, reason="inline")
        except (TokenEndpointError, RefreshInProgress):
            # A refresh ahead of expiry failed, but the old token still works: use it.
            if chain.expires_at - self.clock() > 1.0:
                return chain.access_token, chain.generation
            raise
        return chain.access_token, chain.generation

    def _current(self, name: str) -> Chain:
        """The chain, decrypted only when its generation changed (one cheap read a call)."""
        generation = self.store.chain_generation(name)
        if generation is None:
            raise NoTokens()
        chain = self._cache.get(name)
        if chain is None or chain.generation != generation or chain.state != "ok":
            loaded = self.store.get_chain(name)
            if loaded is None:
                raise NoTokens()
            chain = self._cache[name] = loaded
        if chain.state != "ok":
            raise ReauthorizationRequired()
        return chain

    # -- refresh ------------------------------------------------------------------------
    async def refresh(self, account: Account, *, seen_generation: int | None, reason: str) -> Chain:
        """Make sure the chain is newer than ``seen_generation``; refresh at most once.

        ``seen_generation`` is the generation the caller found wanting (None: refresh only
        if the scheduler's policy says it is due). Returns the chain to use.
        """
        name = account.name
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            chain = self._read(name)
            if self._settled(chain, seen_generation, reason):
                return chain
            deadline = self.clock() + self.settings.refresh_wait
            while True:
                held = self.store.try_lock(refresh_lock(name), self.owner)
                if held is not None:
                    try:
                        chain = self._read(name)  # re-read under the lock
                        if self._settled(chain, seen_generation, reason):
                            return chain
                        if not self._foreign_refresh_alive(chain):
                            return await self._refresh_locked(account, chain, reason, held)
                    finally:
                        held.release()
                await self.sleep(POLL_INTERVAL)
                chain = self._read(name)
                if self._settled(chain, seen_generation, reason):
                    return chain
                if self.clock() > deadline:
                    raise RefreshInProgress()

    def _foreign_refresh_alive(self, chain: Chain) -> bool:
        """A journal left by another process that is still connected to the store: it lost
        its lock (the database restarted under it) but may be about to store the new pair.
        Wait for it rather than spend a token it may have spent; a dead owner's journal is
        recovered at once, and a live owner's once it is older than the longest a refresh can
        take (the owner gave up on it)."""
        journal = chain.in_flight
        if journal is None or journal.owner == self.owner:
            return False
        if self.clock() - journal.started_at > self._longest_refresh():
            return False
        return self.store.owner_alive(journal.owner)

    def _longest_refresh(self) -> float:
        """Every try at the token endpoint, the waits between them, and storing the pair."""
        s = self.settings
        tries = s.refresh_retries + 1
        return tries * s.token_timeout + s.refresh_retries * s.retry_cap + s.store_wait

    def _read(self, name: str) -> Chain:
        chain = self.store.get_chain(name)
        if chain is None:
            raise NoTokens()
        self._cache[name] = chain
        if chain.state != "ok":
            raise ReauthorizationRequired()
        return chain

    def _settled(self, chain: Chain, seen_generation: int | None, reason: str) -> bool:
        """True when no refresh is needed any more (someone else did it, or it is not due)."""
        now = self.clock()
        if seen_generation is None:
            due = is_due(chain, now, self.settings.refresh_margin, self.settings.keepalive_age)
            return reason != "forced" and due is None and chain.in_flight is None
        if chain.generation == seen_generation:
            return False
        # Somebody refreshed since the caller looked. After a 401 any newer token will do;
        # otherwise it must also be outside the inline margin.
        return reason == "401" or not needs_inline_refresh(chain, now, self.settings.inline_margin)

    async def _refresh_locked(
        self, account: Account, chain: Chain, reason: str, held: HeldLock
    ) -> Chain:
        name = account.name
        if chain.in_flight is not None:
            log.warning(
                "account %s: found an unfinished refresh by %s at %.0f; recovering with the "
                "stored refresh token",
                name,
                chain.in_flight.owner,
                chain.in_flight.started_at,
            )
        assert account.client_id is not None and account.client_secret is not None
        failpoints.hit("before_journal")
        try:
            self.store.begin_refresh(
                RefreshJournal(name, fingerprint(chain.refresh_token), self.owner, self.clock()),
                generation=chain.generation,
            )
        except StaleTokenWrite:
            return self._read(name)  # rotated between our read and the journal: use it
        failpoints.hit("after_journal")
        form = {"grant_type": "refresh_token", "refresh_token": chain.refresh_token}
        attempt = 0
        while True:
            try:
                pair = await self.upstream.token_grant(
                    account.token_url,
                    form,
                    self.clock(),
                    basic=(account.client_id, account.client_secret),
                )
            except SpentRefreshToken as exc:
                return await self._spent(chain, exc)
            except TransientTokenError as exc:
                wait = exc.retry_after
                if wait is None:
                    wait = backoff(
                        attempt, base=self.settings.retry_base, cap=self.settings.retry_cap
                    )
                if attempt >= self.settings.refresh_retries or wait > self.settings.refresh_wait:
                    await self._failed(chain, exc, dead=False)
                    raise
                if not held.held():
                    # The lock is gone (its connection died): someone else may hold the chain
                    # now. Leave its journal and health alone.
                    log.warning("account %s: lost the refresh lock; giving up this refresh", name)
                    raise
                attempt += 1
                log.warning(
                    "account %s: token endpoint: %s; retry %d in %.2fs",
                    name,
                    exc.message,
                    attempt,
                    wait,
                )
                await self.sleep(wait)
                continue
            except TokenEndpointError as exc:
                await self._failed(chain, exc, dead=False)
                raise
            # Durable before anything uses it: the old refresh token is already spent.
            failpoints.hit("after_answer")
            try:
                fresh = await self._store_pair(name, pair, chain.generation)
            except StaleTokenWrite as exc:
                # Fenced: the chain moved on while we refreshed (we lost the lock, or a human
                # imported a pair). Our pair is never written over the newer one.
                self._observe(name, "fenced")
                log.error("account %s: %s; using the stored chain", name, exc.message)
                return self._read(name)
            failpoints.hit("after_store")
            self._observe(name, "ok")
            self._cache[name] = fresh
            self.refreshes += 1
            log.info("account %s: refreshed (%s), generation %d", name, reason, fresh.generation)
            if chain.failures:
                await self._emit(ChainEvent(name, "recovered", None, self.clock()))
            return fresh

    async def _store_pair(self, name: str, pair: TokenPair, generation: int) -> Chain:
        """Store a new pair, fenced; while the database is unreachable keep trying for
        ``store_wait``: the refresh token it replaces is spent, so this pair must land."""
        deadline = self.clock() + self.settings.store_wait
        while True:
            try:
                return self.store.put_tokens(name, pair, self.clock(), generation=generation)
            except StoreUnavailable:
                if self.clock() > deadline:
                    log.critical(
                        "account %s: could not store the new token pair for %.0fs; the chain "
                        "will need re-authorization",
                        name,
                        self.settings.store_wait,
                    )
                    raise
                log.warning("account %s: database unreachable; retrying the token write", name)
                await self.sleep(STORE_RETRY)

    async def _spent(self, chain: Chain, exc: SpentRefreshToken) -> Chain:
        """Keap says the token is spent: believe it only if nobody else has rotated it (the
        fenced write of the failure is refused if somebody has)."""
        try:
            await self._failed(chain, exc, dead=True)
        except StaleTokenWrite:
            latest = self.store.get_chain(chain.account)
            assert latest is not None
            self._observe(chain.account, "raced")
            log.info("account %s: refresh lost a race, using the winner's tokens", chain.account)
            self._cache[chain.account] = latest
            if latest.state != "ok":
                raise ReauthorizationRequired() from exc
            return latest
        raise ReauthorizationRequired(
            f"The Keap connection for account {chain.account!r} needs re-authorization "
            "(shim account authorize)"
        ) from exc

    async def _failed(self, chain: Chain, exc: TokenEndpointError, *, dead: bool) -> None:
        now = self.clock()
        try:
            updated = self.store.end_refresh_failed(
                chain.account, exc.message, now, dead=dead, generation=chain.generation
            )
        except StaleTokenWrite:
            if dead:
                raise
            return  # a newer pair is stored: this failure no longer says anything
        self._cache[chain.account] = updated
        kind = "dead" if dead else "degraded"
        self._observe(
            chain.account,
            "spent" if dead else "transient" if isinstance(exc, TransientTokenError) else "error",
        )
        log.error("account %s: refresh failed (%s): %s", chain.account, kind, exc.message)
        if dead or chain.failures == 0:
            await self._emit(ChainEvent(chain.account, kind, exc.message, now))

    def _observe(self, account: str, outcome: str) -> None:
        if self.observer is not None:
            self.observer(account, outcome)

    async def _emit(self, event: ChainEvent) -> None:
        if self.on_event is None:
            return
        try:
            await self.on_event(event)
        except Exception:  # an alert failure must never break a refresh
            log.exception("alert for account %s failed", event.account)

    # -- maintenance --------------------------------------------------------------------
    async def recover(self, accounts: list[Account]) -> list[str]:
        """After a start: finish refreshes that a dead process left in the journal."""
        recovered = []
        for account in accounts:
            if account.kind != "oauth":
                continue
            chain = self.store.get_chain(account.name)
            if chain is None or chain.in_flight is None or chain.state != "ok":
                continue
            if self.store.lock_holder(refresh_lock(account.name)) is not None:
                continue  # a live process is refreshing it right now
            try:
                await self.refresh(account, seen_generation=chain.generation, reason="recovery")
                recovered.append(account.name)
            except (TokenEndpointError, ReauthorizationRequired, RefreshInProgress) as exc:
                log.error("account %s: recovery failed: %s", account.name, exc)
        return recovered
