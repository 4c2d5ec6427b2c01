"""The ASGI application: lifespan and routes. One XML-RPC endpoint in front of Keap, REST
requests passed through (rest_passthrough.py), health and metrics.

Raw ASGI on purpose: the hot path is small (read the body, parse, check the key, splice in a
placeholder, stream Keap's answer back) and every layer added here is paid on every call. One
call's life is in call.py, the per-process objects in services.py, the ASGI plumbing in asgi.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from shim import __version__
from shim.oauth.health import Health, account_healths
from shim.oauth.scheduler import Scheduler
from shim.serve.admin.app import AdminApp
from shim.serve.asgi import Receive, Scope, Send, plain
from shim.serve.call import Calls
from shim.serve.metrics import CONTENT_TYPE as METRICS_TYPE
from shim.serve.rest_passthrough import RestPassthrough, is_rest_path
from shim.serve.services import Services, ServicesFactory
from shim.settings import Settings
from shim.store.copy import SERVING
from shim.store.offloop import Lane
from shim.store.protocol import HeldLock

__all__ = ["XMLRPC_PATHS", "KeyshimApp", "Services", "ServicesFactory"]

XMLRPC_PATHS = frozenset({"/api/xmlrpc", "/api/xmlrpc/", "/api/xmlrpc/v1"})

log = logging.getLogger("shim.serve.app")
Handler = Callable[[Services, Scope, Receive, Send], Coroutine[Any, Any, None]]


#: How long /healthz and /metrics wait for the store before answering without it.
HEALTH_DEADLINE = 2.0


class KeyshimApp:
    """ASGI callable. ``factory`` builds Services (tests inject transports and stores)."""

    def __init__(
        self, settings: Settings, factory: ServicesFactory, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self._factory = factory
        self.clock = clock
        self.services: Services | None = None
        self._calls = Calls(settings, clock)
        self._rest = RestPassthrough(settings, clock, self._calls)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serving: HeldLock | None = None
        # Health reads for /healthz and /metrics: one thread of their own, one read at a time
        # shared by concurrent probes, so a monitor polling a stuck store neither stalls the
        # loop nor takes the threads refreshes need.
        self._health_lane: Lane | None = None
        self._health_read: asyncio.Future[list[Health]] | None = None
        self._last_healths: list[Health] = []
        on_this_port = settings.admin and not settings.admin_port
        self.admin = AdminApp(settings, self.startup, clock) if on_this_port else None

    # -- lifecycle ----------------------------------------------------------------------
    async def startup(self) -> Services:
        if self.services is None:
            services = self.services = self._factory(self.settings)
            # Held shared while this server runs: `shim store copy` refuses a busy source.
            self._serving = services.store.try_lock(SERVING, services.chains.owner, shared=True)
            # A pair a dead process kept aside goes to the store before anything refreshes.
            services.chains.adopt_recovered()
            self._spawn(services.chains.recover(services.store.list_accounts()))
            self._spawn(services.audit.run())
            if self.settings.scheduler_interval > 0:
                scheduler = Scheduler(services.chains, interval=self.settings.scheduler_interval)
                self._spawn(scheduler.run())
        return self.services

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        if self.services is None:
            return
        # A refresh in flight is not cancelled with its task: the task waits for the grant's
        # answer to be stored (chains.Chains._uncancelled), bounded by the grace period.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)
        await self.services.chains.drain(max(0.0, deadline - loop.time()))
        await self.services.alerter.drain()
        self.services.audit.flush_now()
        self.services.rates.close()
        if self._health_lane is not None:
            self._health_lane.close()
            self._health_lane = None
        if self.admin is not None:
            self.admin.close()
        await self.services.upstream.aclose()
        if self._serving is not None:
            self._serving.release()
            self._serving = None
        self.services.store.close()
        self.services = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- routes -------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path in XMLRPC_PATHS:
            if scope["method"] != "POST":
                await plain(send, 405, b"XML-RPC endpoint: use POST\n", [(b"allow", b"POST")])
                return
            await self._xmlrpc(scope, receive, send)
        elif is_rest_path(path):
            await self._xmlrpc(scope, receive, send, self._rest.handle)
        elif self.admin is not None and (path == "/admin" or path.startswith("/admin/")):
            await self.admin(scope, receive, send)
        elif path == "/healthz" and scope["method"] in ("GET", "HEAD"):
            await self._healthz(send)
        elif path == "/metrics" and scope["method"] == "GET":
            services = await self.startup()
            healths = await self._healths(services)  # a late store: the last figures read
            body = services.metrics.render(self._last_healths if healths is None else healths)
            await plain(send, 200, body, [(b"content-type", METRICS_TYPE.encode())])
        else:
            # A script pointed at the wrong path (Keap's /crm/xmlrpc/v1, /xmlrpc, /) must learn
            # the right one from the answer, and the operator from the log.
            log.warning(
                "no such path %s %s; XML-RPC is at /api/xmlrpc", scope["method"], path[:200]
            )
            await plain(send, 404, b"not found: keyshim's XML-RPC endpoint is /api/xmlrpc\n")

    async def _xmlrpc(
        self, scope: Scope, receive: Receive, send: Send, handle: Handler | None = None
    ) -> None:
        """An XML-RPC call, or with ``handle`` a REST request passed through."""
        services = await self.startup()
        services.metrics.in_flight.inc()
        try:
            await (handle or self._calls.handle)(services, scope, receive, send)
        finally:
            services.metrics.in_flight.dec()

    async def _healths(self, services: Services) -> list[Health] | None:
        """Every account's health, read off the loop; None when the store does not answer
        within ``HEALTH_DEADLINE`` (or fails): the read goes on, and the next probe shares it."""
        if self._health_lane is None:
            self._health_lane = Lane("shim-health", 1)
        if self._health_read is None or self._health_read.done():
            self._health_read = self._health_lane.start(
                account_healths, services.store, self.clock()
            )
        try:
            healths = await asyncio.wait_for(asyncio.shield(self._health_read), HEALTH_DEADLINE)
        except TimeoutError:
            return None
        except Exception as exc:
            log.warning("health read failed: %s", exc)
            return None
        self._last_healths = healths
        return healths

    async def _healthz(self, send: Send) -> None:
        services = await self.startup()
        healths = await self._healths(services)
        usable = healths is not None and all(h.usable for h in healths)
        status = "ok" if usable else "unhealthy"
        if healths is None:
            status, healths = "store not answering", self._last_healths
        body = json.dumps(
            {
                "status": status,
                "version": __version__,
                "accounts": {
                    h.account: {"kind": h.kind, "state": h.state, **h.facts} for h in healths
                },
                # Records waiting for the database, and those lost to a full buffer since start.
                "audit": {"buffered": services.audit.buffered, "dropped": services.audit.dropped},
            }
        )
        await plain(
            send, 200 if usable else 503, body.encode(), [(b"content-type", b"application/json")]
        )
