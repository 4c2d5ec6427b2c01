"""A lean HTTP/1.1 client for the one request every forwarded call makes: POST, stream the answer.

Why not httpx on this path: profiling keyshim under load put half of its CPU per call inside
httpx, httpcore, anyio and h11 (a pool walk and an expiry poll per request, several objects per
request, a pure-Python parser). Forwarding needs a small part of what they do: send one
``POST`` with a known length, read a status line and headers, pass the body on as it arrives,
keep the connection for the next call. This module does that and nothing else; every other
request (token grants, REST v2, webhooks) and every test transport still goes through httpx
in ``shim.keap.client``, which also owns the TLS trust (it hands in the ``ssl.SSLContext``).

How it stays cheap and correct:

* Connections are asyncio ``Protocol`` objects, so the event loop tells a pooled connection
  the moment Keap closes it (``connection_lost``); nothing is polled before reuse. An idle
  connection older than ``keepalive_expiry`` is closed rather than reused, because the peer
  may be about to drop it.
* Responses are parsed by httptools (llhttp, the parser Node.js and uvicorn use): chunked and
  length-delimited bodies, interim ``1xx`` answers and keep-alive rules come from it. A body
  delimited by the connection closing ends cleanly at EOF.
* The body is streamed with flow control: past ``HIGH_WATER`` buffered bytes the socket is
  paused until the reader drains below ``LOW_WATER``, so a 64 MB answer is never held whole.
* A connection goes back to the pool as soon as its answer is complete, even if the caller is
  still reading buffered bytes.

Failures are keyshim errors, chosen by what they prove: could not connect (``UpstreamUnavailable``,
the call never left), no answer in time (``UpstreamTimeout``, it may have run), connection broken
or garbage received (``UpstreamError``). Nothing is retried here.

This is the only module that imports httptools.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from shim.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable

#: Buffered answer bytes past which reading from Keap pauses, and below which it resumes.
HIGH_WATER = 1 << 20
LOW_WATER = 256 << 10

#: Header names and values must not carry line breaks or NUL (header injection).
_UNSAFE = re.compile(r"[\r\n\x00]")

_Origin = tuple[str, str, int]


class Headers(dict[str, str]):
    """Response headers: lower-case names, repeated headers joined with ``", "`` (as httpx's
    ``Headers.items()`` does), case-insensitive lookups."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class Response:
    """One answer: status and headers are in, the body arrives through ``chunks``."""

    __slots__ = (
        "_body_ended", "_buffered", "_chunks", "_conn", "_error", "_waiter", "headers", "status",
    )  # fmt: skip

    def __init__(self, conn: _Connection) -> None:
        self.status = 0  # 0 until the (final, not 1xx) status line and headers are in
        self.headers = Headers()
        self._conn: _Connection | None = conn
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._body_ended = False
        self._error: UpstreamError | None = None
        #: Who waits for news of this answer: its caller until the headers are in, then its
        #: reader. Each answer has its own, so news of one call on a kept-alive connection
        #: can never wake, or be taken by, another call's waiter.
        self._waiter: asyncio.Future[None] | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as Keap sent it (transfer encoding undone, content encoding kept)."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                conn = self._conn
                if conn is not None and conn.paused and self._buffered <= LOW_WATER:
                    conn.resume()
                yield chunk
            elif self._error is not None:
                raise self._error
            elif self._body_ended:
                return
            else:
                await self.wait()

    async def wait(self) -> None:
        """Until the connection has news of this answer; ``UpstreamTimeout`` (the answer
        fails, the connection is closed) when none comes within the read timeout."""
        conn = self._conn
        if conn is None:  # ended or failed already
            return
        waiter = self._waiter = conn._loop.create_future()
        timer = conn._loop.call_later(conn.pool.read_timeout, conn._timed_out, self, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def close(self) -> None:
        """Stop reading; an unfinished answer costs its connection (it cannot be reused). Reading
        on after this raises rather than waiting on a connection that is gone."""
        self._chunks.clear()
        self._buffered = 0
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()

    # Called by the connection.
    def _feed(self, chunk: bytes) -> int:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self._wake()
        return self._buffered

    def _end(self, error: UpstreamError | None) -> None:
        self._error = error
        self._body_ended = error is None
        self._conn = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection to an origin, carrying one request at a time."""

    def __init__(self, pool: Pool, origin: _Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._response: Response | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._length_known = False
        self._interim = False
        self._eof = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"Keap sent a malformed HTTP answer: {exc}"))
            self.abort()
        except httptools.HttpParserUpgrade:
            # Not an HttpParserError: left uncaught, asyncio would log a fatal protocol error.
            self._fail(UpstreamError("Keap answered with a protocol switch (HTTP 101)"))
            self.abort()

    def eof_received(self) -> bool:
        self._eof = True  # not reusable from now on, though connection_lost may be turns away
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        response = self._response
        if response is not None:
            if response.status and not self._length_known and exc is None:
                self._message_done(keep_alive=False)  # a body delimited by the close
            else:
                reason = type(exc).__name__ if exc is not None else "closed by Keap"
                self._fail(UpstreamError(_broken(response, reason)))

    # httptools callbacks
    def on_message_begin(self) -> None:
        # Trailers of the previous answer landed in _headers too: they are not this answer's.
        self._headers.clear()
        if self._response is None:
            # Keap wrote with no call in flight (a stray answer, a 408 before closing, bytes
            # after an answer): the connection is out of step, so it must not be reused.
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 100:
            # llhttp takes any three digits. 000 would also read as "no status yet" (0): the
            # call would wait for headers that came, then spin once the answer ended.
            self._fail(UpstreamError(f"Keap sent a malformed HTTP answer: status {status:03d}"))
            self.abort()
            return
        if 100 <= status < 200:  # an interim answer; the real one follows
            self._interim = True
            self._headers.clear()
            return
        response = self._response
        if response is None:
            return
        response.status = status
        headers = response.headers
        for raw_name, raw_value in self._headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name in ("content-length", "transfer-encoding"):
                self._length_known = True
            old = dict.get(headers, name)
            dict.__setitem__(headers, name, value if old is None else f"{old}, {value}")
        self._headers.clear()
        response._wake()

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is not None and response._feed(body) > HIGH_WATER and not self.paused:
            self.paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._message_done(keep_alive=self._parser.should_keep_alive())

    # Used by Response and Pool.
    def start(self, response: Response, data: bytes) -> None:
        assert self.transport is not None
        self._response = response
        self._length_known = self._interim = False
        self.transport.write(data)

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def closing(self) -> bool:
        """Closed, or about to be: Keap's FIN (or a reset) was read, but ``connection_lost``
        comes later (next loop turn; over TLS a few turns on, the transport not even saying
        it is closing meanwhile), and a task can run before it. A call written now would be
        dropped and fail as if it had been sent."""
        return self.closed or self._eof or self.transport is None or self.transport.is_closing()

    def abort(self) -> None:
        """Close at once. An answer still in flight fails (its reader would otherwise wait on a
        connection that will never report anything again)."""
        if self._response is not None:
            self._fail(UpstreamError(_broken(self._response, "closed by keyshim")))
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.abort()

    def _message_done(self, *, keep_alive: bool) -> None:
        response, self._response = self._response, None
        self.resume()
        if response is None:  # an answer nobody asked for (see on_message_begin)
            self.abort()
            return
        response._end(None)
        self.pool.release(self, reusable=keep_alive and not self.closed)

    def _fail(self, error: UpstreamError) -> None:
        response, self._response = self._response, None
        if response is not None:
            response._end(error)

    def _timed_out(self, response: Response, waiter: asyncio.Future[None]) -> None:
        if waiter.done() or response._conn is not self:
            return  # the news came in the same loop turn as the deadline: not a timeout
        self._fail(
            UpstreamTimeout()
            if not response.status
            else UpstreamTimeout("Keap stopped sending its answer part way (read timeout)")
        )
        self.abort()


def _broken(response: Response, reason: str) -> str:
    if response.status:  # its headers are in
        return f"Keap connection broke mid-answer: {reason}"
    return f"Keap connection failed: {reason}"


class _Target:
    """A parsed upstream URL: where to connect and what to write in the request line."""

    __slots__ = ("head", "origin", "server_hostname")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamUnavailable(f"Keap URL is not an http(s) URL: {url[:100]!r}")
        default = 443 if parts.scheme == "https" else 80
        port = parts.port or default
        host = parts.hostname
        host_header = f"[{host}]" if ":" in host else host
        if port != default:
            host_header = f"{host_header}:{port}"
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        if _UNSAFE.search(path + host_header) or " " in path:
            raise UpstreamUnavailable(f"Keap URL has characters not allowed in a request: {url!r}")
        self.origin: _Origin = (parts.scheme, host, port)
        self.server_hostname = host if parts.scheme == "https" else None
        self.head = f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\n"


class Pool:
    """Keep-alive connections to each origin, at most ``max_connections`` open in all."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        ssl_context: Callable[[], ssl.SSLContext],
        keepalive_expiry: float = 5.0,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._ssl_factory = ssl_context
        self._ssl: ssl.SSLContext | None = None
        self._targets: dict[str, _Target] = {}
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._connecting = 0
        self._closed = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        #: Waiters woken (something was freed for them) that have not run yet.
        self._woken = 0

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Send ``body`` and return once the answer's status and headers are in."""
        target = self._target(url)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        n = len(headers)
        if lines.count("\n") != n or lines.count("\r") != n or "\x00" in lines:
            raise UpstreamError("refusing to send a header containing a line break or NUL")
        try:
            head = f"{target.head}{lines}Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
        except UnicodeEncodeError as exc:
            raise UpstreamError("refusing to send a header that is not Latin-1") from exc
        conn = await self._acquire(target)
        response = Response(conn)
        conn.start(response, head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            assert conn.transport is not None
            conn.transport.write(body)
        try:
            while not response.status and response._error is None:
                await response.wait()
        except BaseException:
            # Cancelled mid-call: the answer would arrive for nobody, and a big one would pause
            # the connection forever, holding a pool slot. Only closing it frees the slot. (If
            # the answer already ended, the connection is back in the pool, maybe carrying
            # someone else's call by now: leave it alone.)
            if conn._response is response:
                conn.abort()
            raise
        if response._error is not None:
            raise response._error
        return response

    async def aclose(self) -> None:
        """Close every connection; a connect still under way is closed when it completes and
        its call fails (nothing may be left open after shutdown)."""
        self._closed = True
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()

    # Called by connections.
    def release(self, conn: _Connection, *, reusable: bool) -> None:
        if reusable:
            conn.idle_since = conn._loop.time()
            self._idle.setdefault(conn.origin, []).append(conn)
            self._wake_one()
        else:
            conn.abort()

    def forget(self, conn: _Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            idle = self._idle.get(conn.origin)
            if idle and conn in idle:
                idle.remove(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._woken += 1
                return

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= 64:
                self._targets.clear()
            target = self._targets[url] = _Target(url)
        return target

    async def _acquire(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout
        woken = False
        while True:
            # What was freed while calls wait is for the calls it woke: a call arriving before
            # they run takes only what is left over, else it queues behind them. (A caller that
            # calls again as soon as its answer ends runs first, since the end wakes its reader
            # first: it would take the connection back every time, starving the waiter.)
            take = woken or not self._woken or self._spare() > self._woken
            idle = self._idle.get(target.origin) if take else None
            while idle:
                conn = idle.pop()
                if conn.closed:
                    continue
                if conn.closing() or loop.time() - conn.idle_since > self.keepalive_expiry:
                    conn.abort()
                    continue
                return conn
            if take and len(self._open) + self._connecting >= self.max_connections:
                self._evict_idle()
            if take and len(self._open) + self._connecting < self.max_connections:
                self._connecting += 1
                try:
                    return await self._connect(target)
                finally:
                    self._connecting -= 1
                    self._wake_one()
            waiter = loop.create_future()
            if woken:  # woken for nothing in the end: it keeps its place at the front
                self._waiters.appendleft(waiter)
            else:
                self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    # Woken but leaving (cancelled, or the deadline in the same loop turn):
                    # pass the free connection on, or the next waiter sleeps past it.
                    self._woken -= 1
                    self._wake_one()
                if isinstance(exc, asyncio.TimeoutError):
                    raise UpstreamUnavailable(
                        "Timed out waiting for a free connection to Keap"
                    ) from exc
                raise
            self._woken -= 1
            woken = True

    def _spare(self) -> int:
        """Connections a call could have at once: idle ones and free slots."""
        idle = sum(len(conns) for conns in self._idle.values())
        return idle + self.max_connections - len(self._open) - self._connecting

    def _evict_idle(self) -> None:
        """Close the oldest idle connection (of another origin: the caller's own are used up).
        The pool is full and none of its idle connections can carry this call; without this
        the caller would wait out its deadline for a slot that frees only when Keap drops one."""
        for idle in self._idle.values():
            if idle:
                idle[0].abort()
                return

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        scheme, host, port = target.origin
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = self._ssl_factory()
            context = self._ssl
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self, target.origin),
                    host,
                    port,
                    ssl=context,
                    server_hostname=target.server_hostname,
                ),
                self.connect_timeout,
            )
        except asyncio.TimeoutError as exc:
            raise UpstreamUnavailable(f"Timed out connecting to Keap at {host}:{port}") from exc
        except (OSError, ssl.SSLError) as exc:
            where = f"{scheme}://{host}:{port}"
            raise UpstreamUnavailable(f"Could not connect to Keap at {where}: {exc}"[:240]) from exc
        if conn.closing():
            # Keap closed (or reset) it between the handshake and now, so connection_lost ran
            # (or is due) before the pool knew it: counting it would leak a slot, and writing
            # the call to it would wait out the read timeout for an answer that cannot come.
            conn.abort()
            raise UpstreamUnavailable("Keap closed the connection before the call was sent")
        if self._closed:
            conn.abort()
            raise UpstreamUnavailable("keyshim is shutting down; the call was not sent")
        self._open.add(conn)
        return conn


__all__ = ["HIGH_WATER", "LOW_WATER", "Headers", "Pool", "Response"]
