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
  the moment Keap closes it (``eof_received``, ``connection_lost``); nothing is polled before
  reuse. An idle connection older than ``keepalive_expiry`` is closed rather than reused,
  because the peer may be about to drop it.
* Each connection has one explicit state (``State``: IDLE, AWAITING_HEAD, INTERIM,
  READING_BODY, READING_TO_EOF, CLOSED), moved only along ``_TRANSITIONS``, as h11 does; "may
  a call be sent on it" is "is it IDLE".
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
import enum
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


class State(enum.IntEnum):
    """Where a connection stands; one field (``_Connection.state``) says it all, as h11's
    ``ConnectionState`` does. A call may be sent only on an ``IDLE`` connection.

    An ``IntEnum`` so that the transition check costs an int hash, not ``Enum.__hash__``."""

    CONNECTING = 0  # the protocol exists, its socket not yet (``connection_made`` is due)
    IDLE = 1  # open, nothing in flight: in the pool, ready for the next call
    AWAITING_HEAD = 2  # a call is written; its final status line and headers are not all in
    INTERIM = 3  # a 1xx head is in; its end, then the real answer, follow
    READING_BODY = 4  # the head is in; the body ends by Content-Length or chunked framing
    READING_TO_EOF = 5  # the head is in; the body ends when Keap closes the connection
    CLOSED = 6  # closed or closing (FIN or reset read, or aborted): never used again


# The states as module names: ``State.IDLE`` is a lookup through the enum's metaclass (about
# 0.1 us each), and a call checks the state a dozen times on the hot path.
CONNECTING, IDLE, AWAITING_HEAD, INTERIM, READING_BODY, READING_TO_EOF, CLOSED = State

#: The only moves a connection makes. An answer that ends with keep-alive takes its connection
#: back to IDLE (and the pool); everything else that ends a call ends its connection too.
_TRANSITIONS: dict[State, frozenset[State]] = {
    CONNECTING: frozenset({IDLE, CLOSED}),
    IDLE: frozenset({AWAITING_HEAD, CLOSED}),
    AWAITING_HEAD: frozenset({INTERIM, READING_BODY, READING_TO_EOF, CLOSED}),
    INTERIM: frozenset({AWAITING_HEAD, CLOSED}),
    READING_BODY: frozenset({IDLE, CLOSED}),
    READING_TO_EOF: frozenset({CLOSED}),
    CLOSED: frozenset(),
}


class _Connection(asyncio.Protocol):
    """One keep-alive connection to an origin, carrying one request at a time.

    ``state`` is its whole protocol state (see ``State``); every change goes through ``_to``,
    which refuses a move not in ``_TRANSITIONS``. Besides it there are the answer in flight
    (``_response``, set exactly while a call is: AWAITING_HEAD to READING_TO_EOF) and read
    flow control (``paused``), which is the transport's backpressure, not a protocol state."""

    def __init__(self, pool: Pool, origin: _Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.state = CONNECTING
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._response: Response | None = None
        self._headers: list[tuple[bytes, bytes]] = []

    def _to(self, state: State) -> None:
        """Move to ``state``; ``RuntimeError`` (a bug here) if the table has no such move.
        Raised inside a parser callback, httptools hands it on as an ``HttpParserError``, so
        the call fails and the connection is closed rather than left in a state it is not."""
        if state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"http1: no move from {self.state.name} to {state.name}")
        self.state = state

    @property
    def closed(self) -> bool:
        return self.state is CLOSED

    def sendable(self) -> bool:
        """May a call be written now? Only when idle, and not if the transport is already
        closing: asyncio reports a reset it has read (``connection_lost``) a loop turn later,
        and a call written meanwhile would be dropped and fail as if it had been sent."""
        return self.state is IDLE and self.transport is not None and not self.transport.is_closing()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._to(IDLE)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._break(UpstreamError(f"Keap sent a malformed HTTP answer: {exc}"))
        except httptools.HttpParserUpgrade:
            # Not an HttpParserError: left uncaught, asyncio would log a fatal protocol error.
            self._break(UpstreamError("Keap answered with a protocol switch (HTTP 101)"))

    def eof_received(self) -> bool:
        # Keap closed its side: nothing more comes, so the connection is done with now rather
        # than when connection_lost comes (turns away; a call sent meanwhile would be lost).
        if self.state is READING_TO_EOF:
            self._message_done(keep_alive=False)  # a body delimited by the close: complete
        else:
            self._break_by_peer("closed by Keap")
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None  # gone: nothing to abort or resume any more
        # Over TLS a close without close_notify may come with no eof_received first.
        if self.state is READING_TO_EOF and exc is None:
            self._message_done(keep_alive=False)
        else:
            self._break_by_peer(type(exc).__name__ if exc is not None else "closed by Keap")

    # httptools callbacks
    def on_message_begin(self) -> None:
        # Trailers of the previous answer landed in _headers too: they are not this answer's.
        self._headers.clear()
        if self.state is not AWAITING_HEAD:
            # Keap wrote with no call in flight (a stray answer, a 408 before closing, bytes
            # after an answer): the connection is out of step, so it must not be reused.
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.state is not AWAITING_HEAD:
            return  # the rest of a stray answer, its connection already closed
        status = self._parser.get_status_code()
        if status < 100:
            # llhttp takes any three digits. 000 would also read as "no status yet" (0): the
            # call would wait for headers that came, then spin once the answer ended.
            self._break(UpstreamError(f"Keap sent a malformed HTTP answer: status {status:03d}"))
            return
        if status < 200:  # an interim answer; the real one follows
            self._to(INTERIM)
            self._headers.clear()
            return
        response = self._response
        assert response is not None
        response.status = status
        headers = response.headers
        length_known = status in (204, 304)  # never a body
        for raw_name, raw_value in self._headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name in ("content-length", "transfer-encoding"):
                length_known = True
            old = dict.get(headers, name)
            dict.__setitem__(headers, name, value if old is None else f"{old}, {value}")
        self._headers.clear()
        self._to(READING_BODY if length_known else READING_TO_EOF)
        response._wake()

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is not None and response._feed(body) > HIGH_WATER and not self.paused:
            self.paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        state = self.state
        if state is INTERIM:
            self._to(AWAITING_HEAD)
        elif state is READING_BODY or state is READING_TO_EOF:
            self._message_done(keep_alive=self._parser.should_keep_alive())
        else:  # an answer nobody asked for (see on_message_begin)
            self.abort()

    # Used by Response and Pool.
    def start(self, response: Response, data: bytes) -> None:
        assert self.transport is not None
        self._to(AWAITING_HEAD)
        self._response = response
        self.transport.write(data)

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        """Close at once. An answer still in flight fails (its reader would otherwise wait on a
        connection that will never report anything again)."""
        response = self._response
        self._break(
            None if response is None else UpstreamError(_broken(response, "closed by keyshim"))
        )

    def _message_done(self, *, keep_alive: bool) -> None:
        response, self._response = self._response, None
        assert response is not None
        self.resume()
        if keep_alive and self.state is READING_BODY:
            self._to(IDLE)
            response._end(None)
            self.pool.release(self)
        else:
            response._end(None)
            self._break(None)

    def _break_by_peer(self, reason: str) -> None:
        response = self._response
        self._break(None if response is None else UpstreamError(_broken(response, reason)))

    def _break(self, error: UpstreamError | None) -> None:
        """Fail the answer in flight (if any) with ``error`` and close the connection."""
        response, self._response = self._response, None
        if response is not None and error is not None:
            response._end(error)
        if self.state is not CLOSED:
            self._to(CLOSED)
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.abort()

    def _timed_out(self, response: Response, waiter: asyncio.Future[None]) -> None:
        if waiter.done() or response._conn is not self:
            return  # the news came in the same loop turn as the deadline: not a timeout
        self._break(
            UpstreamTimeout()
            if not response.status
            else UpstreamTimeout("Keap stopped sending its answer part way (read timeout)")
        )


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
    def release(self, conn: _Connection) -> None:
        """``conn`` is IDLE again: into the pool, for the next call."""
        conn.idle_since = conn._loop.time()
        self._idle.setdefault(conn.origin, []).append(conn)
        self._wake_one()

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
                if conn.sendable() and loop.time() - conn.idle_since <= self.keepalive_expiry:
                    return conn
                conn.abort()  # closing, or idle too long: Keap may be about to drop it
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
        if not conn.sendable():
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


__all__ = ["HIGH_WATER", "LOW_WATER", "Headers", "Pool", "Response", "State"]
