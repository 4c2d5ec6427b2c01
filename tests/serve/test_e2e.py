"""End to end over real loopback sockets: real clients → keyshim (uvicorn) → simulator (uvicorn).

Nothing here is in-process ASGI: the simulator runs under ``BackgroundServer``, keyshim runs
under ``BackgroundServer`` (or as a real ``shim serve --workers 2`` subprocess) with an account
pointed at the simulator's real URL, and the "scripts" are Python's ``xmlrpc.client``,
``http.client`` and raw sockets where the bytes on the wire are the point.

``Wire`` sits in front of the simulator (inside its uvicorn) and records every request that
reached "Keap"; it can also gzip Keap's answers, send them chunked (no Content-Length) and hold
a big answer in the middle of its body, so the tests can prove what keyshim forwards and that
it streams.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from shim import __version__
from shim.access import keys
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.servers import BackgroundServer
from tests.support.stack import add_key_account, add_oauth_account, issue_key

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


# --- helpers ---------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as it reached the simulator's socket (after keyshim)."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def blob(self) -> bytes:
        head = b"".join(k + b": " + v + b"\n" for k, v in self.headers)
        line = f"{self.method} {self.path}?".encode() + self.query + b"\n"
        return line + head + b"\n" + self.body


class Wire:
    """ASGI middleware in front of the simulator: records requests, can gzip or hold answers."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self.gzip_answers = False  # gzip an answer when the request's Accept-Encoding asks
        self.chunked_answers = False  # drop Content-Length: uvicorn then sends chunked
        self.gate: threading.Event | None = None  # when set: hold answers past hold_after bytes
        self.hold_after = 0
        self.holding = threading.Event()  # set once an answer is being held at the gate

    def hold(self, after: int) -> threading.Event:
        self.gate, self.hold_after = threading.Event(), after
        self.holding.clear()
        return self.gate

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = Seen(
            scope["method"],
            scope["path"],
            scope.get("query_string", b""),
            list(scope["headers"]),
            b"",
        )
        # Recorded as soon as it arrives: keyshim may hand the answer to the test before this
        # wrapper's own code after the answer has run.
        self.seen.append(seen)

        async def recording_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                seen.body = b"".join(chunks)
            return message

        try:
            accept = (seen.header(b"accept-encoding") or b"").lower()
            if self.gzip_answers and b"gzip" in accept:
                await self._gzipped(scope, recording_receive, send)
            else:
                await self.app(scope, recording_receive, self._holding_send(send))
        finally:
            seen.body = b"".join(chunks)

    async def _gzipped(self, scope: Any, receive: Any, send: Any) -> None:
        messages: list[Any] = []

        async def buffer(message: Any) -> None:
            messages.append(message)

        await self.app(scope, receive, buffer)
        start, body = messages[0], b"".join(m.get("body", b"") for m in messages[1:])
        packed = gzip.compress(body)
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers += [(b"content-encoding", b"gzip"), (b"content-length", b"%d" % len(packed))]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": packed})

    def _holding_send(self, send: Any) -> Any:
        sent = 0

        async def holding_send(message: Any) -> None:
            nonlocal sent
            gate = self.gate
            if message["type"] == "http.response.start" and self.chunked_answers:
                headers = [(k, v) for k, v in message["headers"] if k != b"content-length"]
                message = {**message, "headers": headers}
            if message["type"] == "http.response.body":
                if gate is not None and self.hold_after and sent >= self.hold_after:
                    self.holding.set()
                    deadline = time.monotonic() + 10  # never hang a test run
                    while not gate.is_set() and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                sent += len(message.get("body", b""))
            await send(message)

        return holding_send


def start(app: Any, servers: list[BackgroundServer]) -> BackgroundServer:
    """Start ``app`` on a loopback port; ``stop_all(servers)`` stops it."""
    server = BackgroundServer(app)
    server.__enter__()
    servers.append(server)
    return server


def stop_all(servers: list[BackgroundServer]) -> None:
    """Stop servers side by side (each takes a few uvicorn ticks) and check none lingers."""
    with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
        list(pool.map(lambda server: server.__exit__(None, None, None), servers))
    lingering = [s.url for s in servers if s._thread.is_alive()]
    assert not lingering, f"server threads still running after shutdown: {lingering}"


@dataclass
class E2E:
    settings: Settings
    store: SqliteStore
    sim: Simulator
    wire: Wire
    sim_server: BackgroundServer
    servers: list[BackgroundServer]
    key: str = ""
    shim: BackgroundServer | None = None

    @property
    def sim_url(self) -> str:
        return self.sim_server.url

    @property
    def port(self) -> int:
        assert self.shim is not None
        return self.shim.port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/api/xmlrpc"

    def start_shim(self, **overrides: Any) -> BackgroundServer:
        settings = replace(self.settings, **overrides)
        return start(KeyshimApp(settings, build_services), self.servers)

    def proxy(self, url: str | None = None, **kw: Any) -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy(url or self.url, use_builtin_types=True, **kw)

    def stats(self) -> dict[str, Any]:
        return self.sim.stats()


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Every thread a test started has ended, but for the store's worker pool: it is one per
    process (``shim.store.offloop``), started by whichever test first needs it, and lives on."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while (left := _started_since(before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"threads left running: {left}"


def _started_since(before: set[threading.Thread]) -> set[threading.Thread]:
    return {
        thread
        for thread in set(threading.enumerate()) - before
        if not thread.name.startswith("shim-store")
    }


@pytest.fixture
def e2e(settings: Settings, store: SqliteStore) -> Iterator[E2E]:
    servers: list[BackgroundServer] = []
    try:
        sim = Simulator(SimConfig())
        wire = Wire(sim.app)
        env = E2E(settings, store, sim, wire, start(wire, servers), servers)
        add_oauth_account(store, sim, env.sim_url)
        env.key = issue_key(store, settings, "prod")
        env.shim = env.start_shim()
        yield env
    finally:
        stop_all(servers)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def xml_call(method: str, *params: str, decl: str = '<?xml version="1.0"?>\n') -> str:
    body = "".join(f"<param>{p}</param>" for p in params)
    return (
        f"{decl}<methodCall><methodName>{method}</methodName><params>{body}</params></methodCall>"
    )


def string(text: str) -> str:
    return f"<value><string>{text}</string></value>"


def post(
    port: int, body: bytes, headers: dict[str, str] | None = None, path: str = "/api/xmlrpc"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=15)
    try:
        conn.request(
            "POST", path, body=body, headers={"Content-Type": "text/xml", **(headers or {})}
        )
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def result(body: bytes) -> Any:
    """The value of a methodResponse, parsed by Python's own XML-RPC client code."""
    return xmlrpc.client.loads(body, use_builtin_types=True)[0][0]


def fault(body: bytes) -> xmlrpc.client.Fault:
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(body)
    return info.value


def read_http(f: Any) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response from a socket file (Content-Length, chunked or read-to-close)."""
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1."), status_line
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := f.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while (size := int(f.readline().split(b";")[0], 16)) > 0:
            parts.append(f.read(size))
            f.readline()
        f.readline()
        body = b"".join(parts)
    else:
        body = f.read()
    return status, headers, body


# --- HTTP framing ----------------------------------------------------------------------------


KEAP_FRAMING = [
    pytest.param(False, id="keap-content-length"),
    pytest.param(True, id="keap-chunked"),
]


@pytest.mark.parametrize(
    "keap_chunked",
    [
        pytest.param(False, id="keap-content-length"),
        pytest.param(True, id="keap-chunked"),
    ],
)
def test_http10_without_keepalive_gets_whole_answer_then_close(
    e2e: E2E, keap_chunked: bool
) -> None:
    e2e.wire.chunked_answers = keap_chunked
    body = xml_call("DataService.echo", string(e2e.key), string("h&#233;llo 1.0")).encode()
    request = (
        f"POST /api/xmlrpc HTTP/1.0\r\nHost: {HOST}:{e2e.port}\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((HOST, e2e.port), timeout=5) as sock:
        sock.sendall(request)
        received = bytearray()
        while chunk := sock.recv(65536):  # a server that keeps the connection open times out
            received += chunk
    head, _, payload = bytes(received).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].split()[1] == "200"
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    assert "chunked" not in headers.get("transfer-encoding", "")  # not allowed in HTTP/1.0
    if "content-length" in headers:  # else the body is delimited by the close, as in HTTP/1.0
        assert int(headers["content-length"]) == len(payload)
    assert result(payload) == "héllo 1.0"
    assert e2e.stats()["last_private_key"] == e2e.settings.placeholder


@pytest.mark.parametrize("keap_chunked", KEAP_FRAMING)
def test_http11_keepalive_two_calls_on_one_connection(e2e: E2E, keap_chunked: bool) -> None:
    e2e.wire.chunked_answers = keap_chunked
    conn = http.client.HTTPConnection(HOST, e2e.port, timeout=10)
    try:
        add = xml_call(
            "ContactService.add",
            string(e2e.key),
            "<value><struct><member><name>FirstName</name>"
            "<value>Kept</value></member></struct></value>",
        ).encode()
        conn.request("POST", "/api/xmlrpc", body=add, headers={"Content-Type": "text/xml"})
        first = conn.getresponse()
        contact_id = result(first.read())
        assert first.status == 200 and (first.getheader("connection") or "").lower() != "close"
        sock, local = conn.sock, conn.sock.getsockname()
        load = xml_call(
            "ContactService.load",
            string(e2e.key),
            f"<value><int>{contact_id}</int></value>",
            "<value><array><data><value>FirstName</value></data></array></value>",
        ).encode()
        conn.request("POST", "/api/xmlrpc/v1", body=load, headers={"Content-Type": "text/xml"})
        second = conn.getresponse()
        assert second.status == 200
        assert result(second.read()) == {"FirstName": "Kept"}
        assert conn.sock is sock and conn.sock.getsockname() == local  # no reconnect
    finally:
        conn.close()


def test_expect_100_continue_with_a_body_over_one_megabyte(e2e: E2E) -> None:
    notes = ("0123456789abcdef" * 80_000)[:1_300_000]  # 1.3 MB of text
    body = xml_call(
        "ContactService.add",
        string(e2e.key),
        f"<value><struct><member><name>_Notes</name>{string(notes)}</member></struct></value>",
    ).encode()
    head = (
        f"POST /api/xmlrpc HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection((HOST, e2e.port), timeout=5) as sock:
        f = sock.makefile("rb")
        sock.sendall(head)
        assert f.readline().startswith(b"HTTP/1.1 100 ")  # the go-ahead, before any body
        assert f.readline() == b"\r\n"
        sock.sendall(body)
        status, headers, payload = read_http(f)
        f.close()
    assert status == 200 and headers["content-type"].startswith("text/xml")
    contact_id = result(payload)
    with e2e.proxy() as proxy:
        loaded = proxy.ContactService.load(e2e.key, contact_id, ["_Notes"])
    assert loaded == {"_Notes": notes}


def test_expect_100_continue_over_the_limit_is_refused_without_continue(e2e: E2E) -> None:
    too_big = e2e.settings.max_body + 1
    head = (
        f"POST /api/xmlrpc HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {too_big}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    before = len(e2e.wire.seen)
    with socket.create_connection((HOST, e2e.port), timeout=5) as sock:
        f = sock.makefile("rb")
        sock.sendall(head)
        status, headers, payload = read_http(f)  # the final answer; no "100 Continue" first
        assert f.read() == b""  # and the connection is closed (the body was never read)
        f.close()
    assert status == 413 and headers.get("connection", "").lower() == "close"
    refused = fault(payload)
    assert refused.faultCode == 107 and refused.faultString.startswith("[RequestTooLarge]")
    assert len(e2e.wire.seen) == before


# --- content encodings -----------------------------------------------------------------------


@pytest.mark.parametrize("keap_gzips", [False, True], ids=["keap-identity", "keap-gzip"])
def test_accept_encoding_gzip_answers_are_consistent(e2e: E2E, keap_gzips: bool) -> None:
    e2e.wire.gzip_answers = keap_gzips
    body = xml_call("DataService.echo", string(e2e.key), string("zip me " * 200)).encode()
    status, headers, raw = post(e2e.port, body, {"Accept-Encoding": "gzip"})
    assert status == 200
    encoding = headers.get("content-encoding", "identity").lower()
    assert int(headers["content-length"]) == len(raw)
    if encoding == "gzip":
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    else:
        assert encoding == "identity" and raw.lstrip().startswith(b"<?xml")
    assert result(raw) == "zip me " * 200
    # keyshim never asks Keap for an encoding the script did not accept
    assert e2e.wire.seen[-1].header(b"accept-encoding") in (b"gzip", b"identity", None)

    # a script that does not ask for gzip never gets it, even from a gzipping Keap
    status, headers, raw = post(e2e.port, body)  # http.client sends "identity"
    assert "content-encoding" not in headers and result(raw) == "zip me " * 200
    # xmlrpc.client sends Accept-Encoding: gzip and must decode whatever comes back
    with e2e.proxy() as proxy:
        assert proxy.DataService.echo(e2e.key, "via ServerProxy") == "via ServerProxy"


def test_gzip_encoded_request_bodies(e2e: E2E) -> None:
    body = xml_call("DataService.echo", string(e2e.key), string("packed " * 500)).encode()
    status, _, raw = post(e2e.port, gzip.compress(body), {"Content-Encoding": "gzip"})
    assert status == 200 and result(raw) == "packed " * 500
    forwarded = e2e.wire.seen[-1]
    assert forwarded.body.startswith(b"<?xml") and forwarded.header(b"content-encoding") is None
    assert e2e.key.encode() not in forwarded.body

    transport = xmlrpc.client.Transport(use_builtin_types=True)
    transport.encode_threshold = 0  # xmlrpc.client gzips every request body
    with e2e.proxy(transport=transport) as proxy:
        assert proxy.DataService.echo(e2e.key, "gz " * 300) == "gz " * 300
    assert e2e.wire.seen[-1].body.startswith(b"<?xml")


# --- what legacy clients put in a body ---------------------------------------------------------


def test_bodies_with_and_without_xml_declaration(e2e: E2E) -> None:
    declarations = {
        "none": "",
        "plain": '<?xml version="1.0"?>',
        "utf-8": '<?xml version="1.0" encoding="UTF-8"?>\n',
        "bom": '\ufeff<?xml version="1.0" encoding="utf-8"?>\r\n',  # .NET clients: BOM, CRLF
    }
    for name, decl in declarations.items():
        body = xml_call("DataService.echo", string(e2e.key), string(f"Grüße ✓ {name}"), decl=decl)
        status, _, raw = post(e2e.port, body.encode("utf-8"))
        assert status == 200 and result(raw) == f"Grüße ✓ {name}", name
        assert e2e.wire.seen[-1].body.startswith(body.encode("utf-8")[:20]), name  # as sent
    stats = e2e.stats()
    assert stats["private_keys_seen"] == [e2e.settings.placeholder]
    assert stats["xmlrpc_calls"] == len(declarations)


def test_iso_8859_1_body_is_stored_and_loaded_back(e2e: E2E) -> None:
    struct = (
        "<value><struct><member><name>FirstName</name>" + string("Zoë") + "</member>"
        "<member><name>LastName</name>" + string("Ångström") + "</member></struct></value>"
    )
    body = xml_call(
        "ContactService.add",
        string(e2e.key),
        struct,
        decl='<?xml version="1.0" encoding="ISO-8859-1"?>\n',
    ).encode("latin-1")
    assert b"Zo\xeb" in body
    status, _, raw = post(e2e.port, body)
    assert status == 200
    contact_id = result(raw)
    forwarded = e2e.wire.seen[-1].body
    assert b"Zo\xeb" in forwarded and b'encoding="ISO-8859-1"' in forwarded  # byte for byte
    with e2e.proxy() as proxy:
        loaded = proxy.ContactService.load(e2e.key, contact_id, ["FirstName", "LastName"])
    assert loaded == {"FirstName": "Zoë", "LastName": "Ångström"}


def test_key_forms_untyped_cdata_and_character_references(e2e: E2E) -> None:
    key = e2e.key
    forms = {
        "untyped": f"<value>{key}</value>",
        "cdata": f"<value><string><![CDATA[{key}]]></string></value>",
        "charref": f"<value><string>&#115;&#x68;{key[2:]}</string></value>",
    }
    for name, first in forms.items():
        status, _, raw = post(e2e.port, xml_call("DataService.echo", first, string(name)).encode())
        assert status == 200 and result(raw) == name, name
        forwarded = e2e.wire.seen[-1].body
        placeholder = e2e.settings.placeholder.encode()
        spliced = b"<string>%s</string>" % placeholder, b"<value>%s</value>" % placeholder
        assert sum(forwarded.count(form) for form in spliced) == 1, (name, forwarded)
        assert key.encode() not in forwarded
    struct = (
        "<value><struct>"
        "<member><name>FirstName</name><value><string>Ren&#233;</string></value></member>"
        "<member><name>LastName</name><value>M&#xFC;ller &amp; Co</value></member>"
        '<member><name>_Notes</name><value><string><![CDATA[<b>Tom & "Jerry"</b>]]>'
        "</string></value></member>"
        "</struct></value>"
    )
    status, _, raw = post(e2e.port, xml_call("ContactService.add", string(key), struct).encode())
    contact_id = result(raw)
    with e2e.proxy() as proxy:
        loaded = proxy.ContactService.load(key, contact_id, ["FirstName", "LastName", "_Notes"])
    assert loaded == {
        "FirstName": "René",
        "LastName": "Müller & Co",
        "_Notes": '<b>Tom & "Jerry"</b>',
    }


def test_ints_nil_datetime_and_base64(e2e: E2E) -> None:
    key = e2e.key
    with e2e.proxy() as proxy:
        birthday = datetime.datetime(1985, 7, 14, 8, 30, 0)
        contact_id = proxy.ContactService.add(
            key, {"FirstName": "Ivy", "Nickname": "Ives", "Birthday": birthday}
        )
        # dateTime.iso8601 round trip (xmlrpc.client sends 19850714T08:30:00)
        assert proxy.ContactService.load(key, contact_id, ["Birthday"]) == {"Birthday": birthday}
        # base64 both ways: <base64> up, Keap's base64 string down
        blob = bytes(range(256)) * 40
        file_id = proxy.FileService.uploadFile(key, contact_id, "all-bytes.bin", blob)
        assert base64.b64decode(proxy.FileService.getFile(key, file_id)) == blob
    fields = (
        "<value><array><data><value>FirstName</value><value>Nickname</value></data></array></value>"
    )
    for tag in ("i4", "int"):
        body = xml_call(
            "ContactService.load",
            string(key),
            f"<value><{tag}>{contact_id}</{tag}></value>",
            fields,
        ).encode()
        assert result(post(e2e.port, body)[2]) == {"FirstName": "Ivy", "Nickname": "Ives"}, tag
    # <nil/> in a struct clears the field (Keap leaves empty fields out of answers)
    clear = (
        "<value><struct><member><name>Nickname</name><value><nil/></value></member>"
        "</struct></value>"
    )
    body = xml_call(
        "ContactService.update", string(key), f"<value><i4>{contact_id}</i4></value>", clear
    ).encode()
    assert result(post(e2e.port, body)[2]) == contact_id
    body = xml_call(
        "ContactService.load", string(key), f"<value><i4>{contact_id}</i4></value>", fields
    ).encode()
    assert result(post(e2e.port, body)[2]) == {"FirstName": "Ivy"}
    # <nil/> where an id belongs: Keap's dispatcher finds no method, a well-formed fault
    body = xml_call(
        "DataService.load", string(key), string("Contact"), "<value><nil/></value>", fields
    ).encode()
    status, _, raw = post(e2e.port, body)
    refused = fault(raw)
    assert status == 200 and refused.faultCode == 12
    assert refused.faultString.startswith("[InvalidParameter]No method matching arguments")
    assert "null" in refused.faultString


# --- tens of megabytes -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_twenty_megabyte_file_round_trip_is_streamed(e2e: E2E) -> None:
    data = os.urandom(20 * 1024 * 1024)
    with e2e.proxy() as proxy:
        contact_id = proxy.ContactService.add(e2e.key, {"FirstName": "Big"})
        file_id = proxy.FileService.uploadFile(e2e.key, contact_id, "big.bin", data)
    assert e2e.sim.db.files[file_id] == data

    # getFile, read raw: Keap's answer is held after its first 1 MB, so any byte the script
    # gets before the gate opens was streamed by keyshim while the upstream body was unfinished
    gate = e2e.wire.hold(after=1024 * 1024)
    conn = http.client.HTTPConnection(HOST, e2e.port, timeout=5)
    try:
        body = xml_call(
            "FileService.getFile", string(e2e.key), f"<value><int>{file_id}</int></value>"
        ).encode()
        conn.request("POST", "/api/xmlrpc", body=body, headers={"Content-Type": "text/xml"})
        response = conn.getresponse()
        assert response.status == 200
        length = int(response.getheader("content-length") or -1)
        first = response.read(256 * 1024)
        assert len(first) == 256 * 1024 and not gate.is_set()  # upstream body unfinished
        assert e2e.wire.holding.wait(5)  # and Keap really is withholding the rest
        gate.set()
        rest = response.read()
    finally:
        gate.set()
        conn.close()
    raw = first + rest
    assert length == len(raw) > len(data) * 4 // 3
    assert base64.b64decode(result(raw)) == data


# --- the key never leaves ----------------------------------------------------------------------


def test_local_key_never_reaches_keap(e2e: E2E) -> None:
    add_key_account(e2e.store, e2e.sim, e2e.sim_url, name="sak")
    sak_key = issue_key(e2e.store, e2e.settings, "sak")
    with e2e.proxy() as proxy:
        contact_id = proxy.ContactService.add(e2e.key, {"FirstName": "Secret", "_Notes": "n"})
        assert proxy.DataService.echo(e2e.key, "as first param") == "as first param"
    with e2e.proxy() as proxy:
        assert proxy.DataService.echo(sak_key, "service key account") == "service key account"
    # infusionsoft-php "apikey" mode: the key in X-Keap-API-Key, a fixed first parameter
    body = xml_call("DataService.echo", string("apikey-mode"), string("header")).encode()
    assert result(post(e2e.port, body, {"X-Keap-API-Key": e2e.key})[2]) == "header"
    # old OAuth SDKs: ?access_token=<key>
    body = xml_call("DataService.echo", string("oauth-sdk"), string("query")).encode()
    assert result(post(e2e.port, body, path=f"/api/xmlrpc?access_token={e2e.key}")[2]) == "query"

    stats = e2e.stats()
    assert stats["last_private_key"] == e2e.settings.placeholder
    assert stats["private_keys_seen"] == [e2e.settings.placeholder]
    assert stats["xmlrpc_calls"] == 5
    everything = [s.blob() for s in e2e.wire.seen]
    assert len(everything) == 5
    for local in (e2e.key, sak_key):
        assert local not in json.dumps(stats)
        assert local not in repr(e2e.sim.db.tables) and local not in repr(e2e.sim.db.files)
        assert not [b for b in everything if local.encode() in b]
    # what did go upstream: the OAuth bearer or the account's service key
    credentials = [s.header(b"authorization") or s.header(b"x-keap-api-key") for s in e2e.wire.seen]
    assert all(c and (c.startswith(b"Bearer ") or c.startswith(b"KeapAK-")) for c in credentials)
    assert e2e.sim.db.get("Contact", contact_id)["FirstName"] == "Secret"


def test_bad_keys_fault_with_zero_upstream_calls(e2e: E2E) -> None:
    now = time.time()
    unknown = keys.make_key(os.urandom(32)).text  # well-formed, never issued
    mistyped = e2e.key[:-1] + ("A" if e2e.key[-1] != "A" else "B")
    revoked = issue_key(e2e.store, e2e.settings, "prod", revoked_at=now - 1)
    expired = issue_key(e2e.store, e2e.settings, "prod", expires_at=now - 1)
    before_calls, before_seen = e2e.stats()["xmlrpc_calls"], len(e2e.wire.seen)
    for name, key in [
        ("unknown", unknown),
        ("mistyped", mistyped),
        ("revoked", revoked),
        ("expired", expired),
        ("not-a-key", "my-old-keap-api-key"),
        ("empty", ""),
    ]:
        body = xml_call(
            "ContactService.load",
            string(key),
            "<value><i4>1</i4></value>",
            "<value><array><data><value>Id</value></data></array></value>",
        ).encode()
        status, headers, raw = post(e2e.port, body)
        assert status == 200 and headers["content-type"].startswith("text/xml"), name
        refused = fault(raw)
        assert refused.faultCode == 2 and refused.faultString.startswith("[InvalidKey]"), name
    with e2e.proxy() as proxy, pytest.raises(xmlrpc.client.Fault) as info:
        proxy.DataService.echo(revoked, "x")
    assert info.value.faultCode == 2 and "revoked" in info.value.faultString
    assert e2e.stats()["xmlrpc_calls"] == before_calls
    assert len(e2e.wire.seen) == before_seen  # not even a token request reached Keap


# --- upstream failures -------------------------------------------------------------------------


def test_brownouts_become_well_formed_faults(e2e: E2E) -> None:
    body = xml_call("DataService.echo", string(e2e.key), string("x")).encode()
    expected = {
        "off": (3, "[Unexpected]The XML-RPC API is unavailable"),  # Keap's own fault, passed on
        "503": (106, "[UpstreamError]Keap answered HTTP 503"),
        "404": (106, "[UpstreamError]Keap answered HTTP 404"),
        "410": (106, "[UpstreamError]Keap answered HTTP 410"),
    }
    for mode, (code, text) in expected.items():
        e2e.sim.config.xmlrpc_mode = mode  # type: ignore[assignment]
        status, headers, raw = post(e2e.port, body)
        assert status == 200 and headers["content-type"].startswith("text/xml"), mode
        refused = fault(raw)
        assert refused.faultCode == code and refused.faultString.startswith(text), (mode, refused)
    e2e.sim.config.xmlrpc_mode = "on"
    assert result(post(e2e.port, body)[2]) == "x"


def test_keap_breaking_off_mid_answer_is_visible_to_the_script(e2e: E2E) -> None:
    # Keap sends its status and part of the body, then drops the connection. keyshim has
    # already started streaming, so the script must see a truncated message (its declared
    # Content-Length is not met and the connection closes), never a plausible answer.
    e2e.sim.fail_xmlrpc_requests("reset-after")
    body = xml_call("DataService.echo", string(e2e.key), string("cut " * 100)).encode()
    conn = http.client.HTTPConnection(HOST, e2e.port, timeout=5)
    try:
        conn.request("POST", "/api/xmlrpc", body=body, headers={"Content-Type": "text/xml"})
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead) as info:
            response.read()
        assert 0 < len(info.value.partial) < int(response.getheader("content-length") or 0)
    finally:
        conn.close()
    with e2e.proxy() as proxy:  # keyshim itself is fine: the next call goes through
        assert proxy.DataService.echo(e2e.key, "whole") == "whole"


def test_keap_port_closed_is_upstream_unavailable(e2e: E2E) -> None:
    dead = f"http://{HOST}:{free_port()}"
    add_oauth_account(e2e.store, e2e.sim, dead, name="down")
    key = issue_key(e2e.store, e2e.settings, "down")
    with e2e.proxy() as proxy, pytest.raises(xmlrpc.client.Fault) as info:
        proxy.DataService.echo(key, "anyone there?")
    assert info.value.faultCode == 101
    assert info.value.faultString.startswith("[UpstreamUnavailable]")


@pytest.mark.slow
@pytest.mark.timeout(20)
def test_hanging_keap_is_upstream_timeout(e2e: E2E) -> None:
    shim = e2e.start_shim(upstream_timeout=1.0)
    e2e.sim.fail_xmlrpc_requests({"kind": "timeout", "seconds": 2.0})
    url = f"http://{HOST}:{shim.port}/api/xmlrpc"
    started = time.monotonic()
    with e2e.proxy(url) as proxy, pytest.raises(xmlrpc.client.Fault) as info:
        proxy.DataService.echo(e2e.key, "slow")
    elapsed = time.monotonic() - started
    assert info.value.faultCode == 102 and info.value.faultString.startswith("[UpstreamTimeout]")
    assert elapsed >= 0.9, elapsed  # (had Keap answered, after 2 s, it would be a 504 fault)
    with e2e.proxy(url) as proxy:  # the failure was used up: the next call goes through
        assert proxy.DataService.echo(e2e.key, "fast") == "fast"


def test_keap_429_is_throttled_fault(e2e: E2E) -> None:
    e2e.sim.config.throttle = True
    e2e.sim.config.oauth_minute_limit = 1
    with e2e.proxy() as proxy:
        assert proxy.DataService.echo(e2e.key, "one") == "one"
        with pytest.raises(xmlrpc.client.Fault) as info:
            proxy.DataService.echo(e2e.key, "two")
    assert info.value.faultCode == 103 and info.value.faultString.startswith("[Throttled]")
    assert "429" in info.value.faultString and "retry after" in info.value.faultString
    assert e2e.stats()["xmlrpc_throttled"] == 1


# --- token expiry under concurrency ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_forty_concurrent_calls_after_expiry_share_one_refresh(e2e: E2E) -> None:
    e2e.sim.config.access_token_lifetime = 3
    add_oauth_account(e2e.store, e2e.sim, e2e.sim_url, name="short")
    key = issue_key(e2e.store, e2e.settings, "short")
    # tokens from the refresh live long, so however slow this machine is, the 40 calls need
    # exactly one refresh
    e2e.sim.config.access_token_lifetime = 60
    shim = e2e.start_shim(inline_margin=1.0)
    url = f"http://{HOST}:{shim.port}/api/xmlrpc"
    with e2e.proxy(url) as proxy:
        assert proxy.DataService.echo(key, "warm") == "warm"
    before = e2e.stats()
    chain = e2e.store.get_chain("short")
    assert chain is not None and before["refreshes_served"] == 0
    time.sleep(max(0.0, chain.expires_at - time.time()) + 0.2)  # now it is really expired

    barrier = threading.Barrier(40)

    def one(i: int) -> Any:
        with e2e.proxy(url) as proxy:
            barrier.wait(timeout=10)
            try:
                return proxy.DataService.echo(key, f"call {i}")
            except xmlrpc.client.Fault as exc:
                return exc

    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(one, range(40)))
    faults = [a for a in answers if isinstance(a, xmlrpc.client.Fault)]
    assert faults == []
    assert answers == [f"call {i}" for i in range(40)]
    after = e2e.stats()
    assert after["refreshes_served"] == before["refreshes_served"] + 1
    assert after["refresh_requests"] == before["refresh_requests"] + 1
    assert after["xmlrpc_unauthorized"] == before["xmlrpc_unauthorized"]  # refreshed in time
    assert after["xmlrpc_calls"] == before["xmlrpc_calls"] + 40


# --- shim serve --workers 2 ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(45)
def test_shim_serve_with_two_workers(e2e: E2E, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIM_")}
    env["SHIM_DB"] = e2e.settings.db
    log = (tmp_path / "serve.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "shim",
        "--db",
        e2e.settings.db,
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 20
        health: tuple[int, str, bytes] | None = None
        while health is None:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "shim serve did not answer /healthz"
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                health = response.status, response.getheader("content-type") or "", response.read()
            except OSError:
                time.sleep(0.1)
            finally:
                conn.close()
        status, content_type, raw = health
        served = (tmp_path / "serve.log").read_text()
        assert status == 200, (status, raw, served)
        assert "workers=2" in served  # the startup line
        assert content_type.startswith("application/json")
        report = json.loads(raw)
        assert report["status"] == "ok" and report["version"] == __version__
        accounts = report["accounts"]  # a count, or per-account health keyed by name
        assert accounts == 1 if isinstance(accounts, int) else list(accounts) == ["prod"]
        chain = e2e.store.get_chain("prod")
        assert chain is not None and chain.access_token not in raw.decode()
        assert e2e.key not in raw.decode()

        url = f"http://{HOST}:{port}/api/xmlrpc"

        def one(i: int) -> Any:
            with e2e.proxy(url) as proxy:  # new connections, spread over the workers
                contact_id = proxy.ContactService.add(e2e.key, {"FirstName": f"W{i}"})
                return proxy.ContactService.load(e2e.key, contact_id, ["FirstName"])

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert list(pool.map(one, range(16))) == [{"FirstName": f"W{i}"} for i in range(16)]
        with e2e.proxy(url) as proxy, pytest.raises(xmlrpc.client.Fault) as info:
            proxy.DataService.echo("not-a-key-at-all", "x", "y")
        assert info.value.faultCode == 2
        assert e2e.stats()["private_keys_seen"] == [e2e.settings.placeholder]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        deadline = time.monotonic() + 5
        while True:  # no worker outlives the supervisor
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "worker processes left running"
            time.sleep(0.05)
        output = (tmp_path / "serve.log").read_text()
        assert "Traceback" not in output, output
    finally:  # whatever happened above, nothing of this process group survives the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()
