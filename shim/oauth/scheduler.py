"""The background refresher inside ``shim serve``: one active across all processes and hosts.

Every process runs the loop, but only the holder of the ``scheduler`` lease does the work; the
lease outlives a few ticks, so when its holder dies another process takes over. Each refresh
still goes through ``Chains.refresh`` (its own lease and journal), so a scheduled refresh and a
call that needs one can never both spend the same refresh token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shim.errors import ChainError
from shim.oauth.chains import Chains
from shim.oauth.token_policy import is_due

log = logging.getLogger("shim.oauth.scheduler")

LEASE = "scheduler"


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
        self.ttl = max(3 * interval, 5.0)

    async def tick(self) -> list[str]:
        """Refresh every chain that is due (ahead of expiry, or idle too long)."""
        settings = self.chains.settings
        if not self.store.acquire_lease(LEASE, self.chains.owner, self.ttl, self.chains.clock()):
            return []
        refreshed = []
        for account in self.store.list_accounts():
            if account.kind != "oauth":
                continue
            chain = self.store.get_chain(account.name)
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
            self.store.release_lease(LEASE, self.chains.owner)
