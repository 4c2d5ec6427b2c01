"""Loud alerts when a chain becomes degraded, dies, or recovers.

Always logged at ERROR; also POSTed as JSON to ``SHIM_ALERT_WEBHOOK`` when set, with retries,
in the background so an unreachable webhook never slows a refresh or a call.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from shim.errors import UpstreamError
from shim.oauth.chains import ChainEvent
from shim.store.offloop import off_loop

log = logging.getLogger("shim.oauth.alerts")

PostJson = Callable[[str, object], Awaitable[int]]
#: Where alerts are kept for the admin page (``Store.record_alert``): at, account, event, error.
Keep = Callable[[float, str, str, str | None], None]


class Alerter:
    """The ``on_event`` sink of ``Chains``."""

    def __init__(
        self,
        webhook: str,
        post_json: PostJson,
        *,
        retries: int = 4,
        backoff: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        keep: Keep | None = None,
    ) -> None:
        self.webhook = webhook
        self.keep = keep
        self.post_json = post_json
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, event: ChainEvent) -> None:
        payload = {
            "source": "keyshim",
            "host": socket.gethostname(),
            "account": event.account,
            "event": event.kind,
            "error": event.error,
            "at": event.at,
            "action": _action(event.kind),
        }
        level = logging.WARNING if event.kind == "recovered" else logging.ERROR
        log.log(level, "chain %s: %s", event.account, event.kind, extra={"shim": payload})
        if self.keep is not None:
            try:
                await off_loop(self.keep, event.at, event.account, event.kind, event.error)
            except Exception:  # the store may be down; the log line above still tells
                log.exception("could not keep the alert for the admin page")
        if self.webhook:
            task = asyncio.create_task(self._deliver(payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, payload: dict[str, Any]) -> None:
        for attempt in range(self.retries + 1):
            try:
                status = await self.post_json(self.webhook, payload)
            except UpstreamError as exc:
                status, reason = 0, exc.message
            else:
                reason = f"HTTP {status}"
                if status < 300:
                    log.info(
                        "alert delivered: chain %s: %s (%s)",
                        payload["account"],
                        payload["event"],
                        reason,
                        extra={"shim": payload},
                    )
                    return
            if attempt < self.retries:
                await self.sleep(self.backoff * (2**attempt))
        log.error("alert webhook gave up after %d tries: %s", self.retries + 1, reason)

    async def drain(self) -> None:
        """Wait for deliveries in flight (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _action(kind: str) -> str:
    if kind == "dead":
        return "Re-authorize: shim account authorize ACCOUNT"
    if kind == "unsaved":
        return (
            "keyshim serves the new pair from memory and keeps it sealed in a recovery file "
            "beside the store; free the store (locks, disk space, permissions) and it is "
            "written back"
        )
    if kind == "degraded":
        return "keyshim keeps retrying; check the Keap token endpoint and the client secret"
    return "none"
