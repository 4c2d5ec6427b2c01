"""How keyshim's HTTP/1.1 layer cuts a byte stream into requests, over real loopback sockets.

keyshim (``KeyshimApp`` under uvicorn with ``HeadTimeoutProtocol``) runs in front of the
bundled Keap simulator (also under uvicorn); the simulator's own count of XML-RPC calls says
what reached "Keap". The scripts are raw sockets, so the bytes on the wire are the point.

How a stream is split into reads decides what the protocol sees, and a socket does not
promise any split. So keyshim runs with ``Regrouped``, a thin subclass that holds what the
socket delivers and hands it to ``HeadTimeoutProtocol.data_received`` in exactly the reads a
test asks for (one read for a whole request, a split at a given byte...). A test that asks for
nothing gets the socket's own reads, as in production.

What must hold (issue #15): a well-formed request gets exactly one answer, the app's, however
big and however split; only head bytes count toward the 64 KiB head limit, and a head over it
gets 431 without reaching the app; an error answer from keyshim's own HTTP layer (400, 408,
413, 431) means nothing was sent upstream; answers go out in request order.
"""

from __future__ import annotations

import contextlib
import random
import socket
import string
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shim import xmlrpc
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services, init_files, open_store
from shim.serve.server import MAX_HEAD_BYTES, HeadTimeoutProtocol, _Chunked
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from tests.support.servers import BackgroundServer
from tests.support.stack import add_oauth_account, issue_key

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.1"
#: keyshim's body limit in these tests: room for the 5 MB requests of the issue.
MAX_BODY = 6 * 1024 * 1024


# --- keyshim with reads on demand -----------------------------------------------------------


class Regrouped(HeadTimeoutProtocol):
    """``HeadTimeoutProtocol`` fed in the reads a test planned for the connection.

    ``plans[port]`` (the client's port, set before it connects) lists read sizes: the bytes
    are held until the next planned read is complete, then handed on in one
    ``data_received``; bytes past the plan go on as they come. ``reads[port]`` records the
    sizes ``HeadTimeoutProtocol`` was given, planned or not.
    """

    plans: ClassVar[dict[int, list[int]]] = {}
    reads: ClassVar[dict[int, list[int]]] = {}

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        port = self.client[1] if self.client else 0
        self._plan = self.plans.pop(port, [])
        self._reads = self.reads[port] = []
        self._held = bytearray()

    def data_received(self, data: bytes) -> None:
        self._held += data
        while self._held and not self.transport.is_closing():
            size = self._plan[0] if self._plan else len(self._held)
            if len(self._held) < size:
                return
            if self._plan:
                self._plan.pop(0)
            part = bytes(self._held[:size])
            del self._held[:size]
            self._reads.append(len(part))
            super().data_received(part)


@dataclass
class Rig:
    settings: Settings
    sim: Simulator
    key: str
    port: int
    servers: list[BackgroundServer]

    def upstream_calls(self) -> int:
        """XML-RPC calls the simulator received (its own count)."""
        return int(self.sim.stats()["xmlrpc_calls"])


def start_shim(settings: Settings, servers: list[BackgroundServer]) -> BackgroundServer:
    server = BackgroundServer(KeyshimApp(settings, build_services))
    server._server.config.http = Regrouped  # still unloaded: uvicorn takes the class at start
    server.__enter__()
    servers.append(server)
    return server


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("framing")
    settings = Settings.from_env({}, db=str(tmp / "keyshim.db"), max_body=MAX_BODY)
    init_files(settings)
    store = open_store(settings)
    servers: list[BackgroundServer] = []
    try:
        sim = Simulator(SimConfig())
        sim_server = BackgroundServer(sim.app)
        sim_server.__enter__()
        servers.append(sim_server)
        add_oauth_account(store, sim, sim_server.url)
        key = issue_key(store, settings, "prod")
        shim = start_shim(settings, servers)
        yield Rig(settings, sim, key, shim.port, servers)
    finally:
        for server in reversed(servers):
            server.__exit__(None, None, None)
        store.close()


# --- requests ----------------------------------------------------------------------------------

PAD = (string.ascii_letters + string.digits) * 64


def echo_body(key: str, size: int, *, between: str = "") -> tuple[bytes, str | None]:
    """A ``DataService.echo`` call through the account, exactly ``size`` bytes, and the text it
    echoes; too small for a call, ``size`` bytes of junk (the app answers a fault) and None.
    ``between`` goes between the two params (XML whitespace, e.g. CRLFs)."""
    head = (
        '<?xml version="1.0"?><methodCall><methodName>DataService.echo</methodName><params>'
        f"<param><value><string>{key}</string></value></param>{between}"
        "<param><value><string>"
    )
    tail = "</string></value></param></params></methodCall>"
    room = size - len(head) - len(tail)
    if room < 0:
        return b"<" * size, None
    text = (PAD * (room // len(PAD) + 1))[:room]
    return (head + text + tail).encode(), text


def request(
    body: bytes,
    *,
    head_size: int | None = None,
    chunked: int | None = None,
    extra: str = "",
    trailer: str = "",
) -> bytes:
    """A POST to the XML-RPC endpoint; ``head_size`` pads the head (request line, headers and
    blank line) to exactly that many bytes; ``chunked`` sends the body in chunks that big."""
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {len(body)}\r\n"
    head = f"POST /api/xmlrpc HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/xml\r\n{framing}"
    head += extra
    if head_size is not None:
        pad = head_size - len(head) - len("X-Pad: \r\n\r\n")
        assert pad >= 0, head_size
        head += "X-Pad: " + "p" * pad + "\r\n"
    raw = (head + "\r\n").encode()
    assert head_size is None or len(raw) == head_size
    if not chunked:
        return raw + body
    parts = [raw]
    for i in range(0, len(body), chunked):
        piece = body[i : i + chunked]
        parts.append(b"%x;piece=%d\r\n" % (len(piece), i) + piece + b"\r\n")
    parts.append(b"0\r\n" + trailer.encode() + b"\r\n")
    return b"".join(parts)


def head_length(raw: bytes) -> int:
    return raw.index(b"\r\n\r\n") + 4


# --- answers -----------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def value(self) -> Any:
        """The echoed value (raises ``xmlrpc.Fault`` for a fault)."""
        return xmlrpc.parse_response(self.body)


@dataclass
class Exchange:
    answers: list[Answer]
    rest: bytes  # what came after the answers read, up to keyshim's close
    reads: list[int] = field(default_factory=list)  # the reads HeadTimeoutProtocol got
    upstream: int = 0  # XML-RPC calls that reached the simulator meanwhile


class Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        self.buf += data
        return bool(data)

    def _take(self, size: int) -> bytes:
        while len(self.buf) < size:
            if not self._fill():
                raise AssertionError(f"connection closed {size - len(self.buf)} bytes short")
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError(f"connection closed in a line: {bytes(self.buf)[:200]!r}")
        return self._take(self.buf.index(b"\r\n") + 2)[:-2]

    def answer(self) -> Answer | None:
        """The next answer, or None when the connection closes before one begins."""
        if not self.buf and not self._fill():
            return None
        status = int(self._line().split()[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._take(size))
                self._take(2)
            while self._line():
                pass
            body = b"".join(parts)
        else:
            while self._fill():
                pass
            body, self.buf = bytes(self.buf), bytearray()
        return Answer(status, headers, body)

    def rest(self) -> bytes:
        while self._fill():
            pass
        return bytes(self.buf)


def exchange(
    rig: Rig,
    data: bytes,
    *,
    plan: list[int] | None = None,
    answers: int = 1,
    port: int | None = None,
    settle: float = 0.0,
) -> Exchange:
    """Send ``data`` on a new connection (in one ``sendall``, from a thread of its own, so a
    big pipeline cannot deadlock against its answers); read ``answers`` answers, then half-close
    and read whatever else comes until keyshim closes. ``plan``: the reads keyshim gets.
    ``settle``: wait this long before counting upstream calls (a call forwarded after its
    error answer would show up late)."""
    before = rig.upstream_calls()
    sock = socket.socket()
    sock.settimeout(30)
    try:
        sock.bind((HOST, 0))
        client_port = sock.getsockname()[1]
        if plan is not None:
            assert sum(plan) == len(data)
            Regrouped.plans[client_port] = list(plan)
        sock.connect((HOST, port or rig.port))
        sent = threading.Thread(target=_send, args=(sock, data), daemon=True)
        sent.start()
        reader = Reader(sock)
        got = []
        for _ in range(answers):
            answer = reader.answer()
            if answer is None:
                break
            got.append(answer)
        sent.join(30)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        rest = reader.rest()
    finally:
        sock.close()
    time.sleep(settle)
    reads = Regrouped.reads.pop(client_port, [])
    return Exchange(got, rest, reads, rig.upstream_calls() - before)


def _send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # keyshim may close early (a refusal): that is checked
        sock.sendall(data)


def assert_echoed(answer: Answer, text: str | None) -> None:
    """The app's answer to ``echo_body``: the text back, or (junk body) a parse fault."""
    assert answer.status == 200, (answer.status, answer.body[:300])
    if text is None:
        with pytest.raises(xmlrpc.Fault) as fault:
            answer.value()
        assert "Failed to parse XML-RPC request" in fault.value.string
    else:
        value = answer.value()
        assert value == text, (len(value), len(text))


# --- a whole request in one read -------------------------------------------------------------

#: Body sizes from 1 byte to the body limit, dense where the whole request crosses 64 KiB.
#: The smallest echo call is 242 bytes; smaller bodies are junk the app answers with a fault.
HEAD_HERE = len(request(b"x" * 10_000)) - 10_000  # with a 5-digit Content-Length
ONE_READ_SIZES = sorted(
    {1, 2, 100, 241, 242, 1000, 10_000, 50_000, 65_000, 100_000, 262_144, 1_000_000, MAX_BODY}
    | {MAX_HEAD_BYTES - HEAD_HERE + d for d in (-1, 0, 1, 2)}
)


@pytest.mark.parametrize("size", ONE_READ_SIZES)
def test_whole_request_in_one_read(rig: Rig, size: int) -> None:
    body, text = echo_body(rig.key, size)
    raw = request(body)
    done = exchange(rig, raw, plan=[len(raw)])
    assert done.reads == [len(raw)]
    assert len(done.answers) == 1
    assert_echoed(done.answers[0], text)
    assert done.rest == b""  # no second answer (the 431 of issue #15), nothing else
    assert done.upstream == (0 if text is None else 1)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        # The issue's upload: a 64 KiB file (base64 in the call) and a contact over 64 KiB.
        ("FileService.uploadFile", ["<int>0</int>", "<string>big.bin</string>", "FILE"]),
        ("ContactService.add", ["CONTACT"]),
    ],
)
def test_issue_calls_in_one_read(rig: Rig, method: str, params: list[str]) -> None:
    data = "<base64>" + "QUJD" * (64 * 1024 // 3 + 1) + "</base64>"
    contact = (
        "<struct><member><name>FirstName</name><value>Big</value></member>"
        "<member><name>Company</name><value>" + "n" * 70_000 + "</value></member></struct>"
    )
    values = [p.replace("FILE", data).replace("CONTACT", contact) for p in params]
    body = (
        f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>"
        f"<param><value><string>{rig.key}</string></value></param>"
        + "".join(f"<param><value>{v}</value></param>" for v in values)
        + "</params></methodCall>"
    ).encode()
    raw = request(body)
    assert len(raw) > 64 * 1024
    calls = rig.sim.stats()["calls_by_method"].get(method, 0)
    done = exchange(rig, raw, plan=[len(raw)])
    assert [a.status for a in done.answers] == [200]
    assert isinstance(done.answers[0].value(), int)  # the new file's or contact's id
    assert done.rest == b""
    assert done.upstream == 1
    assert rig.sim.stats()["calls_by_method"][method] == calls + 1


# --- a split at every byte near the end of the head -------------------------------------------

SPLIT_BODY = 100_000  # over 64 KiB: the old code counted it as head when it came with the end
SPLIT_AROUND = 8


@pytest.mark.parametrize("delta", range(-SPLIT_AROUND, SPLIT_AROUND + 1))
def test_split_near_end_of_head(rig: Rig, delta: int) -> None:
    body, text = echo_body(rig.key, SPLIT_BODY)
    raw = request(body)
    cut = head_length(raw) + delta
    done = exchange(rig, raw, plan=[cut, len(raw) - cut])
    assert done.reads == [cut, len(raw) - cut]
    assert len(done.answers) == 1
    assert_echoed(done.answers[0], text)
    assert done.rest == b""
    assert done.upstream == 1


@pytest.mark.parametrize("delta", range(-4, 5))
def test_head_limit_counts_only_the_head(rig: Rig, delta: int) -> None:
    """A head of exactly the limit, with a body far over it, split near the head's end."""
    body, text = echo_body(rig.key, 200_000)
    raw = request(body, head_size=MAX_HEAD_BYTES)
    cut = MAX_HEAD_BYTES + delta
    done = exchange(rig, raw, plan=[cut, len(raw) - cut])
    assert [a.status for a in done.answers] == [200]
    assert_echoed(done.answers[0], text)
    assert done.rest == b""
    assert done.upstream == 1


# --- pipelined requests ------------------------------------------------------------------------


def pipeline(key: str) -> tuple[list[bytes], list[str | None]]:
    """Requests of several sizes and framings, in order, and what each must echo."""
    raws, texts = [], []
    for size, chunked in [(400, None), (100_000, None), (1, None), (70_000, 4096), (5000, None)]:
        body, text = echo_body(key, size, between="\r\n\r\n\r\n" if chunked else "")
        trailer = "X-Check: 1\r\n" if chunked else ""
        raws.append(request(body, chunked=chunked, trailer=trailer))
        texts.append(text)
    return raws, texts


def check_pipeline(done: Exchange, texts: list[str | None]) -> None:
    assert len(done.answers) == len(texts), [a.status for a in done.answers]
    for answer, text in zip(done.answers, texts, strict=True):
        assert_echoed(answer, text)
    assert done.rest == b""
    assert done.upstream == sum(text is not None for text in texts)


def test_pipelined_in_one_read(rig: Rig) -> None:
    raws, texts = pipeline(rig.key)
    data = b"".join(raws)
    done = exchange(rig, data, plan=[len(data)], answers=len(raws))
    assert done.reads == [len(data)]
    check_pipeline(done, texts)


@pytest.mark.parametrize("delta", range(-5, 6))
def test_pipelined_split_near_each_boundary(rig: Rig, delta: int) -> None:
    """Every request boundary (end of a body, chunked or not) and every head end, +-5 bytes."""
    raws, texts = pipeline(rig.key)
    data = b"".join(raws)
    cuts, at = set(), 0
    for raw in raws:
        cuts |= {at + head_length(raw) + delta, at + len(raw) + delta}
        at += len(raw)
    points = sorted(c for c in cuts if 0 < c < len(data))
    plan = [b - a for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    done = exchange(rig, data, plan=plan, answers=len(raws))
    assert done.reads == plan
    check_pipeline(done, texts)


@pytest.mark.slow
def test_pipelined_random_reads(rig: Rig) -> None:
    """The same pipeline in 12 random read patterns, from 1-byte reads to big ones."""
    raws, texts = pipeline(rig.key)
    data = b"".join(raws)
    chance = random.Random(15)
    for _ in range(12):
        points = sorted(chance.sample(range(1, len(data)), chance.choice([1, 3, 10, 60])))
        plan = [b - a for a, b in zip([0, *points], [*points, len(data)], strict=True)]
        check_pipeline(exchange(rig, data, plan=plan, answers=len(raws)), texts)


# --- keyshim's own error answers: nothing goes upstream ---------------------------------------


def test_431_head_over_the_limit_is_never_dispatched(rig: Rig) -> None:
    body, _ = echo_body(rig.key, 1000)
    for plan_kind in ("one read", "head then body", "byte at the end"):
        raw = request(body, head_size=MAX_HEAD_BYTES + 1)
        head = MAX_HEAD_BYTES + 1
        plan = {
            "one read": [len(raw)],
            "head then body": [head, len(raw) - head],
            "byte at the end": [head - 1, 1, len(raw) - head],
        }[plan_kind]
        done = exchange(rig, raw, plan=plan, settle=0.2)
        assert [a.status for a in done.answers] == [431], plan_kind
        assert done.rest == b""
        assert done.upstream == 0, plan_kind


def test_431_behind_a_good_request_comes_after_its_answer(rig: Rig) -> None:
    body, text = echo_body(rig.key, 100_000)
    good, bad = request(body), request(body, head_size=MAX_HEAD_BYTES + 10)
    done = exchange(rig, good + bad, plan=[len(good + bad)], answers=2, settle=0.2)
    assert [a.status for a in done.answers] == [200, 431]
    assert_echoed(done.answers[0], text)
    assert done.rest == b""
    assert done.upstream == 1


BAD_HEADS = {
    "bare LF": b"POST /api/xmlrpc HTTP/1.1\nHost: x\nContent-Type: text/xml\n",
    "space before colon": b"POST /api/xmlrpc HTTP/1.1\r\nHost : x\r\nContent-Type: text/xml\r\n",
    "two lengths": b"POST /api/xmlrpc HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n",
}


@pytest.mark.parametrize("case", sorted(BAD_HEADS))
def test_400_malformed_head_is_never_dispatched(rig: Rig, case: str) -> None:
    body, _ = echo_body(rig.key, 1000)
    newline = b"\n" if case == "bare LF" else b"\r\n"
    raw = BAD_HEADS[case] + b"Content-Length: %d" % len(body) + newline * 2 + body
    done = exchange(rig, raw, plan=[len(raw)], settle=0.2)
    assert [a.status for a in done.answers] == [400]
    assert done.rest == b""
    assert done.upstream == 0


def test_400_broken_chunked_body_is_never_forwarded(rig: Rig) -> None:
    body, _ = echo_body(rig.key, 20_000)
    raw = request(body, chunked=4096)
    raw = raw.replace(b"\r\n1000;piece=8192\r\n", b"\r\nzz\r\n")  # not a chunk size
    done = exchange(rig, raw, plan=[len(raw)], settle=0.2)
    assert [a.status for a in done.answers] == [400]
    assert done.rest == b""
    assert done.upstream == 0


def test_400_behind_good_requests_comes_after_their_answers(rig: Rig) -> None:
    """A malformed head, and a broken body of a request still queued behind a running one."""
    body, text = echo_body(rig.key, 100_000)
    good = request(body)
    broken = request(echo_body(rig.key, 20_000)[0], chunked=4096)
    broken = broken.replace(b"\r\n1000;piece=8192\r\n", b"\r\nzz\r\n")
    for bad in (BAD_HEADS["space before colon"] + b"\r\n", broken):
        data = good + good + bad
        done = exchange(rig, data, plan=[len(data)], answers=3, settle=0.2)
        assert [a.status for a in done.answers] == [200, 200, 400]
        assert_echoed(done.answers[0], text)
        assert_echoed(done.answers[1], text)
        assert done.rest == b""
        assert done.upstream == 2


def test_400_after_an_early_answer_is_not_a_second_answer(rig: Rig) -> None:
    """The app answers a request before its body is in (a 404 here); when the rest of the
    body then turns out malformed, that answer stays the request's only one."""
    raw = request(b"x" * 5000, chunked=1000).replace(b"/api/xmlrpc", b"/nowhere")
    cut = raw.index(b"\r\n3e8;piece=2000")
    with socket.create_connection((HOST, rig.port), timeout=10) as sock:
        sock.sendall(raw[:cut])
        reader = Reader(sock)
        answer = reader.answer()
        assert answer is not None and answer.status == 404
        sock.sendall(b"\r\nzz\r\n")  # not a chunk size
        assert reader.rest() == b""


@pytest.mark.parametrize("how", ["declared", "chunked"])
def test_413_body_over_the_limit_is_never_forwarded(rig: Rig, how: str) -> None:
    """keyshim's body limit: HTTP 413 carrying a well-formed fault (``[RequestTooLarge]``, code
    107, for a script that reads the body whatever the status), and the connection closed. A
    length over the limit is refused from the head alone; a chunked body once it passes the
    limit."""
    if how == "declared":
        raw = request(b"").replace(b"Content-Length: 0", b"Content-Length: %d" % (MAX_BODY + 1))
    else:
        raw = request(echo_body(rig.key, MAX_BODY + 1)[0], chunked=256 * 1024)
    done = exchange(rig, raw, plan=[len(raw)], settle=0.2)
    assert [a.status for a in done.answers] == [413]
    assert done.answers[0].headers.get("connection") == "close"
    with pytest.raises(xmlrpc.Fault) as fault:
        done.answers[0].value()
    assert fault.value.code == 107
    assert fault.value.string.startswith("[RequestTooLarge]")
    assert done.rest == b""
    assert done.upstream == 0


def test_chunk_declared_over_the_limit_is_refused_at_its_size_line(rig: Rig) -> None:
    """A chunk whose size line alone takes the body over the limit is refused with 413 as soon
    as that line is read (the same answer as above), not after the body timeout while its data
    trickles in or never comes."""
    server = start_shim(replace(rig.settings, body_timeout=5.0), rig.servers)
    head = request(b"", chunked=1).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    raw = head + b"%x\r\n" % (MAX_BODY + 1) + b"<" * 1000  # the rest of the chunk never comes
    started = time.monotonic()
    done = exchange(rig, raw, plan=[len(raw)], port=server.port, settle=0.2)
    took = time.monotonic() - started
    assert [a.status for a in done.answers] == [413]
    assert took < 2.0, f"answered after {took:.1f}s"
    assert done.answers[0].headers.get("connection") == "close"
    with pytest.raises(xmlrpc.Fault) as fault:
        done.answers[0].value()
    assert fault.value.code == 107
    assert fault.value.string.startswith("[RequestTooLarge]")
    assert done.upstream == 0


def test_408_late_body_is_never_forwarded(rig: Rig) -> None:
    server = start_shim(replace(rig.settings, body_timeout=0.5), rig.servers)
    body, _ = echo_body(rig.key, 100_000)
    raw = request(body)
    part = raw[: head_length(raw) + 50_000]  # the rest never comes
    started = time.monotonic()
    done = exchange(rig, part, plan=[len(part)], port=server.port, settle=0.2)
    assert [a.status for a in done.answers] == [408]
    assert 0.4 < time.monotonic() - started < 5
    assert done.rest == b""
    assert done.upstream == 0


# --- the head clock waits for the answers before it --------------------------------------------


@pytest.mark.slow
def test_head_clock_starts_after_the_answer_before_it(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose upstream call outlasts the head timeout, with the start of the next
    head behind it: the request still gets its answer; the next head then has the full time."""
    monkeypatch.setattr(Regrouped, "_timeout", 0.5)
    body, text = echo_body(rig.key, 1000)
    first, second = request(body), request(body)
    rig.sim.fail_xmlrpc_requests({"kind": "timeout", "after": True, "seconds": 1.2})
    before = rig.upstream_calls()
    with socket.create_connection((HOST, rig.port), timeout=10) as sock:
        sock.sendall(first + second[:20])
        reader = Reader(sock)
        answer = reader.answer()
        assert answer is not None
        assert_echoed(answer, text)
        time.sleep(0.2)  # within the head timeout, counted from the answer
        sock.sendall(second[20:])
        answer = reader.answer()
        assert answer is not None
        assert_echoed(answer, text)
        sock.sendall(second[:20])
        started = time.monotonic()
        assert reader.rest() == b""  # the stalled head is cut off...
        assert 0.3 < time.monotonic() - started < 3  # ...after its timeout
    assert rig.upstream_calls() - before == 2


# --- many sizes over real reads while the loop is busy ----------------------------------------

STORM_SIZES = [10_000, 30_000, 50_000, 64_000, 66_000, 100_000, 200_000, 500_000, 1_000_000,
               2_000_000, 5_000_000]  # fmt: skip


@pytest.mark.slow
def test_sizes_in_one_sendall_while_the_loop_is_busy(rig: Rig) -> None:
    """Each request in one ``sendall`` on its own connection, the socket's own reads, while
    other connections keep keyshim's event loop busy with keyless echoes (answered locally,
    so every call the simulator counts is one of these requests)."""
    stop = threading.Event()
    busy_body = xmlrpc.dumps_call("DataService.echo", ["b" * 200_000])
    busy_raw = request(busy_body)
    busy_answers = [0]

    def busy() -> None:
        with socket.create_connection((HOST, rig.port), timeout=30) as sock:
            reader = Reader(sock)
            while not stop.is_set():
                sock.sendall(busy_raw * 4)
                for _ in range(4):
                    answer = reader.answer()
                    assert answer is not None and answer.status == 200
                    busy_answers[0] += 1

    def one(size: int) -> tuple[int, Exchange]:
        body, text = echo_body(rig.key, size)
        done = exchange(rig, request(body))
        assert len(done.answers) == 1, size
        assert_echoed(done.answers[0], text)
        assert done.rest == b"", size
        return size, done

    before = rig.upstream_calls()
    sizes = STORM_SIZES * 3
    with ThreadPoolExecutor(max_workers=3 + 4) as pool:
        loaders = [pool.submit(busy) for _ in range(3)]
        time.sleep(0.2)
        try:
            results = list(pool.map(one, sizes[:4]))  # prime: the loop is busy from here
            jobs = [pool.submit(one, size) for size in sizes[4:]]
            results += [job.result() for job in jobs]
        finally:
            stop.set()
        for loader in loaders:
            loader.result()
    assert len(results) == len(sizes)
    assert busy_answers[0] > 0
    assert rig.upstream_calls() - before == len(sizes)
    one_read = sum(done.reads[:1] == [len(request(b"x" * size))] for size, done in results)
    print(f"{len(sizes)} requests, {one_read} of them in one read; {busy_answers[0]} busy calls")


# --- the chunked-body framer against llhttp ---------------------------------------------------

_CHUNK_DATA = st.binary(max_size=40) | st.sampled_from([b"\r\n\r\n", b"0\r\n\r\n", b"\r\n0\r\n"])


@settings(max_examples=100, deadline=None)
@given(
    chunks=st.lists(st.lists(_CHUNK_DATA, max_size=3).map(b"".join).filter(bool), max_size=5),
    extension=st.sampled_from([b"", b";a=b", b';q="x;y"', b";z"]),
    trailers=st.sampled_from([b"", b"X-A: 1\r\n", b"X-A: 1\r\nX-B: \r\n"]),
    after=st.binary(max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_chunked_end_is_where_llhttp_ends_the_body(
    chunks: list[bytes], extension: bytes, trailers: bytes, after: bytes, cuts: list[int]
) -> None:
    body = b"".join(b"%X%s\r\n%s\r\n" % (len(c), extension, c) for c in chunks)
    body += b"0" + extension + b"\r\n" + trailers + b"\r\n"
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"

    class Events:
        done = False

        def on_message_complete(self) -> None:
            self.done = True

    events = Events()
    httptools.HttpRequestParser(events).feed_data(head + body)  # llhttp accepts it whole...
    assert events.done
    stream = body + after
    points = sorted({c for c in cuts if 0 < c < len(stream)})
    framer, found, start = _Chunked(), None, 0
    for stop in [*points, len(stream)]:
        end = framer.end(stream[:stop], start)  # each read as it would come
        if end is not None:
            found = end
            break
        start = stop
    assert found == len(body)  # ...and it ends exactly where the framer says
