"""Serving ASGI apps: the only module that imports uvicorn.

keyshim and the bundled simulator are both plain ASGI apps; this serves either on a socket in
the foreground (``shim serve``, ``shim simulator``). Tests run them in a background thread
with their own helper (tests/support/servers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from shim.logs import uvicorn_log_config
from shim.settings import Settings

#: The largest request line plus headers accepted (legacy clients send well under 2 KiB).
MAX_HEAD_BYTES = 64 * 1024


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a deadline and a size bound for each request head.

    uvicorn arms no timer while it reads a request line and headers, so a client that opens
    connections and trickles (or never sends) its head would hold them for ever. Each head must
    now arrive within ``SHIM_HEAD_TIMEOUT`` of the connection or of its first byte, and within
    ``MAX_HEAD_BYTES`` (else 431); bodies have their own limits in the app.
    """

    _timeout: float | None = None
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes: int = 0
    _in_head: bool = True

    @classmethod
    def timeout(cls) -> float:
        if cls._timeout is None:  # read once per process (workers are separate processes)
            cls._timeout = Settings.from_env().head_timeout
        return cls._timeout

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def data_received(self, data: bytes) -> None:
        in_head = self._in_head
        super().data_received(data)
        if in_head and self._in_head and not self.transport.is_closing():
            # The head is still incomplete after this chunk: count it (a body arriving in the
            # same chunk as the end of its head is not counted).
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:  # httptools would keep every header line
                self._disarm()
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                    b"content-length: 0\r\nconnection: close\r\n\r\n"
                )
                self.transport.close()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.timeout(), self._expire)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expire(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def run(
    app: Any,
    *,
    host: str,
    port: int,
    workers: int = 1,
    factory: bool = False,
    log_level: str = "info",
    certfile: str | None = None,
    keyfile: str | None = None,
    max_clients: int | None = None,
) -> None:
    """Serve in the foreground until interrupted. ``workers > 1`` needs an import string.

    Exits with status 3 when the app cannot start, with one worker or several (uvicorn's own
    ``run`` exits 0 when every worker fails to start, which a supervisor would take for a
    clean stop).
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        factory=factory,
        log_level=log_level.lower(),
        log_config=uvicorn_log_config(log_level),
        lifespan="on",
        access_log=False,
        server_header=False,
        # Scripts talk to keyshim directly; no client address it uses comes from a proxy, and
        # trusting X-Forwarded-For from any local process would let it claim another's.
        proxy_headers=False,
        timeout_keep_alive=30,
        http=HeadTimeoutProtocol,
        limit_concurrency=max_clients,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    if workers <= 1:
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    with contextlib.suppress(KeyboardInterrupt):
        supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        sys.exit(STARTUP_FAILURE)
