"""Serving ASGI apps: the only module that imports uvicorn.

keyshim and the bundled simulator are both plain ASGI apps; this serves either on a socket in
the foreground (``shim serve``, ``shim simulator``). Tests run them in a background thread
with their own helper (tests/support/servers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import signal
import socket
import struct
import sys
import threading
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from shim.logs import uvicorn_log_config
from shim.serve.asgi import ABORT, DECLARED
from shim.settings import Settings

#: The largest request line plus headers accepted (legacy clients send well under 2 KiB).
MAX_HEAD_BYTES = 64 * 1024

HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-length: 0\r\nconnection: close\r\n\r\n"
)
_BLANK_LINE = b"\r\n\r\n"  # ends a head, and a chunked body's trailer section
_HEX = re.compile(rb"[0-9A-Fa-f]+")


def _blank_line_end(tail: bytes, data: bytes, start: int, stop: int) -> int | None:
    """The offset in ``data`` just past the first CRLF CRLF that ends in ``data[start:stop]``;
    ``tail`` (at most 3 bytes) is what came just before ``data[start]``, maybe in another read."""
    if tail:
        found = (tail + data[start : start + 3]).find(_BLANK_LINE)
        if found >= 0:  # begins in the tail: earlier than any match inside data[start:]
            end = start + found + 4 - len(tail)
            return end if end <= stop else None
    found = data.find(_BLANK_LINE, start, stop)
    return None if found < 0 else found + 4


def _tail(tail: bytes, data: bytes, start: int, end: int) -> bytes:
    """The last 3 bytes of ``tail + data[start:end]``."""
    return (tail + data[max(start, end - 3) : end])[-3:]


class _Length:
    """Where a body framed by Content-Length ends."""

    def __init__(self, size: int) -> None:
        self.left = size

    def end(self, data: bytes, start: int) -> int | None:
        """Take ``data[start:]``; the offset where the body ends, if it ends in it."""
        if len(data) - start >= self.left:
            end, self.left = start + self.left, 0
            return end
        self.left -= len(data) - start
        return None


class _Chunked:
    """Where a chunked body ends: each chunk's size line is read to skip its data, and the
    body ends at the blank line after the last (zero) chunk and its trailer fields.

    It only finds the end of a body that llhttp accepts (strict CRLFs, hex sizes); llhttp still
    checks every byte, and on anything else it answers 400 before this matters.
    """

    def __init__(self) -> None:
        self.state = "size"  # size line, "data" (and its CRLF), "trailer", "lost"
        self.line = b""  # the start of the size line read so far
        self.left = 0
        self.tail = b""
        #: The body size the size lines read so far declare (what the app will have at most
        #: once their chunks arrive): a chunk over the body limit is refused from its line.
        self.declared = 0

    def declared_size(self) -> int:
        return self.declared

    def end(self, data: bytes, start: int) -> int | None:
        pos = start
        while pos < len(data):
            if self.state == "data":
                step = min(self.left, len(data) - pos)
                pos, self.left = pos + step, self.left - step
                if not self.left:
                    self.state = "size"
            elif self.state == "size":
                newline = data.find(b"\n", pos)
                stop = len(data) if newline < 0 else newline
                self.line += data[pos : min(stop, pos + 32 - len(self.line))]
                if newline < 0:
                    return None
                digits = _HEX.match(self.line)
                size = int(digits.group(), 16) if digits else -1
                pos, self.line = newline + 1, b""
                if size < 0:
                    self.state = "lost"  # not a size line: the parser answers 400
                elif size:
                    self.state, self.left = "data", size + 2
                    self.declared += size
                else:  # the CRLF that ended this line may also start the blank line
                    self.state, self.tail = "trailer", b"\r\n"
            elif self.state == "trailer":
                end = _blank_line_end(self.tail, data, pos, len(data))
                if end is not None:
                    return end
                self.tail = _tail(self.tail, data, pos, len(data))
                return None
            else:
                return None
        return None


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a deadline and a size bound for each request head.

    uvicorn arms no timer while it reads a request line and headers, so a client that opens
    connections and trickles (or never sends) its head would hold them for ever. Each head must
    now arrive within ``SHIM_HEAD_TIMEOUT`` of the connection or of its first byte, and within
    ``MAX_HEAD_BYTES`` (else 431); bodies have their own limits in the app.

    To count only head bytes, each read is fed to the parser in parts that end where a head
    or a body ends: a head up to its blank line, after checking that it fits; a body up to its
    length, or its last chunk. So a read carrying a whole request, or a request and the start
    of the next, counts each head alone, and a head over the limit is refused before the
    parser sees the end of it (it is never handed to the app).

    Answers go out in request order: a refusal (431, or uvicorn's 400 for a malformed request)
    behind requests the app still has waits for their answers, and a head's clock starts once
    the requests before it are answered.
    """

    _timeout: float | None = None
    _head_timer: asyncio.TimerHandle | None = None
    #: Where the parser is: "idle" between requests, "head" or "body" of one.
    _phase: str = "idle"
    _ended: int = 0  # requests parsed to their end
    _head_bytes: int = 0  # bytes of the current head (and blank lines before it) fed so far
    _tail: bytes = b""  # the last bytes fed while looking for the end of a head
    _body: _Length | _Chunked | None = None
    _refused: bool = False  # a refusal is decided: nothing more is parsed
    _refusal: bytes | None = None  # a refusal waiting for earlier requests' answers

    @classmethod
    def timeout(cls) -> float:
        if cls._timeout is None:  # read once per process (workers are separate processes)
            cls._timeout = Settings.from_env().head_timeout
        return cls._timeout

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        pos, size = 0, len(data)
        while pos < size and not self._refused:
            body = self._phase == "body"
            if body:
                end = self._body.end(data, pos) if self._body is not None else None
                if end is None or end <= pos:
                    end = size
            else:
                budget = MAX_HEAD_BYTES - self._head_bytes
                end = _blank_line_end(self._tail, data, pos, min(size, pos + budget))
                if end is None:
                    if size - pos > budget:  # httptools would keep every header line
                        self._refuse(HEAD_TOO_LARGE)
                        return
                    end = size
            ended = self._ended
            declared = self._body.declared if body and isinstance(self._body, _Chunked) else 0
            super().data_received(data[pos:end])
            if self._refused or self.transport.is_closing():
                return
            if declared and self.cycle is not None:
                # Wake the app's body reader: it compares what is declared with its limit
                # (asgi.DECLARED), so a chunk it cannot take is refused before its data comes.
                self.cycle.message_event.set()
            # Book the part to the head or body it belongs to.
            if self._phase == "body":
                if not body or self._ended != ended:  # a head ended here: its body comes next
                    self._body, self._head_bytes, self._tail = self._framing(), 0, b""
                    if isinstance(self._body, _Chunked):
                        self.scope["extensions"][DECLARED] = self._body.declared_size
            elif self._ended != ended:  # a request ended here: what follows is the next head
                self._body = None
                if self._phase == "head":  # it began in this part: count the part, at most
                    self._head_bytes, self._tail = end - pos, _tail(b"", data, pos, end)
                else:
                    self._head_bytes, self._tail = 0, b""
                if self.parser.should_upgrade():
                    return  # as in uvicorn, the rest of a read after an upgrade is dropped
            else:
                self._head_bytes += end - pos
                self._tail = _tail(self._tail, data, pos, end)
            pos = end

    def _framing(self) -> _Length | _Chunked | None:
        """How the body of the request whose head just ended is framed (llhttp has checked
        that there is one Content-Length, or a Transfer-Encoding ending in chunked)."""
        length = 0
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return _Chunked()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return None
        return _Length(length) if length else None

    def _refuse(self, answer: bytes) -> None:
        """Answer a request that will not be parsed, and close: now, or once the requests
        before it have their answers."""
        self._refused = True
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            self._refusal = answer
            self.flow.pause_reading()
        else:
            self.transport.write(answer)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a malformed request, sent after the answers owed before it."""
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(msg)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                msg.encode("ascii"),
            ]
        )
        answer = b"".join(content)
        cycle = self.cycle
        if self._phase != "body" or cycle is None:
            self._refuse(answer)  # a head: nothing of this request was handed to the app
            return
        # The body of a request the app has: the app never gets all of it, so never forwards it.
        queued = next((item for item in self.pipeline if item[0] is cycle), None)
        if queued is not None:  # not started: it will not be
            self.pipeline.remove(queued)
            self._refuse(answer)
        elif cycle.response_started:  # answered without its body: that is its one answer
            self._refused = True
            cycle.keep_alive = False
            if cycle.response_complete:
                self.transport.close()
        else:  # the app waits for the body: this is its answer, and the app sees a disconnect
            self._refused = True
            self._disarm()
            self.transport.write(answer)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # The app may cut a client that stopped reading (asgi.ABORT): a close would wait for
        # the unread answer to drain first, which never happens.
        self.scope["extensions"] = {ABORT: self._cut}
        self._phase = "head"
        if self.cycle is None or self.cycle.response_complete:
            self._arm()  # else from the answer to the request before it (on_response_complete)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._phase = "body"

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = "idle"
        self._ended += 1

    def on_response_complete(self) -> None:
        last = not self.pipeline  # no request parsed after this one waits to start
        super().on_response_complete()
        if not last or self.transport.is_closing():
            return
        if self._refusal is not None:
            self._unset_keepalive_if_required()
            self.transport.write(self._refusal)
            self.transport.close()
            self._refusal = None
        elif self._phase == "head":
            self._arm()

    def _cut(self) -> None:
        """Drop the connection now, discarding what the client has not read (a reset: the
        kernel would otherwise keep trickling the unread answer to it after the close)."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

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
    graceful_timeout: float | None = None,
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
        # On a signal, calls in progress get this long to finish before they are cancelled
        # (a refresh they started is finished anyway: chains.Chains._uncancelled).
        timeout_graceful_shutdown=None if graceful_timeout is None else math.ceil(graceful_timeout),
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
    supervisor = _Supervisor(config, sockets=[config.bind_socket()])
    with contextlib.suppress(KeyboardInterrupt):
        supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        sys.exit(STARTUP_FAILURE)


class _Supervisor(Multiprocess):
    """uvicorn's supervisor for ``--workers N``, woken at once by a stop signal.

    uvicorn's own handler only queues the signal for a loop that looks every 0.5 s, so a
    SIGTERM to an idle ``shim serve --workers 2`` took over a second to reach the workers (a
    deploy's restart waits on that). SIGINT and SIGTERM now also set the exit event the loop
    waits on; the workers then stop as before (finishing any refresh in flight).
    """

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets=sockets)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)

    def _stop(self, sig: int, frame: object) -> None:
        self.signal_queue.append(sig)
        self.should_exit.set()


class Beside:
    """A second, small server in a thread of this process (the admin page on its own port)."""

    def __init__(
        self, app: Any, *, host: str, port: int, certfile: str | None, keyfile: str | None
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            log_config=None,  # the main server set logging up
            access_log=False,
            server_header=False,
            proxy_headers=False,
            http=HeadTimeoutProtocol,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()), name="admin", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Let the thread shut its app down (the admin audit is flushed) and end."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
