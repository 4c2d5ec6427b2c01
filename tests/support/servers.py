"""Servers for tests: an ASGI app on a loopback port, in a thread of the test process.

Served the way ``shim serve`` serves (uvicorn with keyshim's head-timeout protocol), so tests
about sockets, TLS and slow clients meet the real server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn

from shim.serve.server import HeadTimeoutProtocol


class BackgroundServer:
    """An ASGI app on a loopback port in a thread of this process (tests).

    With ``certfile`` and ``keyfile`` (PEM, e.g. from ``shim tls init``) it serves HTTPS.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        if (certfile is None) != (keyfile is None):
            raise ValueError("give both certfile and keyfile, or neither")
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            log_level="warning",
            access_log=False,
            http=HeadTimeoutProtocol,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.host = host
        self.port = port
        self.scheme = "https" if certfile else "http"

    def _run(self) -> None:
        asyncio.run(self._server.serve())

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        sockets = [s for srv in self._server.servers for s in srv.sockets]
        self.port = sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
