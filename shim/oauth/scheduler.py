"""The background refresher inside ``shim serve``: one active across all processes and hosts.

Every process runs the loop, but only the holder of the ``scheduler`` lock does the work. The
holder keeps the lock for as long as it runs; when it dies the lock is freed at once (no TTL)
and another process takes over on its next tick. Each refresh still goes through
``Chains.refresh`` (its own lock, fencing and journal), so a scheduled refresh and a call that
needs one can never both spend the same refresh token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shim.errors import ChainError
from shim.oauth.chains import Chains
from shim.oauth.token_policy import is_due
from shim.store.offloop import off_loop
from shim.store.protocol import HeldLock

log = logging.getLogger("shim.oauth.scheduler")

LOCK = "scheduler"


class Scheduler:
    def __init__(
        self,
        chains: Chains,
        *,
        interval: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.chains = chains
        self.store = chains.store
        self.interval = interval
        self.sleep = sleep
        self._held: HeldLock | None = None

    def _hold(self) -> bool:
        """Whether this process is the active scheduler (taking the lock if it is free)."""
        if self._held is not None and not self._held.held():
            self._held.release()
            self._held = None  # lost (database restarted): compete for it again
        if self._held is None:
            self._held = self.store.try_lock(LOCK, self.chains.owner)
        return self._held is not None

    def release(self) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None

    async def tick(self) -> list[str]:
        """Refresh every chain that is due (ahead of expiry, or idle too long)."""
        settings = self.chains.settings
        if not await off_loop(self._hold):
            return []
        refreshed = []
        for account in await off_loop(self.store.list_accounts):
            if account.kind != "oauth":
                continue
            chain = await off_loop(self.store.get_chain, account.name)
            if chain is None or chain.state != "ok":
                continue
            reason = is_due(
                chain, self.chains.clock(), settings.refresh_margin, settings.keepalive_age
            )
            if reason is None and chain.in_flight is None:
                continue
            try:
                await self.chains.refresh(account, seen_generation=None, reason="scheduled")
                refreshed.append(account.name)
            except ChainError as exc:
                log.error("scheduled refresh of %s failed: %s", account.name, exc.message)
        return refreshed

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except Exception:  # the loop must outlive any one bad tick
                    log.exception("scheduler tick failed")
                await self.sleep(self.interval)
        finally:
            self.release()
