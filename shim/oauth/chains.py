"""The token life of each account: single-flight refresh, lock, fencing, journal, recovery.

Keap refresh tokens are single-use. Two refreshes of one chain kill it, and a rotated token
that is not written down is lost. So every refresh, wherever it starts (a call that finds the
token about to expire, a 401 from Keap, the background scheduler, ``shim refresh``, recovery
after a crash) goes through ``Chains.refresh``:

1. one asyncio lock per account in this process, so concurrent callers share one refresh;
2. a lock in the store (``refresh_lock(account)``), so only one process or host refreshes a
   chain at a time; callers that lose wait (bounded) for the winner's result by watching the
   chain's generation. The lock dies with its holder (no TTL), so a killed host blocks nobody;
3. after taking the lock the chain is read again: somebody may have refreshed meanwhile;
4. a journal row ("refresh in flight": which token, by whom, when) is written durably before the
   token endpoint is called; the new pair is sealed into its recovery file the moment it
   arrives (so a death before the store write leaves it for the next start) and stored
   durably before anything uses it;
5. every chain write is fenced on the generation the refresh started from, so a writer that
   lost its lock cannot overwrite a newer pair or kill a chain someone else rotated: the store
   refuses (``StaleTokenWrite``) and this process uses the stored chain. A "spent" answer
   kills the chain only if that fenced write goes through. Transient failures are retried with
   jittered backoff under the lock and never kill a chain;
6. a token grant once sent is never cancelled: Keap may already have spent the old token, so
   its answer must be read and kept. A caller cancelled meanwhile (shutdown) waits for the
   grant and its store write first; ``drain`` lets shutdown wait for every grant in flight;
7. a pair the store refuses (locked past its busy timeout, disk full, read-only) is never
   dropped: it is sealed into a recovery file (``shim.store.recovery``), served from memory,
   and written back with backoff until the store takes it. A recovery file left by a dead
   process is applied at startup and before any refresh of its chain.

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
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from shim import failpoints
from shim.errors import (
    NoTokens,
    ReauthorizationRequired,
    RefreshInProgress,
    SpentRefreshToken,
    StaleTokenWrite,
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
from shim.store.offloop import off_loop, peek_or_read
from shim.store.protocol import HeldLock, Store
from shim.store.recovery import RecoveredPair, RecoveryFiles

log = logging.getLogger("shim.oauth.chains")

#: How often a waiting caller looks at the store for another process's refresh result.
POLL_INTERVAL = 0.05
#: How long past its last token try a live owner's journal is waited for (its pair may be on
#: its way into the store: see ``_keep_aside``).
WRITE_BACK_GRACE = 60.0

T = TypeVar("T")


@dataclass(frozen=True)
class ChainEvent:
    """A change of a chain's health worth telling a human about."""

    account: str
    kind: str  # "degraded" | "dead" | "recovered" | "unsaved" (the store refused a new pair)
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
        recovery: RecoveryFiles | None = None,
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
        #: Where pairs the store refuses are kept (None: in memory only).
        self.recovery = recovery
        #: Token grants sent and not yet answered and kept: never cancelled (see ``drain``).
        self._grants: set[asyncio.Task[Any]] = set()
        #: Pairs Keap issued that the store has not taken yet, served from here meanwhile.
        self._unsaved: dict[str, Chain] = {}
        #: For each of them, the stored generation it follows (a pair kept aside on top of
        #: another one still follows the stored chain: the one between is spent).
        self._bases: dict[str, int] = {}
        self._writebacks: dict[str, asyncio.Task[None]] = {}

    # -- the hot path -------------------------------------------------------------------
    async def access_token(self, account: Account) -> tuple[str, int]:
        """A usable bearer token for ``account`` and the chain generation it belongs to."""
        chain = await self._current(account.name)
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

    async def _current(self, name: str) -> Chain:
        """The chain, decrypted only when its generation changed. A call with the chain cached
        costs one generation check, which the stores answer from memory (no thread hop); a
        generation they cannot answer at once, and a changed chain, are read off the loop."""
        unsaved = self._unsaved.get(name)
        if unsaved is not None:  # newer than the store's: its refresh token is spent
            return unsaved
        generation = await peek_or_read(
            self.store.peek_generation, self.store.chain_generation, name
        )
        if generation is None:
            raise NoTokens()
        chain = self._cache.get(name)
        if chain is None or chain.generation != generation or chain.state != "ok":
            loaded = await off_loop(self.store.get_chain, name)
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
            chain = await self._read(name)
            if self._settled(chain, seen_generation, reason):
                return chain
            deadline = self.clock() + self.settings.refresh_wait
            while True:
                held = await off_loop(self.store.try_lock, refresh_lock(name), self.owner)
                if held is not None:
                    try:
                        done = await self._refresh_locked(account, seen_generation, reason, held)
                    finally:
                        await off_loop(self._release, held)
                    if done is not None:
                        return done
                await self.sleep(POLL_INTERVAL)
                chain = await self._read(name)
                if self._settled(chain, seen_generation, reason):
                    return chain
                if self.clock() > deadline:
                    raise RefreshInProgress()

    def _stored_generation(self, chain: Chain) -> int:
        """The generation in the store that ``chain`` stands for: a pair kept aside (not in
        the store yet) follows the stored one, and fenced writes name the stored one."""
        unsaved = self._unsaved.get(chain.account)
        if unsaved is not None and unsaved.generation == chain.generation:
            return self._bases[chain.account]
        return chain.generation

    async def _foreign_refresh_alive(self, chain: Chain) -> bool:
        """A journal left by another process that is still connected to the store: it lost
        its lock (the database restarted under it) but may be about to store the new pair.
        Wait for it rather than spend a token it may have spent; a dead owner's journal is
        recovered at once, and a live owner's once it is older than the longest a refresh can
        take (the owner gave up on it). The age is the store's: another host's clock may be
        minutes off this one's."""
        journal = chain.in_flight
        if journal is None or journal.owner == self.owner:
            return False
        age = journal.age if journal.age is not None else self.clock() - journal.started_at
        if age > self._longest_refresh():
            return False
        return await off_loop(self.store.owner_alive, journal.owner)

    def _longest_refresh(self) -> float:
        """Every try at the token endpoint (each within its total deadline), the waits between
        them (a backoff up to ``retry_cap``, or a Retry-After up to ``refresh_wait``), and a
        grace for the pair to reach the store."""
        s = self.settings
        tries = s.refresh_retries + 1
        pause = max(s.retry_cap, s.refresh_wait)
        return tries * s.token_timeout + s.refresh_retries * pause + WRITE_BACK_GRACE

    async def _read(self, name: str) -> Chain:
        unsaved = self._unsaved.get(name)
        if unsaved is not None:
            return unsaved
        chain = await off_loop(self.store.get_chain, name)
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
        self, account: Account, seen_generation: int | None, reason: str, held: HeldLock
    ) -> Chain | None:
        """The refresh itself, under the lock; None when another live process's refresh is
        still under way (the caller waits on)."""
        name = account.name
        chain = await self._read(name)  # re-read after taking the lock
        # A pair another process could not store comes first.
        chain = await off_loop(self._adopt, chain)
        if self._settled(chain, seen_generation, reason):
            return chain
        if await self._foreign_refresh_alive(chain):
            return None
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
            await off_loop(
                self.store.begin_refresh,
                RefreshJournal(name, fingerprint(chain.refresh_token), self.owner, self.clock()),
                generation=self._stored_generation(chain),
            )
        except StaleTokenWrite:
            return await self._read(name)  # rotated between our read and the journal: use it
        failpoints.hit("after_journal")
        form = {"grant_type": "refresh_token", "refresh_token": chain.refresh_token}
        attempt = 0
        while True:
            try:
                fresh = await self._uncancelled(self._grant(account, form, chain, reason))
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
            self._observe(name, "ok")
            if chain.failures:
                await self._emit(ChainEvent(name, "recovered", None, self.clock()))
            return fresh

    # -- the grant and its answer: never cancelled, never dropped -------------------------
    async def _uncancelled(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` to its end even if the caller is cancelled meanwhile.

        A cancelled caller (shutdown cancelling the scheduler, or a call) waits for the grant's
        answer to be kept, then stops as asked. ``drain`` bounds the wait at shutdown.
        """
        task = asyncio.ensure_future(work)
        self._grants.add(task)
        task.add_done_callback(self._grants.discard)
        cancelled = False
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                if not cancelled:
                    log.warning("a refresh is in flight: finishing it before stopping")
                cancelled = True
        if cancelled:
            if not task.cancelled():
                task.exception()  # its outcome is kept (or journaled); the caller stops
            raise asyncio.CancelledError()
        return task.result()

    async def _grant(
        self, account: Account, form: dict[str, str], chain: Chain, reason: str
    ) -> Chain:
        """One token grant, and its answer kept before anything uses it."""
        assert account.client_id is not None and account.client_secret is not None
        pair = await self.upstream.token_grant(
            account.token_url, form, self.clock(), basic=(account.client_id, account.client_secret)
        )
        # Durable before anything uses it: the old refresh token is already spent.
        failpoints.hit("after_answer")
        fresh = await self._keep(chain, pair)
        self.refreshes += 1
        log.info(
            "account %s: refreshed (%s), generation %d", chain.account, reason, fresh.generation
        )
        return fresh

    async def _keep(self, chain: Chain, pair: TokenPair) -> Chain:
        """Store a pair Keap issued; if the store refuses, keep it aside (never drop it).

        The pair is sealed into its recovery file first (one small fsynced write per refresh,
        about once a day per account), so a process killed before the store commits, which
        under a busy store can be seconds, leaves the pair for the next start to apply
        (``adopt_recovered``): only the instant between Keap's answer and that write is
        left where a death loses the chain."""
        name, now = chain.account, self.clock()
        base = self._stored_generation(chain)
        ahead = await self._write_ahead(RecoveredPair(name, pair, base, now))
        failpoints.hit(failpoints.AFTER_WRITE_AHEAD)
        try:
            fresh = await self._put_following(chain, pair, now, base)
        except StaleTokenWrite as exc:
            # Fenced: the chain moved on while we refreshed (we lost the lock, or a human
            # imported a pair). Our pair is never written over the newer one.
            self._observe(name, "fenced")
            log.error("account %s: %s; using the stored chain", name, exc.message)
            await self._discard_kept(name, pair, ahead)
            latest = await off_loop(self.store.get_chain, name)
            if latest is None:
                raise NoTokens() from None
            self._cache[name] = latest
            return latest
        except Exception as exc:
            return await self._keep_aside(chain, pair, base, now, exc, written=ahead)
        failpoints.hit("after_store")
        self._cache[name] = fresh
        # Stored: the file (this pair's, or an older one kept aside, which is spent) goes.
        await self._discard_kept(name, pair, ahead)
        return fresh

    async def _put_following(self, chain: Chain, pair: TokenPair, now: float, base: int) -> Chain:
        """``put_tokens`` fenced on ``base``. Fenced because the store has since taken the
        very pair this refresh spent (another process stored a copy of it that was kept
        aside), the new pair is that one's only successor: it follows it instead of being
        dropped, which would leave a spent refresh token in the store."""
        name = chain.account
        try:
            return await off_loop(self.store.put_tokens, name, pair, now, generation=base)
        except StaleTokenWrite:
            latest = await off_loop(self.store.get_chain, name)
            if latest is None or latest.refresh_token != chain.refresh_token:
                raise
        log.warning(
            "account %s: the store took the pair this refresh spent (generation %d) meanwhile; "
            "storing its successor after it",
            name,
            latest.generation,
        )
        return await off_loop(self.store.put_tokens, name, pair, now, generation=latest.generation)

    async def _write_ahead(self, kept: RecoveredPair) -> bool:
        """Seal a new pair into its recovery file before the store write; False (and a
        warning: the store write is still tried) when there is no file or it fails."""
        if self.recovery is None:
            return False
        try:
            await off_loop(self.recovery.write, kept)
        except Exception as exc:
            log.warning("account %s: recovery file not written ahead (%s)", kept.account, exc)
            return False
        return True

    async def _discard_kept(self, name: str, pair: TokenPair, written: bool) -> None:
        """The store has ``pair`` or a newer one: forget what was kept aside, in memory and
        on disk (the file only if it still holds one of those pairs: another process may
        have written a newer one since)."""
        pairs = [pair]
        unsaved = self._unsaved.get(name)
        if unsaved is not None:
            pairs.append(TokenPair(unsaved.access_token, unsaved.refresh_token, unsaved.expires_at))
        if (self._forget_unsaved(name) or written) and self.recovery is not None:
            try:
                await off_loop(self.recovery.discard, name, *pairs)
            except Exception:  # a stale file is judged stale at the next start
                log.exception("account %s: the recovery file could not be removed", name)

    async def _keep_aside(
        self,
        chain: Chain,
        pair: TokenPair,
        base: int,
        now: float,
        exc: Exception,
        *,
        written: bool,
    ) -> Chain:
        """The store refused a new pair: recovery file (unless already ``written`` ahead),
        memory, alert, write back later."""
        name = chain.account
        unsaved = Chain(
            name,
            pair.access_token,
            pair.refresh_token,
            pair.expires_at,
            refresh_issued_at=now,
            generation=chain.generation + 1,
            last_refresh_at=now,
        )
        self._unsaved[name] = self._cache[name] = unsaved
        self._bases[name] = base
        where = "memory only"
        if self.recovery is not None and written:
            where = str(self.recovery.path(name))
        elif self.recovery is not None:
            try:
                where = str(self.recovery.write(RecoveredPair(name, pair, base, now)))
            except Exception:
                log.exception("account %s: the recovery file could not be written", name)
        failpoints.hit(failpoints.AFTER_RECOVERY_FILE)
        error = f"the store refused the new pair ({type(exc).__name__}: {exc})"
        log.error(
            "account %s: %s; serving it from memory, kept in %s until the store takes it",
            name,
            error,
            where,
        )
        await self._emit(ChainEvent(name, "unsaved", error, now))
        self._write_back_later(name)
        return unsaved

    def _write_back_later(self, name: str) -> None:
        running = self._writebacks.get(name)
        if running is None or running.done():
            self._writebacks[name] = asyncio.ensure_future(self._write_back(name))

    async def _write_back(self, name: str) -> None:
        """Retry the store write with backoff until the store takes the unsaved pair.

        Under the account's lock: a refresh from the unsaved pair spends its refresh token,
        and storing that pair behind the refresh's back would put a spent token in the store
        and fence out the newer pair."""
        attempt = 0
        while name in self._unsaved:
            wait = backoff(attempt, base=self.settings.retry_base, cap=self.settings.retry_cap)
            await self.sleep(wait)
            attempt += 1
            async with self._locks.setdefault(name, asyncio.Lock()):
                if name not in self._unsaved:
                    return  # a refresh stored a newer pair meanwhile
                try:
                    await off_loop(self._store_unsaved, name)
                except Exception as exc:
                    log.warning("account %s: store write %d failed again: %s", name, attempt, exc)
                    continue
            await self._emit(ChainEvent(name, "recovered", None, self.clock()))

    def _store_unsaved(self, name: str) -> bool:
        """One try to store the unsaved pair (raises what the store raises)."""
        unsaved = self._unsaved[name]
        pair = TokenPair(unsaved.access_token, unsaved.refresh_token, unsaved.expires_at)
        kept = RecoveredPair(name, pair, self._bases[name], unsaved.refresh_issued_at)
        self._apply(kept, self.store.get_chain(name))
        self._forget_unsaved(name)
        return True

    def _forget_unsaved(self, name: str) -> bool:
        """The store has the pair kept aside, or a newer one: stop serving it from memory."""
        self._bases.pop(name, None)
        return self._unsaved.pop(name, None) is not None

    def _adopt(self, chain: Chain) -> Chain:
        """Apply a recovery file for ``chain`` left by another (maybe dead) process."""
        if self.recovery is None or chain.account in self._unsaved:
            return chain
        try:
            kept = self.recovery.read(chain.account)
        except Exception:
            log.exception("account %s: recovery file unreadable (left in place)", chain.account)
            return chain
        if kept is None:
            return chain
        return self._apply(kept, chain)

    def _apply(self, kept: RecoveredPair, chain: Chain | None) -> Chain:
        """Store a kept pair if the stored chain is still the one it follows; then the
        recovery file goes. Raises what the store raises (the file stays)."""
        name = kept.account
        stale = chain is not None and chain.generation != kept.base_generation
        if not stale:
            try:  # fenced: the check above and the write are one step in the store
                fresh = self.store.put_tokens(
                    name, kept.pair, kept.issued_at, generation=kept.base_generation
                )
            except StaleTokenWrite:
                stale, chain = True, self.store.get_chain(name)
        if stale:
            assert chain is not None
            log.warning(
                "account %s: recovery file for generation %d is stale (store at %d); removed",
                name,
                kept.base_generation,
                chain.generation,
            )
            fresh = chain
        else:
            log.warning(
                "account %s: stored the pair kept in the recovery file, generation %d",
                name,
                fresh.generation,
            )
        self._cache[name] = fresh
        if self.recovery is not None:
            self.recovery.discard(name, kept.pair)
        return fresh

    def adopt_recovered(self) -> list[str]:
        """At startup, before any refresh: apply every recovery file (newer than the store)."""
        if self.recovery is None:
            return []
        applied = []
        for name in self.recovery.accounts():
            chain = self.store.get_chain(name)
            if chain is None or self.store.lock_holder(refresh_lock(name)) is not None:
                continue  # a live refresh's file, written ahead of its store write: its own
            try:
                if self._adopt(chain) is not chain:
                    applied.append(name)
            except Exception:
                log.exception("account %s: recovery file not applied yet", name)
        return applied

    async def drain(self, timeout: float) -> None:
        """Shutdown: wait (up to ``timeout``) for every token grant in flight and its store
        write; then one last try to store pairs the store refused. A pair the store still
        refuses stays in its recovery file for the next start."""
        if self._grants:
            log.warning(
                "waiting up to %gs for %d refresh(es) in flight", timeout, len(self._grants)
            )
            _, pending = await asyncio.wait(set(self._grants), timeout=timeout)
            if pending:
                log.error("%d refresh(es) still unanswered at the end of the grace", len(pending))
        for task in self._writebacks.values():
            task.cancel()
        await asyncio.gather(*self._writebacks.values(), return_exceptions=True)
        self._writebacks.clear()
        for name in list(self._unsaved):
            try:
                await off_loop(self._store_unsaved, name)
            except Exception as exc:
                log.error("account %s: the store still refuses the new pair (%s)", name, exc)

    def _release(self, held: HeldLock) -> None:
        """Release the refresh lock; if that fails the lock goes with its connection (the
        refresh's outcome, maybe a pair kept aside, matters more than an early release)."""
        try:
            held.release()
        except Exception as exc:
            log.warning("%s: lock not released (%s); it goes with its connection", held.name, exc)

    async def _spent(self, chain: Chain, exc: SpentRefreshToken) -> Chain:
        """Keap says the token is spent: believe it only if nobody else has rotated it (the
        fenced write of the failure is refused if somebody has)."""
        try:
            await self._failed(chain, exc, dead=True)
        except StaleTokenWrite:
            latest = await off_loop(self.store.get_chain, chain.account)
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
            updated = await off_loop(
                self.store.end_refresh_failed,
                chain.account,
                exc.message,
                now,
                dead=dead,
                generation=self._stored_generation(chain),
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
            chain = await off_loop(self.store.get_chain, account.name)
            if chain is None or chain.in_flight is None or chain.state != "ok":
                continue
            if await off_loop(self.store.lock_holder, refresh_lock(account.name)) is not None:
                continue  # a live process is refreshing it right now
            try:
                await self.refresh(account, seen_generation=chain.generation, reason="recovery")
                recovered.append(account.name)
            except (TokenEndpointError, ReauthorizationRequired, RefreshInProgress) as exc:
                log.error("account %s: recovery failed: %s", account.name, exc)
        return recovered
