"""The floor for keyshim's serving stack: the same server and upstream client, no keyshim work.

uvicorn (httptools + uvloop, one worker, as ``shim serve`` runs it) serving a raw ASGI app that
reads the body, forwards it with keyshim's own upstream client (``shim.keap.http1``) adding the
Bearer header, and streams the answer back. No XML parsing, no key check, no budget, no audit,
log line or metrics. The gap between this row and ``keyshim`` in bench/run.py's table is what
keyshim's per-call work costs; this row itself is what Python serving costs on the machine.

    BENCH_FLOOR_UPSTREAM=http://127.0.0.1:8081/crm/xmlrpc/v1 BENCH_FLOOR_TOKEN=... \\
        python3 -m uvicorn floor_proxy:app --app-dir bench --http httptools --loop uvloop
"""

from __future__ import annotations

import os
import ssl

from shim.keap import http1
from shim.serve.asgi import Receive, Scope, Send

_UPSTREAM = os.environ.get("BENCH_FLOOR_UPSTREAM", "")
_HEADERS = {
    "Content-Type": "text/xml",
    "Authorization": f"Bearer {os.environ.get('BENCH_FLOOR_TOKEN', '')}",
}
_pool: http1.Pool | None = None


async def app(
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    global _pool
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if _pool is None:
        _pool = http1.Pool(
            connect_timeout=10,
            read_timeout=300,
            max_connections=100,
            ssl_context=ssl.create_default_context,
        )
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    answer = await _pool.post(_UPSTREAM, _HEADERS, b"".join(chunks))
    headers = [(b"content-type", answer.headers.get("content-type", "text/xml").encode())]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    async for chunk in answer.chunks():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
