"""shim.keap.http1 over real loopback sockets: scripted raw asyncio servers play Keap.

Every server here is ``asyncio.start_server`` on 127.0.0.1 with a handler that does exactly
what a test needs (answers chunked, closes mid-body, stalls, sends garbage, holds answers), so
the tests see the bytes on the wire, count TCP connections and watch the pool's bookkeeping
(``Pool._open``, ``Pool._idle``) after every kind of failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from shim.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from shim.keap import http1
from shim.keap.client import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

HOST = "127.0.0.1"
#: The most one socket read hands a protocol (asyncio's selector transport reads 256 KiB).
READ_SIZE = 256 * 1024


# --- a scriptable raw HTTP server -------------------------------------------------------------


class Peer:
    """One accepted connection, as the handler sees it."""

    def __init__(
        self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.n = n

    async def request(self) -> tuple[bytes, bytes] | None:
        """The next request (head, body), or None when the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        self.server.requests.append((self.n, head, body))
        return head, body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def eof(self, timeout: float = 2.0) -> bytes:
        """Whatever the client still sends until it closes its side."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    def close(self) -> None:
        self.writer.close()


Handler = Callable[[Peer], Awaitable[None]]


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepts = 0
        self.requests: list[tuple[int, bytes, bytes]] = []
        self.peers: list[Peer] = []
        self.client_closed = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/crm/xmlrpc/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepts += 1
        peer = Peer(self, reader, writer, self.accepts)
        self.peers.append(peer)
        try:
            await self.handler(peer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            self._tasks.discard(task)
            writer.close()


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[Server]:
    server = Server(handler)
    listener = await asyncio.start_server(server._serve, HOST, 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for task in list(server._tasks):
            task.cancel()
        for peer in server.peers:
            peer.writer.close()
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def pool(**kw: Any) -> AsyncIterator[http1.Pool]:
    kw.setdefault("connect_timeout", 1.0)
    kw.setdefault("read_timeout", 2.0)
    kw.setdefault("max_connections", 10)
    p = http1.Pool(ssl_context=ssl.create_default_context, **kw)
    try:
        yield p
    finally:
        await p.aclose()


def answer(
    body: bytes = b"ok", status: str = "200 OK", headers: str = "Content-Type: text/xml\r\n"
) -> bytes:
    head = f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


def chunked(parts: list[bytes]) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return out + b"0\r\n\r\n"


async def read_all(response: http1.Response) -> bytes:
    return b"".join([chunk async for chunk in response.chunks()])


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.005)


def idle_count(p: http1.Pool) -> int:
    return sum(len(v) for v in p._idle.values())


async def post_fails(
    p: http1.Pool, server: Server, error: type[UpstreamError], match: str
) -> UpstreamError:
    """``post`` raises exactly ``error`` (not a subclass: what a failure proves decides what
    may be retried) and leaves nothing in the pool."""
    with pytest.raises(error, match=match) as info:
        await p.post(server.url, {}, b"x")
    assert type(info.value) is error
    assert not p._open and idle_count(p) == 0
    return info.value


async def read_fails(
    p: http1.Pool, response: http1.Response, error: type[UpstreamError], match: str
) -> bytes:
    """Reading ``response`` raises ``error`` after the bytes returned; nothing is left in the
    pool."""
    got = b""
    with pytest.raises(error, match=match):
        async for chunk in response.chunks():
            got += chunk
    assert not p._open and idle_count(p) == 0
    return got


async def keep_answering(peer: Peer, make: Callable[[bytes], bytes] | None = None) -> None:
    """Answer every request on the connection with ``make(request body)`` (an echo)."""
    while (req := await peer.request()) is not None:
        await peer.send((make or answer)(req[1]))


# --- answers and how their bodies are delimited -----------------------------------------------


async def test_content_length_answer() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(b"<methodResponse/>", headers="X-Req: 1\r\n"))
        await peer.eof()

    async with serve(handler) as server, pool() as p:
        response = await p.post(server.url, {}, b"x")
        assert response.status == 200
        assert response.headers["content-length"] == "17"
        assert response.headers["x-req"] == "1"
        assert await read_all(response) == b"<methodResponse/>"
        assert await read_all(response) == b""  # an ended body stays ended
        assert len(p._open) == 1
        assert idle_count(p) == 1  # back in the pool, ready for the next call


async def test_chunked_answer_is_dechunked_but_stays_gzipped() -> None:
    xml = b"<methodResponse>" + os.urandom(8000).hex().encode() + b"</methodResponse>"
    gz = gzip.compress(xml)
    parts = [gz[:1], gz[1:100], gz[100:5000], gz[5000:]]
    assert all(parts)

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for part in parts:  # chunks in separate writes, one with an extension
            await peer.send(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            await asyncio.sleep(0.01)
        await peer.send(b"0\r\nX-Trailer: t\r\n\r\n")
        await keep_answering(peer)

    async with serve(handler) as server, pool() as p:
        response = await p.post(server.url, {}, b"x")
        assert response.headers["content-encoding"] == "gzip"
        assert "content-length" not in response.headers
        body = await read_all(response)
        assert body == gz  # transfer coding undone, content coding kept
        assert gzip.decompress(body) == xml
        # The chunked answer ended properly: the connection is reused.
        second = await p.post(server.url, {}, b"again")
        assert "x-trailer" not in second.headers  # the trailer is not the next answer's header
        assert set(second.headers) == {"content-type", "content-length"}
        assert await read_all(second) == b"again"
        assert server.accepts == 1


async def test_answer_delimited_by_close() -> None:
    async def handler(peer: Peer) -> None:
        if await peer.request() is None:
            return
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\npart one,")
        await asyncio.sleep(0.02)
        await peer.send(b" part two")
        peer.close()

    async with serve(handler) as server, pool() as p:
        response = await p.post(server.url, {}, b"x")
        assert response.status == 200
        assert await read_all(response) == b"part one, part two"
        await until(lambda: not p._open)
        assert idle_count(p) == 0
        again = await p.post(server.url, {}, b"y")
        assert await read_all(again) == b"part one, part two"
        assert server.accepts == 2  # the first connection was not reused


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
async def test_no_body_statuses(status: str) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(f"HTTP/1.1 {status}\r\nETag: x\r\n\r\n".encode())

    async with serve(handler) as server, pool() as p:
        for _ in range(2):
            response = await p.post(server.url, {}, b"x")
            assert response.status == int(status[:3])
            assert await read_all(response) == b""
        assert server.accepts == 1  # an answer with no body leaves the connection reusable
        assert len(p._open) == 1


async def test_interim_answers_are_skipped() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0.02)
        await peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
        await asyncio.sleep(0.02)
        await peer.send(answer(b"final", headers="X-Final: yes\r\n"))
        await keep_answering(peer)

    async with serve(handler) as server, pool() as p:
        response = await p.post(server.url, {}, b"x")
        assert response.status == 200
        assert response.headers["x-final"] == "yes"
        assert "link" not in response.headers  # the interim answer's headers are not kept
        assert await read_all(response) == b"final"
        again = await p.post(server.url, {}, b"after")
        assert await read_all(again) == b"after"
        assert server.accepts == 1


# --- the connection's state ------------------------------------------------------------------

State = http1.State


def test_state_table_is_closed_and_every_state_is_reachable() -> None:
    table = http1._TRANSITIONS
    assert set(table) == set(State)
    assert table[State.CLOSED] == frozenset()  # nothing comes back from closed
    assert all(State.CLOSED in table[s] for s in State if s is not State.CLOSED)
    # Only a complete, kept-alive answer (or a new connection) makes a connection sendable.
    assert {s for s in State if State.IDLE in table[s]} == {State.CONNECTING, State.READING_BODY}
    seen, todo = {State.CONNECTING}, [State.CONNECTING]
    while todo:
        for nxt in table[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert seen == set(State)


async def test_state_follows_each_step_of_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """CONNECTING, IDLE, AWAITING_HEAD, INTERIM, AWAITING_HEAD, READING_BODY, IDLE; then a body
    delimited by the close: AWAITING_HEAD, READING_TO_EOF, CLOSED."""
    moves: list[http1.State] = []
    to = http1._Connection._to

    def recording_to(self: http1._Connection, state: http1.State) -> None:
        to(self, state)
        moves.append(state)

    monkeypatch.setattr(http1._Connection, "_to", recording_to)
    step = [asyncio.Event() for _ in range(3)]

    async def handler(peer: Peer) -> None:
        await peer.request()
        await step[0].wait()
        await peer.send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
        await peer.send(b"Content-Length: 6\r\n\r\nabc")
        await step[1].wait()
        await peer.send(b"def")
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n\r\nxyz")
        await step[2].wait()
        peer.close()

    async with serve(handler) as server, pool() as p:
        call = asyncio.create_task(p.post(server.url, {}, b"x"))
        await until(lambda: len(server.requests) == 1)
        [conn] = p._open
        assert conn.state is State.AWAITING_HEAD and not conn.sendable()
        step[0].set()
        response = await call
        assert conn.state is State.READING_BODY and not conn.sendable()
        step[1].set()
        assert await read_all(response) == b"abcdef"
        assert conn.state is State.IDLE and conn.sendable()

        response = await p.post(server.url, {}, b"y")
        assert conn.state is State.READING_TO_EOF
        step[2].set()
        assert await read_all(response) == b"xyz"
        assert conn.state is State.CLOSED and conn.closed
        assert not p._open and idle_count(p) == 0
    assert moves == [
        State.IDLE,
        State.AWAITING_HEAD,
        State.INTERIM,
        State.AWAITING_HEAD,
        State.READING_BODY,
        State.IDLE,
        State.AWAITING_HEAD,
        State.READING_TO_EOF,
        State.CLOSED,
    ]


async def test_illegal_moves_are_refused() -> None:
    """A call can be started only on an IDLE connection; no state is left by a move the table
    does not have."""
    release: dict[int, asyncio.Event] = {}
    async with serve(holding(release)) as server, pool() as p:
        response = await p.post(server.url, {}, b"aaaBBB")
        [conn] = p._open
        assert conn.state is State.READING_BODY
        with pytest.raises(RuntimeError, match="READING_BODY to AWAITING_HEAD"):
            conn.start(http1.Response(conn), b"POST / HTTP/1.1\r\n\r\n")
        with pytest.raises(RuntimeError, match="READING_BODY to INTERIM"):
            conn._to(State.INTERIM)
        assert conn.state is State.READING_BODY and conn._response is response
        release.setdefault(1, asyncio.Event()).set()
        assert await read_all(response) == b"aaaBBB"
        conn.abort()
        assert conn.state is State.CLOSED
        with pytest.raises(RuntimeError, match="CLOSED to IDLE"):
            conn._to(State.IDLE)


async def test_an_illegal_move_in_a_parser_callback_fails_the_call_and_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were the table and the code ever to disagree, the call fails and the connection is
    closed; nothing is left half-moved for the next call."""
    table = dict(http1._TRANSITIONS)
    table[State.AWAITING_HEAD] = frozenset({State.CLOSED})  # no head may be read
    monkeypatch.setattr(http1, "_TRANSITIONS", table)
    async with serve(keep_answering) as server, pool() as p:
        await post_fails(p, server, UpstreamError, "malformed HTTP answer")


# --- keep-alive -------------------------------------------------------------------------------


async def test_keepalive_reuses_one_connection() -> None:
    async with serve(keep_answering) as server, pool() as p:
        for body in (b"one", b"two", b"three"):
            response = await p.post(server.url, {}, body)
            assert await read_all(response) == body
        assert server.accepts == 1
        assert [n for n, _, _ in server.requests] == [1, 1, 1]
        assert len(p._open) == 1


async def test_connection_close_answer_is_not_reused() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(b"bye", headers="Connection: close\r\n"))
        await peer.eof()

    async with serve(handler) as server, pool() as p:
        first = await p.post(server.url, {}, b"x")
        assert await read_all(first) == b"bye"
        assert not p._open  # dropped as soon as the answer ended
        second = await p.post(server.url, {}, b"x")
        assert await read_all(second) == b"bye"
        assert server.accepts == 2


async def test_http10_answer_is_not_reused() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        await peer.eof()

    async with serve(handler) as server, pool() as p:
        for _ in range(2):
            assert await read_all(await p.post(server.url, {}, b"x")) == b"hi"
        assert server.accepts == 2


async def test_idle_connection_closed_by_server_is_replaced() -> None:
    async def handler(peer: Peer) -> None:
        req = await peer.request()
        assert req is not None
        await peer.send(answer(req[1]))
        if peer.n == 1:
            await asyncio.sleep(0.05)
            peer.close()  # an idle keep-alive connection dropped by the server
            return
        await keep_answering(peer)

    async with serve(handler) as server, pool() as p:
        assert await read_all(await p.post(server.url, {}, b"first")) == b"first"
        assert len(p._open) == 1 and idle_count(p) == 1
        await until(lambda: not p._open)  # the loop told the pool at once
        assert idle_count(p) == 0
        assert await read_all(await p.post(server.url, {}, b"second")) == b"second"
        assert server.accepts == 2
        assert len(p._open) == 1 and idle_count(p) == 1


async def test_expired_idle_connection_is_not_reused() -> None:
    async with serve(keep_answering) as server, pool(keepalive_expiry=0.05) as p:
        await read_all(await p.post(server.url, {}, b"a"))
        await asyncio.sleep(0.1)
        assert await read_all(await p.post(server.url, {}, b"b")) == b"b"
        assert server.accepts == 2
        assert len(p._open) == 1


async def test_unsolicited_answer_on_idle_connection_drops_it() -> None:
    """A server that writes on an idle connection (a 408 before closing, a stray second answer)
    has left it in an unknown state: it must not go back to the pool, let alone twice."""

    async def handler(peer: Peer) -> None:
        req = await peer.request()
        assert req is not None
        await peer.send(answer(req[1]))
        if peer.n == 1:
            await asyncio.sleep(0.05)
            await peer.send(answer(b"stray", status="408 Request Timeout"))
        await keep_answering(peer)

    async with serve(handler) as server, pool() as p:
        assert await read_all(await p.post(server.url, {}, b"first")) == b"first"
        await until(lambda: len(server.peers) == 1 and not p._open)
        assert idle_count(p) == 0
        a, b = await asyncio.gather(
            p.post(server.url, {}, b"call-a"), p.post(server.url, {}, b"call-b")
        )
        assert await read_all(a) == b"call-a"
        assert await read_all(b) == b"call-b"
        assert server.accepts == 3
        assert len(p._open) == 2 and idle_count(p) == 2


async def test_extra_bytes_after_an_answer_drop_the_connection() -> None:
    async def handler(peer: Peer) -> None:
        req = await peer.request()
        assert req is not None
        await peer.send(answer(req[1]) + (b"HTTP/1.1 200 OK\r\nContent-Le" if peer.n == 1 else b""))
        await keep_answering(peer)

    async with serve(handler) as server, pool() as p:
        assert await read_all(await p.post(server.url, {}, b"one")) == b"one"
        assert await read_all(await p.post(server.url, {}, b"two")) == b"two"
        assert server.accepts == 2
        assert len(p._open) == 1


# --- the request on the wire ------------------------------------------------------------------


async def test_request_bytes_on_the_wire() -> None:
    body = bytes(range(256)) * 3 + "é".encode()

    async with serve(keep_answering) as server, pool() as p:
        url = f"http://{HOST}:{server.port}/crm/xmlrpc/v1?a=1&b=two"
        response = await p.post(
            url, {"Content-Type": "text/xml", "X-Custom": "a b:c", "Accept-Encoding": "gzip"}, body
        )
        assert await read_all(response) == body
        [(_, head, got)] = server.requests
        assert head == (
            b"POST /crm/xmlrpc/v1?a=1&b=two HTTP/1.1\r\n"
            + f"Host: {HOST}:{server.port}\r\n".encode()
            + b"Content-Type: text/xml\r\nX-Custom: a b:c\r\nAccept-Encoding: gzip\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        assert got == body


async def test_empty_body_and_root_path() -> None:
    async with serve(keep_answering) as server, pool() as p:
        response = await p.post(f"http://{HOST}:{server.port}", {}, b"")
        assert await read_all(response) == b""
        [(_, head, got)] = server.requests
        assert head.startswith(b"POST / HTTP/1.1\r\n")
        assert b"\r\nContent-Length: 0\r\n\r\n" in head
        assert got == b""


def test_request_line_and_host_header() -> None:
    assert http1._Target("http://keap.test/x").head == "POST /x HTTP/1.1\r\nHost: keap.test\r\n"
    assert http1._Target("https://keap.test:443/x").head == (
        "POST /x HTTP/1.1\r\nHost: keap.test\r\n"
    )
    assert http1._Target("https://keap.test:8443").head == (
        "POST / HTTP/1.1\r\nHost: keap.test:8443\r\n"
    )
    assert (
        http1._Target("http://[::1]:8080/p?q").head == "POST /p?q HTTP/1.1\r\nHost: [::1]:8080\r\n"
    )
    target = http1._Target("https://api.keap.test/crm/xmlrpc/v1#frag")
    assert target.origin == ("https", "api.keap.test", 443)
    assert target.server_hostname == "api.keap.test"
    assert target.head.startswith("POST /crm/xmlrpc/v1 HTTP/1.1")


@pytest.mark.parametrize(
    "url", ["ftp://keap.test/x", "http:///nohost", "http://keap.test/a b", "keap.test/x"]
)
async def test_bad_urls_are_refused(url: str) -> None:
    async with pool() as p:
        with pytest.raises(UpstreamUnavailable):
            await p.post(url, {}, b"x")


async def test_big_body_arrives_intact() -> None:
    body = os.urandom(5 * 1024 * 1024 + 7)

    def digest_of(peer: Peer) -> Awaitable[None]:
        return keep_answering(peer, lambda b: answer(sha(b)))

    async with serve(digest_of) as server, pool() as p:
        response = await p.post(server.url, {"Content-Type": "text/xml"}, body)
        assert await read_all(response) == sha(body)
        [(_, head, got)] = server.requests
        assert f"Content-Length: {len(body)}\r\n".encode() in head
        assert len(got) == len(body) and got == body
        # The connection is still in step for the next call.
        small = await p.post(server.url, {}, b"small")
        assert await read_all(small) == sha(b"small")
        assert server.accepts == 1


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": "one\r\nX-Injected: 1"},
        {"X-A": "one\ntwo"},
        {"X-A": "one\rtwo"},
        {"X-A": "nul\x00"},
        {"X-A\r\nX-B": "v"},
        {"X-Ok": "fine", "X-A": "trailing\r\n"},
        {"X-A": "not latin-1 \u2603"},
    ],
)
async def test_unsafe_headers_are_refused_before_anything_is_sent(headers: dict[str, str]) -> None:
    async with serve(keep_answering) as server, pool() as p:
        with pytest.raises(UpstreamError) as info:
            await p.post(server.url, headers, b"x")
        assert type(info.value) is UpstreamError
        assert "refusing" in info.value.message
        await asyncio.sleep(0.02)
        assert server.accepts == 0  # not even a connection
        assert not p._open and p._connecting == 0


# --- failures ---------------------------------------------------------------------------------


async def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    async with pool() as p:
        with pytest.raises(UpstreamUnavailable, match="Could not connect"):
            await p.post(f"http://{HOST}:{port}/x", {}, b"x")
        assert not p._open and p._connecting == 0


async def test_connect_timeout_full_backlog() -> None:
    """A listener whose accept queue is full drops SYNs: a connect that hangs, on loopback."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):  # fill the accept queue until a connect hangs
            s = socket.socket()
            s.setblocking(False)
            fillers.append(s)
            with contextlib.suppress(BlockingIOError):
                s.connect((HOST, port))
        probe = socket.socket()
        probe.settimeout(0.1)
        fillers.append(probe)
        try:
            probe.connect((HOST, port))
        except (TimeoutError, BlockingIOError):
            pass
        else:
            pytest.skip("this kernel does not drop SYNs on a full accept queue")
        async with pool(connect_timeout=0.2) as p:
            started = time.monotonic()
            with pytest.raises(UpstreamUnavailable, match="Timed out connecting"):
                await p.post(f"http://{HOST}:{port}/x", {}, b"x")
            assert 0.15 < time.monotonic() - started < 1.5
            assert not p._open and p._connecting == 0
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_no_answer_is_a_read_timeout() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.eof(5.0)  # never answers; notes when the client gives up

    async with serve(handler) as server, pool(read_timeout=0.3) as p:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout) as info:
            await p.post(server.url, {}, b"x")
        assert 0.25 < time.monotonic() - started < 1.5
        assert "may or may not have run" in info.value.message
        assert not p._open and idle_count(p) == 0
        await until(lambda: not server._tasks)  # the client closed the connection


async def test_headers_then_stall_is_a_read_timeout_while_reading() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await peer.eof(5.0)

    async with serve(handler) as server, pool(read_timeout=0.3) as p:
        response = await p.post(server.url, {}, b"x")
        got = b""
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout, match="part way"):
            async for chunk in response.chunks():
                got += chunk
        assert got == b"0123456789"
        assert 0.25 < time.monotonic() - started < 1.5
        assert not p._open and idle_count(p) == 0
        await until(lambda: not server._tasks)


async def test_close_before_any_answer() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.close()

    async with serve(handler) as server, pool() as p:
        await post_fails(p, server, UpstreamError, "Keap connection failed")
        assert server.accepts == 1


@pytest.mark.parametrize("slow_loop", [False, True])
async def test_close_right_after_accept(slow_loop: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Closed by the server at once. With ``slow_loop`` the close lands between the handshake
    and the pool counting the connection (a busy loop makes that window real): the call must
    fail at once, not be written to a dead connection and wait out the read timeout, and the
    dead connection must not keep a pool slot."""
    if slow_loop:
        loop = asyncio.get_running_loop()
        create_connection = loop.create_connection

        async def late(*args: Any, **kw: Any) -> Any:
            made = await create_connection(*args, **kw)
            await asyncio.sleep(0.05)  # the loop runs other callbacks before the pool resumes
            return made

        monkeypatch.setattr(loop, "create_connection", late)

    async def handler(peer: Peer) -> None:
        peer.close()

    async with serve(handler) as server, pool(max_connections=1, read_timeout=1.0) as p:
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(UpstreamError) as info:
                await p.post(server.url, {}, b"x")
            assert not isinstance(info.value, UpstreamTimeout)
            if slow_loop:
                assert isinstance(info.value, UpstreamUnavailable)  # the call never left
            assert time.monotonic() - started < 0.5
            await until(lambda: not p._open)
        assert server.accepts == 3


@pytest.mark.parametrize("mode", ["length", "chunked"])
async def test_close_mid_body(mode: str) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        if mode == "length":
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 50)
        else:
            await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\naaaaa\r\n")
        await asyncio.sleep(0.02)
        peer.close()

    async with serve(handler) as server, pool() as p:
        response = await p.post(server.url, {}, b"x")
        got = b""
        with pytest.raises(UpstreamError, match="mid-answer") as info:
            async for chunk in response.chunks():
                got += chunk
        assert type(info.value) is UpstreamError
        assert got == (b"a" * 50 if mode == "length" else b"aaaaa")
        assert not p._open and idle_count(p) == 0
        assert server.accepts == 1


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"<html>hello</html>\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
    ],
)
async def test_garbage_instead_of_http(reply: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(reply)
        await peer.eof()

    async with serve(handler) as server, pool() as p:
        await post_fails(p, server, UpstreamError, "malformed")
        await until(lambda: not server._tasks)  # the client dropped the connection


async def test_garbage_mid_chunked_body() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await asyncio.sleep(0.02)
        await peer.send(b"zz\r\nnot a chunk\r\n")
        await peer.eof()

    async with serve(handler) as server, pool() as p:
        response = await p.post(server.url, {}, b"x")
        assert await read_fails(p, response, UpstreamError, "malformed") == b"abc"
        assert server.accepts == 1


async def test_protocol_upgrade_answer_is_an_error_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        )
        await peer.eof()

    async with serve(handler) as server, pool() as p:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            with pytest.raises(UpstreamError):
                await p.post(server.url, {}, b"x")
            await asyncio.sleep(0.02)
        assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
        assert not p._open
        assert server.accepts == 1


async def test_failures_leave_the_pool_usable() -> None:
    """After each kind of failure, the next call on the same pool works on a fresh connection."""
    script = ["close", "garbage", "midbody", "ok"]

    async def handler(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            what = script[len(server.requests) - 1]
            if what == "close":
                return
            if what == "garbage":
                await peer.send(b"NOT HTTP\r\n\r\n")
                return
            if what == "midbody":
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
                return
            await peer.send(answer(req[1]))

    async with serve(handler) as server, pool(max_connections=1) as p:
        with pytest.raises(UpstreamError):
            await p.post(server.url, {}, b"1")
        with pytest.raises(UpstreamError):
            await p.post(server.url, {}, b"2")
        response = await p.post(server.url, {}, b"3")
        with pytest.raises(UpstreamError):
            await read_all(response)
        assert await read_all(await p.post(server.url, {}, b"4")) == b"4"
        assert server.accepts == 4
        assert len(p._open) == 1


# --- flow control -----------------------------------------------------------------------------


async def test_flow_control_bounds_buffering(monkeypatch: pytest.MonkeyPatch) -> None:
    total = 32 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    for i in range(32):
        digest.update(i.to_bytes(4, "big") + block[4:])
    finished = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        for i in range(32):
            await peer.send(i.to_bytes(4, "big") + block[4:])
        finished.set()
        await keep_answering(peer)

    peak = 0
    feed = http1.Response._feed

    def counting_feed(self: http1.Response, chunk: bytes) -> int:
        nonlocal peak
        buffered = feed(self, chunk)
        peak = max(peak, buffered)
        return buffered

    monkeypatch.setattr(http1.Response, "_feed", counting_feed)
    bound = http1.HIGH_WATER + READ_SIZE

    async with serve(handler) as server, pool() as p:
        response = await p.post(server.url, {}, b"x")
        await asyncio.sleep(0.3)  # a slow reader: the client must stop reading from the socket
        assert http1.HIGH_WATER <= response._buffered <= bound
        assert not finished.is_set()  # the server is held back by TCP flow control
        got = hashlib.sha256()
        size = 0
        seen_max = 0
        n = 0
        async for chunk in response.chunks():
            seen_max = max(seen_max, response._buffered + len(chunk))
            got.update(chunk)
            size += len(chunk)
            n += 1
            if n < 20:
                await asyncio.sleep(0.005)  # still slow for a while
        assert size == total
        assert got.hexdigest() == digest.hexdigest()
        assert seen_max <= bound
        assert http1.HIGH_WATER <= peak <= bound
        assert finished.is_set()
        assert response._buffered == 0
        # Resumed and reusable afterwards.
        assert await read_all(await p.post(server.url, {}, b"next")) == b"next"
        assert server.accepts == 1


# --- closing early ----------------------------------------------------------------------------


async def test_closing_a_response_early_aborts_its_connection() -> None:
    async def handler(peer: Peer) -> None:
        req = await peer.request()
        assert req is not None
        if peer.n == 1:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 1000)
            await peer.eof()
            return
        await peer.send(answer(req[1]))
        await keep_answering(peer)

    async with serve(handler) as server, pool() as p:
        response = await p.post(server.url, {}, b"x")
        first = await anext(response.chunks())
        assert first.startswith(b"a")
        response.close()
        assert not p._open and idle_count(p) == 0
        assert response._buffered == 0
        with pytest.raises(UpstreamError):  # reading a closed answer fails, it does not hang
            await read_all(response)
        await until(lambda: server.accepts == 1 and len(server._tasks) == 0)
        assert await read_all(await p.post(server.url, {}, b"y")) == b"y"
        assert server.accepts == 2


async def test_closing_an_ended_response_keeps_the_connection() -> None:
    async with serve(keep_answering) as server, pool() as p:
        response = await p.post(server.url, {}, b"x")
        assert await read_all(response) == b"x"
        response.close()
        assert len(p._open) == 1 and idle_count(p) == 1
        assert await read_all(await p.post(server.url, {}, b"y")) == b"y"
        assert server.accepts == 1


async def test_cancelled_post_does_not_leak_its_connection() -> None:
    async def handler(peer: Peer) -> None:
        if peer.n == 1:
            await peer.request()
            await peer.eof(5.0)  # never answers the first call
            return
        await keep_answering(peer)

    async with serve(handler) as server, pool(max_connections=1, read_timeout=1.0) as p:
        task = asyncio.create_task(p.post(server.url, {}, b"x"))
        await until(lambda: len(server.requests) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not p._open  # the half-done call cost its connection, not a slot forever
        assert await read_all(await p.post(server.url, {}, b"y")) == b"y"
        assert server.accepts == 2


async def test_deadline_in_the_same_loop_turn_as_the_news_is_not_a_timeout() -> None:
    """The read-timeout timer and the wake-up can fall due in one loop turn: the answer that
    came in must win."""
    release: dict[int, asyncio.Event] = {}
    async with serve(holding(release)) as server, pool() as p:
        response = await p.post(server.url, {}, b"aaaAAA")
        [conn] = p._open
        waiter = asyncio.get_running_loop().create_future()
        waiter.set_result(None)  # the news is in; the timer fires before the reader runs
        conn._timed_out(response, waiter)
        assert not conn.closed
        release.setdefault(1, asyncio.Event()).set()
        assert await read_all(response) == b"aaaAAA"
        assert len(p._open) == 1 and idle_count(p) == 1


# --- max_connections --------------------------------------------------------------------------


def holding(release: dict[int, asyncio.Event]) -> Handler:
    """Answer with headers and 3 body bytes at once, the last 3 when ``release[n]`` is set."""

    async def handler(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            n = len(server_requests(peer))
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n" + req[1][:3])
            event = release.setdefault(n, asyncio.Event())
            await event.wait()
            await peer.send(req[1][3:6])

    return handler


def server_requests(peer: Peer) -> list[tuple[int, bytes, bytes]]:
    return peer.server.requests


async def test_max_connections_waits_for_a_free_connection() -> None:
    release: dict[int, asyncio.Event] = {}
    async with serve(holding(release)) as server, pool(max_connections=2) as p:
        a = await p.post(server.url, {}, b"aaaAAA")
        b = await p.post(server.url, {}, b"bbbBBB")
        third = asyncio.create_task(p.post(server.url, {}, b"cccCCC"))
        await asyncio.sleep(0.1)
        assert not third.done()  # waiting: both connections are busy
        assert server.accepts == 2 and len(p._open) == 2
        release.setdefault(2, asyncio.Event()).set()
        assert await read_all(b) == b"bbbBBB"
        c = await asyncio.wait_for(third, 1.0)
        release.setdefault(3, asyncio.Event()).set()
        release.setdefault(1, asyncio.Event()).set()
        assert await read_all(c) == b"cccCCC"
        assert await read_all(a) == b"aaaAAA"
        assert server.accepts == 2  # the third call reused the freed connection
        assert len(p._open) == 2


async def test_max_connections_wait_deadline() -> None:
    release: dict[int, asyncio.Event] = {}
    async with serve(holding(release)) as server, pool(max_connections=2, read_timeout=0.3) as p:
        a = await p.post(server.url, {}, b"aaaAAA")
        b = await p.post(server.url, {}, b"bbbBBB")
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="free connection"):
            await p.post(server.url, {}, b"cccCCC")
        assert 0.25 < time.monotonic() - started < 1.5
        assert server.accepts == 2
        for event in (1, 2):
            release.setdefault(event, asyncio.Event()).set()
        assert await read_all(a) == b"aaaAAA"
        assert await read_all(b) == b"bbbBBB"


async def _wait_for_312(fut: Awaitable[Any], timeout: float | None) -> Any:
    """``asyncio.wait_for`` as Python 3.12 has it: a cancel always propagates (3.11's returns
    the result instead when the awaited future is already done)."""
    async with asyncio.timeout(timeout):
        return await fut


@pytest.mark.parametrize("wait_for", ["native", "py312"])
async def test_cancelled_waiter_does_not_swallow_a_wakeup(
    wait_for: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if wait_for == "py312":
        monkeypatch.setattr(asyncio, "wait_for", _wait_for_312)
    release: dict[int, asyncio.Event] = {}
    async with serve(holding(release)) as server, pool(max_connections=1, read_timeout=1.0) as p:
        a = await p.post(server.url, {}, b"aaaAAA")
        b = asyncio.create_task(p.post(server.url, {}, b"bbbBBB"))
        c = asyncio.create_task(p.post(server.url, {}, b"cccCCC"))
        await asyncio.sleep(0.05)
        a.close()  # frees the slot and wakes the first waiter (b) ...
        b.cancel()  # ... which is cancelled before it can use it
        started = time.monotonic()
        try:
            got_b = await b
        except asyncio.CancelledError:
            pass
        else:  # Python 3.11's wait_for swallowed the cancel: b took the slot after all
            got_b.close()
        response = await c
        assert time.monotonic() - started < 0.5  # c was woken, not left to its deadline
        release.setdefault(len(server.requests), asyncio.Event()).set()
        assert await read_all(response) == b"cccCCC"
        assert not p._waiters or all(w.done() for w in p._waiters)


async def test_idle_connections_to_another_origin_give_way() -> None:
    async with (
        serve(keep_answering) as one,
        serve(keep_answering) as two,
        pool(max_connections=1, read_timeout=0.5) as p,
    ):
        assert await read_all(await p.post(one.url, {}, b"1")) == b"1"
        assert idle_count(p) == 1
        assert await read_all(await p.post(two.url, {}, b"2")) == b"2"
        assert len(p._open) == 1
        assert one.accepts == 1 and two.accepts == 1


# --- headers ----------------------------------------------------------------------------------


async def test_repeated_headers_are_joined_and_lookups_ignore_case() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            answer(
                b"x",
                headers=(
                    "Set-Cookie: a=1\r\nX-Thing: one\r\nset-cookie: b=2\r\nX-THING: two\r\n"
                    "X-Empty:\r\nX-Latin: caf\xe9\r\n"
                ),
            )
        )
        await peer.eof()

    async with serve(handler) as server, pool() as p:
        response = await p.post(server.url, {}, b"x")
        h = response.headers
        assert isinstance(h, http1.Headers)
        assert h["set-cookie"] == "a=1, b=2"
        assert h["Set-Cookie"] == h["SET-COOKIE"] == "a=1, b=2"
        assert h.get("x-thing") == h.get("X-Thing") == "one, two"
        assert "X-THING" in h and "x-thing" in h and "x-missing" not in h
        assert h.get("X-Missing") is None and h.get("X-Missing", "d") == "d"
        assert h["x-empty"] == ""
        assert h["x-latin"] == "caf\xe9"
        assert set(h) == {"set-cookie", "x-thing", "x-empty", "x-latin", "content-length"}
        with pytest.raises(KeyError):
            h["X-Missing"]
        assert 42 not in h


# --- closing the pool -------------------------------------------------------------------------


async def test_pool_aclose_closes_pooled_connections() -> None:
    eofs: list[bytes] = []

    async def handler(peer: Peer) -> None:
        req = await peer.request()
        assert req is not None
        await peer.send(answer(req[1]))
        eofs.append(await peer.eof())

    async with serve(handler) as server, pool() as p:
        a, b = await asyncio.gather(p.post(server.url, {}, b"a"), p.post(server.url, {}, b"b"))
        assert await read_all(a) == b"a" and await read_all(b) == b"b"
        assert len(p._open) == 2 and idle_count(p) == 2
        await p.aclose()
        assert not p._open and idle_count(p) == 0
        await until(lambda: len(eofs) == 2)  # the server saw both connections closed
        assert eofs == [b"", b""]


async def test_pool_aclose_fails_answers_in_flight() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await peer.eof()

    async with serve(handler) as server, pool() as p:
        response = await p.post(server.url, {}, b"x")
        await p.aclose()
        got = b""
        with pytest.raises(UpstreamError):
            async for chunk in response.chunks():
                got += chunk
        assert got == b"abc"
        assert not p._open


async def test_pool_aclose_fails_a_call_waiting_for_headers() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.eof(5.0)

    async with serve(handler) as server, pool() as p:
        task = asyncio.create_task(p.post(server.url, {}, b"x"))
        await until(lambda: len(server.requests) == 1)
        await p.aclose()
        with pytest.raises(UpstreamError):
            await asyncio.wait_for(task, 1.0)


# --- through shim.keap.client.Upstream -----------------------------------------------------------


async def test_upstream_open_read_decodes_a_gzip_error_body() -> None:
    text = b"<html><body>Service Unavailable: " + b"x" * 5000 + b"</body></html>"
    gz = gzip.compress(text)

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\n"
            b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked([gz[:10], gz[10:50], gz[50:]])
        )
        await keep_answering(peer)

    async with serve(handler) as server:
        upstream = Upstream(connect_timeout=1.0, read_timeout=2.0)
        try:
            assert upstream._http1 is not None  # no transport injected: the lean client
            response = await upstream.open(server.url, b"<methodCall/>", {"X-A": "1"})
            assert response.status == 503
            assert response.headers["Content-Encoding"] == "gzip"
            assert await response.read() == text
            assert await response.read(limit=10) == b""  # the body was consumed once
            [(_, head, body)] = server.requests
            assert body == b"<methodCall/>"
            assert b"\r\nX-A: 1\r\n" in head
        finally:
            await upstream.aclose()
        assert upstream._http1 is not None and not upstream._http1._open


async def test_upstream_iter_decoded_inflates_past_one_mebibyte_per_chunk() -> None:
    """One small gzip chunk that inflates to 5 MiB comes out whole, in bounded pieces."""
    text = b"a" * (5 << 20)
    gz = gzip.compress(text)

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gz)
            + gz
        )
        await keep_answering(peer)

    async with serve(handler) as server:
        upstream = Upstream(connect_timeout=1.0, read_timeout=2.0)
        try:
            response = await upstream.open(server.url, b"x", {})
            pieces = [piece async for piece in response.iter_decoded()]
            assert b"".join(pieces) == text
            assert max(len(piece) for piece in pieces) <= 1 << 20
        finally:
            await upstream.aclose()


async def test_upstream_peek_then_iter_raw_yields_the_body_once() -> None:
    parts = [b"<?xml version='1.0'?>", b"<methodResponse><params>", b"<param/></params>"]
    body = b"".join(parts) + b"</methodResponse>"

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in [*parts, b"</methodResponse>"]:
            await peer.send(b"%x\r\n%s\r\n" % (len(part), part))
            await asyncio.sleep(0.01)
        await peer.send(b"0\r\n\r\n")
        await keep_answering(peer)

    async with serve(handler) as server:
        upstream = Upstream(connect_timeout=1.0, read_timeout=2.0)
        try:
            response = await upstream.open(server.url, b"x", {})
            head = await response.peek(30)
            assert len(head) >= 30 and body.startswith(head)
            assert await response.peek(5) == head  # peeking again takes nothing more
            out = [chunk async for chunk in response.iter_raw()]
            assert b"".join(out) == body
            assert out[0] == head
            assert [chunk async for chunk in response.iter_raw()] == []
            await response.aclose()
            again = await upstream.open(server.url, b"y", {})
            assert await again.read() == b"y"
            assert server.accepts == 1
        finally:
            await upstream.aclose()


async def test_next_call_on_a_connection_is_woken_while_the_last_reader_resumes() -> None:
    """The race a refresh-stampede test hit: A waits for the rest of its body; the rest
    arrives, the connection goes back to the pool and another task (B, already runnable) takes
    it and installs its waiter before A's reader resumes. A must not clear B's waiter on its
    way out, or B never hears its own answer (and its read timer would not fire either)."""

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
        await peer.request()  # "def" is fed by the test itself, to order the two tasks
        await asyncio.sleep(0.1)  # B waits for its headers meanwhile
        await peer.send(answer(b"second"))
        await keep_answering(peer)

    async with serve(handler) as server, pool(read_timeout=1.0) as p:
        first = await p.post(server.url, {}, b"A")
        [conn] = p._open
        reading = asyncio.create_task(read_all(first))
        await until(lambda: first._waiter is not None)  # A's reader waits for its body
        second = asyncio.create_task(p.post(server.url, {}, b"B"))  # runnable before A
        conn.data_received(b"def")  # A's body ends: the connection is idle, A is woken
        assert await asyncio.wait_for(reading, 2.0) == b"abcdef"
        response = await asyncio.wait_for(second, 2.0)  # hung for ever before the fix
        assert await read_all(response) == b"second"
        assert server.accepts == 1


# --- TLS (Keap is https) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A CA and a server certificate that names ``localhost`` only (not 127.0.0.1)."""
    from types import SimpleNamespace

    from shim.tls.ca import make_ca, make_server_cert

    directory = tmp_path_factory.mktemp("tls")
    ca_cert, ca_key = make_ca("keyshim test CA", days=2)
    cert, key = make_server_cert(ca_cert, ca_key, ["localhost"], days=2)
    files = SimpleNamespace(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "s.pem",
        server_key=directory / "k.pem",
    )
    files.ca_cert.write_bytes(ca_cert)
    files.server_cert.write_bytes(cert)
    files.server_key.write_bytes(key)
    return files


@contextlib.asynccontextmanager
async def serve_tls(handler: Handler, files: Any) -> AsyncIterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.server_cert, files.server_key)
    server = Server(handler)
    listener = await asyncio.start_server(server._serve, HOST, 0, ssl=context)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for task in list(server._tasks):
            task.cancel()
        await asyncio.sleep(0)


async def test_https_answers_stream_and_connections_are_reused(tls_files: Any) -> None:
    """Over TLS with the CA trusted: the name is checked (SNI = the URL's host), answers come
    back, a large one streams through the TLS transport's flow control, and the connection
    is kept."""
    big = os.urandom(3 << 20)

    async def handler(peer: Peer) -> None:
        await keep_answering(peer, lambda body: answer(big if body == b"big" else body))

    def trusting() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(tls_files.ca_cert))

    async with serve_tls(handler, tls_files) as server:
        url = f"https://localhost:{server.port}/crm/xmlrpc/v1"
        p = http1.Pool(connect_timeout=2, read_timeout=5, max_connections=4, ssl_context=trusting)
        try:
            assert await read_all(await p.post(url, {}, b"hello")) == b"hello"
            assert await read_all(await p.post(url, {}, b"big")) == big
            assert server.accepts == 1
            [(_, head, _)] = server.requests[:1]
            assert f"Host: localhost:{server.port}\r\n".encode() in head
        finally:
            await p.aclose()


@pytest.mark.parametrize("trust", ["system CAs only", "the CA, but the wrong name"])
async def test_https_refuses_an_untrusted_certificate(tls_files: Any, trust: str) -> None:
    async def handler(peer: Peer) -> None:
        await keep_answering(peer)

    def context() -> ssl.SSLContext:
        if trust == "system CAs only":
            return ssl.create_default_context()
        return ssl.create_default_context(cafile=str(tls_files.ca_cert))

    async with serve_tls(handler, tls_files) as server:
        # The certificate names localhost only: by IP address the name does not match.
        host = "localhost" if trust == "system CAs only" else HOST
        url = f"https://{host}:{server.port}/x"
        p = http1.Pool(connect_timeout=2, read_timeout=2, max_connections=4, ssl_context=context)
        try:
            with pytest.raises(UpstreamUnavailable, match="Could not connect to Keap"):
                await p.post(url, {}, b"x")
            assert not p._open
        finally:
            await p.aclose()


async def test_a_call_whose_answer_came_whole_does_not_wait_on_the_next_call() -> None:
    """The hang the refresh-stampede test found (a call in ~100 never answered): A's whole
    answer arrives in one read while A waits for its headers; the connection goes back to the
    pool and B, already runnable, sends its call on it before A resumes. A must see its own
    answer as complete, not the connection's state (which now belongs to B), and B must hear
    its own answer."""

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(b"warm-up"))
        await peer.request()  # A's answer is fed by the test itself, to order the tasks
        await peer.request()
        await asyncio.sleep(0.1)
        await peer.send(answer(b"second"))
        await keep_answering(peer)

    async with serve(handler) as server, pool(read_timeout=1.0) as p:
        assert await read_all(await p.post(server.url, {}, b"one connection")) == b"warm-up"
        first = asyncio.create_task(p.post(server.url, {}, b"A"))
        await until(lambda: bool(p._open) and next(iter(p._open))._response is not None)
        [conn] = p._open
        second = asyncio.create_task(p.post(server.url, {}, b"B"))  # runnable before A
        conn.data_received(answer(b"first"))  # A's whole answer in one read
        a, b = await asyncio.wait_for(asyncio.gather(first, second), 2.0)
        assert await read_all(a) == b"first"
        assert await read_all(b) == b"second"
        assert server.accepts == 1


async def test_an_idle_connection_keap_is_closing_is_not_used() -> None:
    """Keap's FIN on an idle connection: the transport asks ``eof_received``, closes, and only
    schedules ``connection_lost``. A task that runs first in that loop turn (woken by another
    socket's event in the same batch) must not send its call on the closing connection: the
    write would be dropped and the call fail as "closed by Keap" though it never left."""
    async with serve(keep_answering) as server, pool() as p:
        assert await read_all(await p.post(server.url, {}, b"first")) == b"first"
        [conn] = p._open
        assert conn.transport is not None
        assert conn.eof_received() is False  # what the transport does with Keap's FIN ...
        conn.transport.close()  # ... connection_lost is now scheduled, not run
        response = await p.post(server.url, {}, b"second")
        assert await read_all(response) == b"second"
        assert server.accepts == 2
        await until(lambda: len(p._open) == 1)


async def test_a_new_connection_keap_is_closing_fails_as_never_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same race right after connecting: Keap's FIN was read before the pool resumed, and
    connection_lost is still due. The call never left: UpstreamUnavailable, and no slot kept.
    (Python 3.11's wait_for resumes a loop turn late, which hides this; 3.12's does not.)"""
    monkeypatch.setattr(asyncio, "wait_for", _wait_for_312)
    loop = asyncio.get_running_loop()
    create_connection = loop.create_connection

    async def fin_read(*args: Any, **kw: Any) -> Any:
        transport, conn = await create_connection(*args, **kw)
        assert conn.eof_received() is False
        transport.close()
        return transport, conn

    monkeypatch.setattr(loop, "create_connection", fin_read)
    async with serve(keep_answering) as server, pool(max_connections=1) as p:
        with pytest.raises(UpstreamUnavailable, match="before the call was sent"):
            await p.post(server.url, {}, b"x")
        assert not p._open and p._connecting == 0
        await asyncio.sleep(0.02)
        assert not server.requests


async def test_a_waiter_is_not_starved_by_a_caller_that_calls_again_at_once() -> None:
    """Fairness: A holds the only connection and, each time its answer ends, calls again at once
    (a busy worker). The answer's end wakes A's reader before it wakes the waiting call W, so
    A runs first and would take the connection back before W can: W then waits out its whole
    deadline ("no free connection") while A is served call after call."""

    async def slow(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            await asyncio.sleep(0.05)
            await peer.send(answer(req[1]))

    async with serve(slow) as server, pool(max_connections=1, read_timeout=0.5) as p:
        served: list[bytes] = []

        async def worker() -> None:
            for i in range(12):  # ~0.6 s of calls, longer than W's deadline
                served.append(await read_all(await p.post(server.url, {}, b"A%d" % i)))

        a = asyncio.create_task(worker())
        await until(lambda: len(server.requests) == 1)
        w = await p.post(server.url, {}, b"W")  # timed out waiting before the fix
        assert await read_all(w) == b"W"
        assert len(served) <= 2  # W went next, not after all of A's calls
        await a


async def test_a_new_call_takes_what_the_woken_waiters_leave_over() -> None:
    """The other side of fairness: two connections free up in one turn while one call waits.
    The waiter is owed one; a call arriving meanwhile takes the other at once, rather than
    queueing for a wake-up that no event is left to give."""

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:  # each answer's last 3 bytes: the test's
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")

    def finish(response: http1.Response) -> None:
        assert response._conn is not None
        response._conn.data_received(b"def")

    async with serve(handler) as server, pool(max_connections=2, read_timeout=0.5) as p:
        a = await p.post(server.url, {}, b"A")
        b = await p.post(server.url, {}, b"B")
        w = asyncio.create_task(p.post(server.url, {}, b"W"))
        await until(lambda: len(p._waiters) == 1)
        n = asyncio.create_task(p.post(server.url, {}, b"N"))  # runs before W is woken
        finish(a)  # both answers end: two connections free, one waiter
        finish(b)
        # Were N to queue behind W, no wake-up would come for it: it would time out.
        got = await asyncio.wait_for(asyncio.gather(w, n), 2.0)
        for response in got:
            finish(response)
        for response in (a, b, *got):
            assert await read_all(response) == b"abcdef"
        assert server.accepts == 2


@pytest.mark.timeout(3)  # before the fix the call spun for ever, holding the event loop
@pytest.mark.parametrize("status", ["000", "099"])
async def test_a_status_below_100_is_garbage_not_a_missing_status(status: str) -> None:
    """llhttp takes any three digits as a status. ``000`` reads as "status not in yet" (0):
    the call waited for headers that had come, and once the answer ended ``wait()`` returned at
    once, so it looped without ever yielding: the whole process hung."""

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(f"HTTP/1.1 {status} Odd\r\nContent-Length: 2\r\n\r\nhi".encode())
        await peer.eof()

    async with serve(handler) as server, pool() as p:
        await post_fails(p, server, UpstreamError, "malformed")


async def test_an_idle_tls_connection_keap_closed_is_not_used(tls_files: Any) -> None:
    """Over TLS the window is wider: on Keap's FIN the TLS layer calls ``eof_received`` and
    closes the socket a loop turn later, ``connection_lost`` comes a turn or two after that,
    and meanwhile the transport does not even say it is closing. A call taken in between
    would be dropped and fail as "closed by Keap"."""

    async def handler(peer: Peer) -> None:
        req = await peer.request()
        assert req is not None
        await peer.send(answer(req[1]))
        if peer.n == 1:
            await asyncio.sleep(0.05)
            peer.writer.transport.abort()  # FIN, no TLS close_notify
            return
        await keep_answering(peer)

    def trusting() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(tls_files.ca_cert))

    async with serve_tls(handler, tls_files) as server:
        url = f"https://localhost:{server.port}/crm/xmlrpc/v1"
        p = http1.Pool(connect_timeout=2, read_timeout=2, max_connections=4, ssl_context=trusting)
        try:
            assert await read_all(await p.post(url, {}, b"first")) == b"first"
            [conn] = p._open
            news = asyncio.get_running_loop().create_future()
            eof_received, connection_lost = conn.eof_received, conn.connection_lost

            def noting_eof() -> bool:
                if not news.done():
                    news.set_result(None)
                return eof_received()

            def noting_loss(exc: Exception | None) -> None:
                if not news.done():  # uvloop's TLS goes straight here on a FIN
                    news.set_result(None)
                connection_lost(exc)

            conn.eof_received = noting_eof  # type: ignore[method-assign]
            conn.connection_lost = noting_loss  # type: ignore[method-assign]
            await _wait_for_312(news, 2.0)  # resumes a loop turn after Keap's FIN was read
            assert await read_all(await p.post(url, {}, b"second")) == b"second"
            assert server.accepts == 2
        finally:
            await p.aclose()


async def test_aclose_during_a_connect_leaves_nothing_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shutdown while a call is still connecting: the call fails as never sent and the new
    connection is closed, not added to a pool that is gone."""
    loop = asyncio.get_running_loop()
    create_connection = loop.create_connection
    made: list[Any] = []

    async def slow(*args: Any, **kw: Any) -> Any:
        transport, protocol = await create_connection(*args, **kw)
        made.append(transport)
        await asyncio.sleep(0.1)  # aclose() runs meanwhile
        return transport, protocol

    monkeypatch.setattr(loop, "create_connection", slow)

    async def handler(peer: Peer) -> None:
        await keep_answering(peer)

    async with serve(handler) as server:
        p = http1.Pool(
            connect_timeout=1,
            read_timeout=1,
            max_connections=2,
            ssl_context=ssl.create_default_context,
        )
        call = asyncio.create_task(p.post(server.url, {}, b"x"))
        await until(lambda: bool(made))
        await p.aclose()
        with pytest.raises(UpstreamUnavailable, match="shutting down"):
            await call
        assert not p._open and made[0].is_closing()
        await until(lambda: not server._tasks)  # the server saw the connection close
        assert not server.requests


async def test_connect_failure_names_the_url() -> None:
    """A REST call to an account still on Keap's real REST URL failed with a bare resolver
    message ("Name or service not known"); the fault must say which URL it tried."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    p = http1.Pool(
        connect_timeout=2, read_timeout=2, max_connections=4, ssl_context=ssl.create_default_context
    )
    try:
        with pytest.raises(UpstreamUnavailable, match=f"at http://{HOST}:{port}"):
            await p.post(f"http://{HOST}:{port}/crm/rest/v2/contacts", {}, b"x")
    finally:
        await p.aclose()
