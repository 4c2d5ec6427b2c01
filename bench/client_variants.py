"""keyshim's upstream client three ways, for bench/clients.py: the forwarding path with only the
HTTP client swapped.

* ``http1``: ``shim.keap.client.Upstream`` as shipped. A forwarded call goes through
  ``Upstream.open``, i.e. the lean client in ``shim/http1.py``.
* ``httpx-aiohttp``: ``Upstream`` built with httpx-aiohttp's ``AiohttpTransport`` as its
  transport. An injected transport makes ``open`` take keyshim's general httpx path
  (``Upstream.request``), so this is keyshim with http1.py retired and httpx on aiohttp's pool
  and C parser for everything: forwarded calls, token grants, REST, webhooks.
* ``aiohttp``: ``Upstream`` whose ``open`` posts with an ``aiohttp.ClientSession`` directly
  and streams the answer from it (the rest of ``Upstream`` left as it is).

The aiohttp sessions of both are configured as keyshim would ship them: no cookie jar (a
``DummyCookieJar``: keyshim never carries one script's cookies to another), no automatic
decompression (answers pass on still encoded), no environment proxies, the same pool size,
5 s keep-alive expiry (http1.py's and httpx's default) and the same connect/read timeouts.

The module also serves ``app``: a minimal forwarding proxy (``BENCH_CLIENT`` picks the
variant) that reads the body, posts it with ``Upstream.open`` adding keyshim's headers, and
streams the answer back, with none of keyshim's per-call work. It runs under uvicorn like
bench/floor_proxy.py; the environment is the same (``BENCH_FLOOR_UPSTREAM``,
``BENCH_FLOOR_TOKEN``).

aiohttp and httpx_aiohttp are imported only by the variants that use them, so an ``http1``
process never loads them (bench/clients.py checks that in each process's memory map).
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import httpx

from shim.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from shim.keap.client import Transport, Upstream, UpstreamResponse

if TYPE_CHECKING:
    import aiohttp

CLIENTS = ("http1", "httpx-aiohttp", "aiohttp")

#: Idle connections older than this are not reused (http1.Pool's and httpx.Limits' default).
KEEPALIVE_EXPIRY = 5.0


def _session(max_connections: int, connect_timeout: float, read_timeout: float) -> Any:
    """An ``aiohttp.ClientSession`` as keyshim would configure one (see the module docstring).
    Made inside the running event loop (aiohttp's connector needs one)."""
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,
        keepalive_timeout=KEEPALIVE_EXPIRY,
        ssl=httpx.create_ssl_context(),
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        ),
    )


class HttpxAiohttpUpstream(Upstream):
    """keyshim's ``Upstream`` with httpx on httpx-aiohttp's transport for every request."""

    def __init__(
        self,
        *,
        transport: Transport | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        token_timeout: float = 20.0,
        max_connections: int = 100,
    ) -> None:
        if transport is None:
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(
                trust_env=False,
                limits=httpx.Limits(
                    max_connections=max_connections,
                    max_keepalive_connections=max_connections,
                    keepalive_expiry=KEEPALIVE_EXPIRY,
                ),
                # Called once, on the first request (inside the event loop).
                client=lambda: _session(max_connections, connect_timeout, read_timeout),
            )
        super().__init__(
            transport=transport,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            token_timeout=token_timeout,
            max_connections=max_connections,
        )


class AiohttpUpstream(Upstream):
    """keyshim's ``Upstream`` whose forwarded calls (``open``) go through aiohttp directly."""

    def __init__(
        self,
        *,
        transport: Transport | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        token_timeout: float = 20.0,
        max_connections: int = 100,
    ) -> None:
        super().__init__(
            transport=transport,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            token_timeout=token_timeout,
            max_connections=max_connections,
        )
        self._limits = (max_connections, connect_timeout, read_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._parsed: dict[str, Any] = {}  # str -> yarl.URL, parsed once (as http1.Pool does)

    async def open(self, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        import aiohttp
        import yarl

        if self._session is None:
            self._session = _session(*self._limits)
        target = self._parsed.get(url)
        if target is None:
            if len(self._parsed) >= 64:
                self._parsed.clear()
            target = self._parsed[url] = yarl.URL(url)
        try:
            answer = await self._session.post(target, data=body, headers=dict(headers))
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamUnavailable("Timed out connecting to Keap") from exc
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise UpstreamTimeout() from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnavailable(f"Could not connect to Keap: {exc}"[:240]) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"Keap connection failed: {type(exc).__name__}") from exc
        return UpstreamResponse(answer.status, answer.headers, _AiohttpBody(answer))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await super().aclose()


class _AiohttpBody:
    """An aiohttp answer's body for ``UpstreamResponse`` (keyshim errors only)."""

    def __init__(self, answer: aiohttp.ClientResponse) -> None:
        self._answer = answer

    async def raw(self) -> AsyncIterator[bytes]:
        import aiohttp

        try:
            async for chunk in self._answer.content.iter_any():
                yield chunk
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise UpstreamTimeout() from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"Keap connection broke mid-answer: {type(exc).__name__}") from exc

    async def decoded(self) -> AsyncIterator[bytes]:
        """Content-Encoding undone (gzip, deflate), as shim.keap.client does for http1.py."""
        encoding = self._answer.headers.get("content-encoding", "").strip().lower()
        wbits = {"gzip": 47, "x-gzip": 47, "deflate": 15}.get(encoding)
        inflate = zlib.decompressobj(wbits) if wbits is not None else None
        async for chunk in self.raw():
            if inflate is None:
                yield chunk
                continue
            try:
                yield inflate.decompress(chunk, 1 << 20)
                while inflate.unconsumed_tail:
                    yield inflate.decompress(inflate.unconsumed_tail, 1 << 20)
            except zlib.error as exc:
                raise UpstreamError(f"Keap sent a broken {encoding} body") from exc

    async def aclose(self) -> None:
        # Back to the pool when the body was read to the end, else the connection is closed.
        self._answer.release()


def upstream_class(client: str) -> type[Upstream]:
    """The ``Upstream`` to build for ``client`` (one of ``CLIENTS``)."""
    classes: dict[str, type[Upstream]] = {
        "http1": Upstream,
        "httpx-aiohttp": HttpxAiohttpUpstream,
        "aiohttp": AiohttpUpstream,
    }
    if client not in classes:
        raise SystemExit(f"BENCH_CLIENT must be one of {', '.join(CLIENTS)}, not {client!r}")
    return classes[client]


# -- the minimal forwarding proxy ----------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_CLIENT = os.environ.get("BENCH_CLIENT", "http1")
_UPSTREAM_URL = os.environ.get("BENCH_FLOOR_UPSTREAM", "")
#: What keyshim sends with a forwarded call (shim/app.py, KeyshimApp._forward + credential).
_HEADERS = {
    "Content-Type": "text/xml",
    "User-Agent": "keyshim-bench",
    "Accept-Encoding": "identity",
    "Authorization": f"Bearer {os.environ.get('BENCH_FLOOR_TOKEN', '')}",
}
_upstream: Upstream | None = None


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    global _upstream
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            _upstream = upstream_class(_CLIENT)(max_connections=100)
            await send({"type": "lifespan.startup.complete"})
        if _upstream is not None:
            await _upstream.aclose()
        await send({"type": "lifespan.shutdown.complete"})
        return
    assert _upstream is not None
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    answer = await _upstream.open(_UPSTREAM_URL, b"".join(chunks), _HEADERS)
    headers = [(b"content-type", answer.headers.get("content-type", "text/xml").encode())]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    try:
        async for chunk in answer.iter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        await answer.aclose()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
