"""Hostile input: keyshim must never be knocked over by what a client sends.

Two parts:

* **The corpus** (``fixtures/hostile/*.json``, one case a file, format in its README). One
  real ``shim serve`` process (a subprocess, so its RSS and CPU time can be read from
  ``/proc``) runs with small limits (``SHIM_MAX_BODY=32M``, ``SHIM_BODY_TIMEOUT=2``,
  ``SHIM_HEAD_TIMEOUT=2``) in front of two simulators: the *hostile* account's Keap (in this
  process, counting every request), which no hostile request may ever reach, and a *good*
  account's Keap (a ``shim simulator`` process), which a well-behaved client (a process of its
  own, so that this harness's work cannot slow it down) calls ``DataService.echo`` on in a loop
  for the whole run. Every case is sent with a raw socket, byte for byte, and must get its
  documented outcome promptly, reach nothing upstream, log no traceback and leave the good
  client responsive. The last corpus test checks the whole run: no good call failed, p99
  latency, RSS growth, still healthy. A case whose expectation carries ``"xfail"`` is a known
  keyshim bug: a strict expected failure.
* **A fuzz test**: hypothesis mutates real legacy calls (bit flips, cuts, duplications,
  insertions of dangerous tokens) and sends them in-process through ``httpx.ASGITransport``;
  every answer must be HTTP 200 with a parseable methodResponse, or a documented 4xx.

``HOSTILE_REPORT=path`` writes the per-case table (expected, observed, seconds, keyshim CPU
seconds, the good client's longest wait) there; ``-s`` prints it. ``HOSTILE_FUZZ_EXAMPLES=n``
runs the fuzz test longer (default 200 examples).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shim import xmlrpc as codec
from shim.access import keys
from shim.models import Account, TokenPair
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services, init_files, load_master_key, open_store
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.secrets import SecretBox
from tests.support.servers import BackgroundServer
from tests.support.sim_server import serve_simulator
from tests.support.stack import add_oauth_account, issue_key

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fixtures" / "hostile"
HOST = "127.0.0.1"
MAX_BODY = 32 * 1024 * 1024
BODY_TIMEOUT = 2.0
HEAD_TIMEOUT = 2.0
#: keyshim serves every client from one event loop: during any one case the well-behaved
#: client may wait at most this long for an answer (legitimate 32 MB bodies cost well under
#: a second of loop time)...
STALL_LIMIT = 2.0
#: ...and its p99 latency over the whole run (outside known-bug cases) stays under this.
P99_LIMIT = 1.0
#: A request holds its body several times over (chunks, the joined body, decoded text, the
#: parse tree), and glibc keeps what the parser's worker threads free in their own arenas:
#: after 32 MiB bodies keyshim settles ~150 MB above its idle RSS (measured flat over twelve
#: rounds of the heaviest cases). A leak would grow past this.
RSS_GROWTH_LIMIT = 200 * 1024 * 1024
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")


# --- the corpus --------------------------------------------------------------------------------


def load_corpus() -> list[dict[str, Any]]:
    paths = sorted(CORPUS.glob("*.json"))
    cases = [json.loads(path.read_text()) for path in paths]
    for path, case in zip(paths, cases, strict=True):
        assert case["name"] == path.stem, f"{path.name}: name {case['name']!r}"
    return cases


CASES = load_corpus()


def known_bug(case: dict[str, Any]) -> str | None:
    """The reason a case is expected to fail (a keyshim bug), if it is."""
    return case["expect"].get("xfail") or case.get("xfail")


def case_param(case: dict[str, Any]) -> Any:
    reason = known_bug(case)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(case, id=case["name"], marks=marks)


_EXPR = re.compile(r"\s*([a-z_]+|[0-9.]+)\s*(?:([-+*])\s*([a-z_]+|[0-9.]+)\s*)?")


def number(value: float | str, names: dict[str, float]) -> float:
    """A size or duration: a number, a name, or ``a op b`` (``limit+1``, ``body_timeout+5``)."""
    if isinstance(value, int | float):
        return value
    match = _EXPR.fullmatch(value)
    if match is None:
        raise ValueError(f"not a size expression: {value!r}")

    def term(text: str) -> float:
        return names[text] if text[0].isalpha() or text[0] == "_" else float(text)

    left = term(match[1])
    if match[2] is None:
        return left
    right = term(match[3])
    return {"+": left + right, "-": left - right, "*": left * right}[match[2]]


@dataclass
class Context:
    """What a case's placeholders stand for in this run."""

    key: str  # valid key of the hostile account
    bad_key: str  # well-formed key that no store knows
    names: dict[str, float]
    port: int

    def subst(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name, start, stop = match[1], match[3], match[4]
            value = {"KEY": self.key, "BADKEY": self.bad_key, "KEY_TYPO": typo(self.key)}[name]
            if match[2]:
                return value[int(start) if start else None : int(stop) if stop else None]
            return value

        return re.sub(r"@(KEY|BADKEY|KEY_TYPO)(\[(-?\d*):(-?\d*)\])?@", one, text)

    def size(self, value: float | str) -> int:
        return int(number(value, self.names))

    def text(self, spec: str | dict[str, Any]) -> str:
        if isinstance(spec, str):
            return self.subst(spec)
        return "".join(self.subst(part) * self.size(n) for part, n in spec["parts"])


def typo(key: str) -> str:
    """The key with one secret character changed (its checksum no longer matches)."""
    i = len(keys.PREFIX) + keys.ID_LEN + 3
    return key[:i] + ("B" if key[i] != "B" else "C") + key[i + 1 :]


def generate(spec: dict[str, Any], ctx: Context) -> bytes:
    kind = spec["kind"]
    if kind == "zeros":
        return bytes(ctx.size(spec["size"]))
    if kind == "repeat":
        return ctx.text({"parts": spec["parts"]}).encode("utf-8")
    if kind == "deep":
        depth = ctx.size(spec["depth"])
        if spec["container"] == "struct":
            opening, closing = "<value><struct><member><name>m</name>", "</member></struct></value>"
        else:
            opening, closing = "<value><array><data>", "</data></array></value>"
        key = f"<param><value><string>{ctx.subst(spec['key'])}</string></value></param>"
        return (
            '<?xml version="1.0"?><methodCall><methodName>DataService.echo</methodName><params>'
            + key
            + "<param>"
            + opening * depth
            + "<value>x</value>"
            + closing * depth
            + "</param></params></methodCall>"
        ).encode()
    if kind == "attributes":
        attributes = "".join(f' a{i}=""' for i in range(ctx.size(spec["count"])))
        return (
            f'<?xml version="1.0"?><methodCall{attributes}><methodName>DataService.echo'
            f"</methodName><params><param><value><string>{ctx.subst(spec['key'])}</string>"
            "</value></param></params></methodCall>"
        ).encode()
    raise ValueError(f"unknown generator {kind!r}")


def compress(data: bytes, how: str) -> bytes:
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -15}[how]
    packer = zlib.compressobj(1, zlib.DEFLATED, wbits)  # fast; zeros still shrink 200-fold
    step = 1 << 24
    out = [packer.compress(data[i : i + step]) for i in range(0, len(data), step)]
    return b"".join([*out, packer.flush()])


def request_bytes(request: dict[str, Any], ctx: Context) -> tuple[bytes, bytes]:
    """(head, body) exactly as they go on the wire."""
    if "raw" in request:
        return ctx.subst(request["raw"]).encode("latin-1"), b""
    body = b""
    if "body" in request:
        body = ctx.subst(request["body"]).encode("utf-8")
    elif "body_latin1" in request:
        body = ctx.subst(request["body_latin1"]).encode("latin-1")
    elif "body_b64" in request:
        body = base64.b64decode(request["body_b64"])
    elif "generate" in request:
        body = generate(request["generate"], ctx)
    if "compress" in request:
        body = compress(body, request["compress"])
    raw_headers = request.get("headers", {})
    pairs = list(raw_headers.items()) if isinstance(raw_headers, dict) else list(raw_headers)
    headers = [(name, ctx.text(value)) for name, value in pairs]
    if not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("Host", f"{HOST}:{ctx.port}"))
    flood = request.get("header_flood")
    if flood:
        filler = "v" * int(flood["value_size"])
        headers += [(f"X-Flood-{i}", filler) for i in range(int(flood["count"]))]
    if "chunked" in request:
        size = int(request["chunked"])
        framed = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
                  for i in range(0, len(body), size)]  # fmt: skip
        body = b"".join([*framed, b"0\r\n\r\n"])
        headers.append(("Transfer-Encoding", "chunked"))
    else:
        declared = request.get("content_length", "auto")
        if declared == "auto":
            headers.append(("Content-Length", str(len(body))))
        elif declared is not None:
            headers.append(("Content-Length", str(ctx.size(declared))))
    line = f"{request['method']} {ctx.subst(request['path'])} {request.get('version', 'HTTP/1.1')}"
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"{line}\r\n{head}\r\n".encode("latin-1"), body


# --- a raw HTTP exchange -----------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Observed:
    answers: list[Answer] = field(default_factory=list)
    interim: list[int] = field(default_factory=list)  # 1xx statuses seen
    closed: bool = False  # EOF or reset from keyshim
    reset: bool = False
    leftover: bytes = b""  # bytes that are not a whole answer
    elapsed: float = 0.0
    send_error: str | None = None


def parse_answer(buf: bytearray, eof: bool) -> tuple[Answer | int, int] | None:
    """One answer (or a 1xx status) from the front of ``buf`` and its length, if complete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    start = end + 4
    if 100 <= status < 200:
        return status, start
    if "content-length" in headers:
        stop = start + int(headers["content-length"])
        return (Answer(status, headers, bytes(buf[start:stop])), stop) if len(buf) >= stop else None
    if headers.get("transfer-encoding", "").lower() == "chunked":
        pos, parts = start, []
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if len(buf) < eol + 2 + size + 2:
                return None
            parts.append(bytes(buf[eol + 2 : eol + 2 + size]))
            pos = eol + 2 + size + 2
            if size == 0:
                return Answer(status, headers, b"".join(parts)), pos
    return (Answer(status, headers, bytes(buf[start:])), len(buf)) if eof else None


def exchange(
    port: int,
    chunks: list[bytes],
    plan: dict[str, Any],
    *,
    answers: int,
    want_close: bool,
    deadline: float,
) -> Observed:
    """Send ``chunks`` (head, body, pipelined extras) by ``plan``; read answers until done."""
    obs = Observed()
    head, rest = chunks[0], b"".join(chunks[1:])
    sock = socket.create_connection((HOST, port), timeout=deadline + 5)
    stop = threading.Event()

    def sender() -> None:
        try:
            if "chunk" in plan:
                data = head + rest if plan.get("from") == 0 else rest
                if plan.get("from") != 0:
                    sock.sendall(head)
                size = int(plan["chunk"])
                for i in range(0, len(data), size):
                    if stop.wait(float(plan["delay"])):
                        return
                    sock.sendall(data[i : i + size])
            elif "stall_after" in plan:
                sock.sendall(head + rest[: int(plan["stall_after"])])
            elif "close_after" in plan:
                sock.sendall(head + rest[: int(plan["close_after"])])
                sock.shutdown(socket.SHUT_WR)
            else:
                sock.sendall(head + rest)
        except OSError as exc:
            obs.send_error = repr(exc)

    started = time.monotonic()
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    buf = bytearray()
    try:
        while time.monotonic() - started < deadline:
            ready, _, _ = select.select([sock], [], [], 0.05)
            if ready:
                try:
                    data = sock.recv(1 << 20)
                except ConnectionResetError:
                    data, obs.reset = b"", True
                obs.closed = not data
                buf += data
            while (got := parse_answer(buf, obs.closed)) is not None:
                item, used = got
                del buf[:used]
                if isinstance(item, int):
                    obs.interim.append(item)
                else:
                    obs.answers.append(item)
            if obs.closed or (len(obs.answers) >= answers and not want_close):
                break
    finally:
        obs.elapsed = time.monotonic() - started
        obs.leftover = bytes(buf)
        stop.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        thread.join(5)
    return obs


# --- the well-behaved client ------------------------------------------------------------------

#: Runs in its own process (so the harness's own work cannot slow it down): calls
#: DataService.echo through keyshim in a loop and appends "S start" before and
#: "E start end outcome" after every call (CLOCK_MONOTONIC is shared by all processes).
GOOD_CLIENT = r"""
import http.client, sys, time, xmlrpc.client
port, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
log = open(out, "a", buffering=1)
conn, i = None, 0
while True:
    i += 1
    text = f"ping {i}"
    body = xmlrpc.client.dumps((key, text), "DataService.echo").encode()
    start = time.monotonic()
    log.write(f"S {start:.6f}\n")
    outcome = "ok"
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/api/xmlrpc", body=body, headers={"Content-Type": "text/xml"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200 or xmlrpc.client.loads(data)[0][0] != text:
            outcome = f"HTTP-{response.status}:{data[:200]!r}"
    except Exception as exc:
        outcome = f"error:{exc!r}"
        conn = None
    log.write(f"E {start:.6f} {time.monotonic():.6f} {outcome}\n")
    time.sleep(0.02)
"""


class GoodClient:
    """The well-behaved client's process and what it recorded."""

    def __init__(self, port: int, key: str, out: Path, cwd: Path) -> None:
        self.out = out
        out.write_text("")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", GOOD_CLIENT, str(port), key, str(out)], cwd=cwd
        )

    def _read(self) -> tuple[list[tuple[float, float]], list[str], float | None]:
        samples, failures, inflight = [], [], None
        for line in self.out.read_text().splitlines():
            parts = line.split(" ", 3)
            if parts[0] == "S" and len(parts) == 2:
                inflight = float(parts[1])
            elif parts[0] == "E" and len(parts) == 4:
                samples.append((float(parts[1]), float(parts[2])))
                inflight = None
                if parts[3] != "ok":
                    failures.append(parts[3])
        return samples, failures, inflight

    @property
    def samples(self) -> list[tuple[float, float]]:
        return self._read()[0]

    @property
    def failures(self) -> list[str]:
        return self._read()[1]

    def stall(self, since: float) -> float:
        """The longest any call waited for an answer between ``since`` and now."""
        now = time.monotonic()
        samples, _, inflight = self._read()
        worst = max((end - start for start, end in samples if end >= since), default=0.0)
        return max(worst, now - inflight) if inflight is not None else worst

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def xmlrpc_loads(data: bytes) -> Any:
    return xmlrpc.client.loads(data, use_builtin_types=True)[0][0]


# --- the rig: two simulators, one keyshim process, the good client -----------------------------


class Counting:
    """ASGI middleware that counts every HTTP request reaching the hostile account's Keap."""

    def __init__(self, app: Any) -> None:
        self.app, self.requests = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M))
    return int(found["VmRSS"]) * 1024, int(found["VmHWM"]) * 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Result:
    expected: str
    observed: str
    seconds: float
    cpu: float
    stall: float
    ok: bool


@dataclass
class Rig:
    ctx: Context
    proc: subprocess.Popen[bytes]
    log_path: Path
    hostile_sim: Simulator
    hostile_wire: Counting
    good: GoodClient
    placeholder: str
    rss_before: int = 0
    results: dict[str, Result] = field(default_factory=dict)
    known_bug_windows: list[tuple[float, float]] = field(default_factory=list)
    known_bugs: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)

    @property
    def port(self) -> int:
        return self.ctx.port

    def upstream(self) -> tuple[int, int]:
        """What reached the hostile account's Keap: (HTTP requests, the simulator's
        ``xmlrpc_calls``)."""
        return self.hostile_wire.requests, self.hostile_sim.stats()["xmlrpc_calls"]

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def wait_until_healthy(self, limit: float = 120.0) -> float:
        """Seconds until /healthz answers again (a stalled event loop answers late)."""
        started = time.monotonic()
        while True:
            assert self.proc.poll() is None, f"keyshim exited: {self.log_since(0)[-3000:]}"
            try:
                get(self.port, "/healthz", timeout=limit)
                return time.monotonic() - started
            except OSError:
                pass
            assert time.monotonic() - started < limit, "keyshim did not recover"
            time.sleep(0.05)


def wait_for(port: int, path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            get(port, path)
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing answers on port {port}"
            time.sleep(0.05)


def control(port: int, route: str, body: dict[str, Any] | None = None) -> Any:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", f"/_sim/{route}", body=json.dumps(body or {}).encode())
        response = conn.getresponse()
        assert response.status == 200, response.read()
        return json.loads(response.read())
    finally:
        conn.close()


def add_remote_account(store: Any, port: int, name: str) -> None:
    """An account on a simulator in another process, set up through its control API."""
    base = f"http://{HOST}:{port}"
    client = control(port, "clients")
    pair = control(port, "tokens", {"client_id": client["client_id"]})
    now = time.time()
    store.add_account(
        Account(
            name=name,
            kind="oauth",
            created_at=now,
            client_id=client["client_id"],
            client_secret=client["client_secret"],
            xmlrpc_url=base + "/crm/xmlrpc/v1",
            token_url=base + "/token",
            authorize_url=base + "/app/oauth/authorize",
        )
    )
    store.put_tokens(
        name, TokenPair(pair["access_token"], pair["refresh_token"], now + pair["expires_in"]), now
    )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """keyshim (a process) between a hostile account's Keap (in this process, counting every
    request) and a good account's Keap (a process), plus the well-behaved client (a process)."""
    tmp = tmp_path_factory.mktemp("hostile")
    db = str(tmp / "keyshim.db")
    base = Settings.from_env({}, db=db)
    init_files(base)
    store = open_store(base)
    procs: list[subprocess.Popen[bytes]] = []
    servers: list[BackgroundServer] = []
    good: GoodClient | None = None
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIM_")}
    sim_log, shim_log = tmp / "simulator.log", tmp / "keyshim.log"

    def spawn(args: list[str], log: Path, **extra: str) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "shim", *args],
                cwd=ROOT,
                env={**env, **extra},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        return proc

    try:
        hostile_sim = Simulator(SimConfig())
        wire = Counting(hostile_sim.app)
        server = BackgroundServer(wire)
        server.__enter__()
        servers.append(server)
        add_oauth_account(store, hostile_sim, server.url, name="prod")
        key = issue_key(store, base, "prod")
        bad_key = keys.make_key(SecretBox(load_master_key(base)).derive("key-hmac")).text

        sim_port, port = free_port(), free_port()
        sim_proc = spawn(["simulator", "--port", str(sim_port)], sim_log)
        serve = ["--db", db, "serve", "--port", str(port), "--log-level", "warning"]
        proc = spawn(  # both processes start side by side; accounts can be added later
            serve,
            shim_log,
            SHIM_DB=db,
            SHIM_MAX_BODY=str(MAX_BODY),
            SHIM_BODY_TIMEOUT=str(BODY_TIMEOUT),
            SHIM_HEAD_TIMEOUT=str(HEAD_TIMEOUT),
            SHIM_SCHEDULER_INTERVAL="0",
        )
        wait_for(sim_port, "/_sim/stats", sim_proc, sim_log)
        add_remote_account(store, sim_port, "good")
        good_key = issue_key(store, base, "good")
        wait_for(port, "/healthz", proc, shim_log)
        names = {"limit": MAX_BODY, "body_timeout": BODY_TIMEOUT, "head_timeout": HEAD_TIMEOUT}
        ctx = Context(key=key, bad_key=bad_key, names=names, port=port)
        good = GoodClient(port, good_key, tmp / "good-client.log", ROOT)
        r = Rig(ctx, proc, shim_log, hostile_sim, wire, good, base.placeholder)
        deadline = time.monotonic() + 20
        while len(good.samples) < 10:  # warm: its connection and the good token are in use
            assert good.proc.poll() is None and time.monotonic() < deadline, good.failures
            time.sleep(0.05)
        assert not good.failures, good.failures
        r.rss_before = rss(proc.pid)[0]
        r.started = time.monotonic()
        yield r
    finally:
        if good is not None:
            good.stop()
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        for server in servers:
            server.__exit__(None, None, None)
        store.close()


# --- checking one case -------------------------------------------------------------------------


def describe_expected(expect: dict[str, Any]) -> str:
    parts = []
    if "status" in expect:
        status = expect["status"]
        parts.append("/".join(map(str, status)) if isinstance(status, list) else str(status))
    if "fault_code" in expect:
        parts.append(f"fault {expect['fault_code']}")
    if "value" in expect or "value_len" in expect:
        parts.append("value")
    if expect.get("closed"):
        parts.append("close")
    parts.append("upstream" if expect.get("upstream") else "no upstream")
    return " ".join(parts)


def describe_observed(obs: Observed, upstream: int) -> str:
    parts = []
    for answer in obs.answers:
        try:
            xmlrpc_loads(answer.body)
            parts.append(f"{answer.status} value")
        except xmlrpc.client.Fault as exc:
            parts.append(f"{answer.status} fault {exc.faultCode}")
        except Exception:
            parts.append(str(answer.status))
    if obs.interim:
        parts.append(f"interim {obs.interim}")
    if obs.closed:
        parts.append("reset" if obs.reset else "close")
    elif not obs.answers:
        parts.append("nothing")
    parts.append(f"upstream x{upstream}" if upstream else "no upstream")
    return " ".join(parts)


def check_answer(answer: Answer, expect: dict[str, Any], what: str) -> list[str]:
    problems = []
    wanted = expect.get("status")
    allowed = wanted if isinstance(wanted, list) else [wanted]
    if wanted is not None and answer.status not in allowed:
        problems.append(f"{what}: HTTP {answer.status}, expected {wanted}")
    if TRACEBACK.search(answer.body.decode("latin-1")):
        problems.append(f"{what}: a traceback in the answer: {answer.body[:500]!r}")
    for text in expect.get("not_contains", []):
        if text.encode() in answer.body:
            problems.append(f"{what}: the answer contains {text!r}")
    if "body_max" in expect and len(answer.body) > expect["body_max"]:
        problems.append(f"{what}: a {len(answer.body)}-byte answer (max {expect['body_max']})")
    for name, value in expect.get("header", {}).items():
        if answer.headers.get(name.lower()) != value:
            problems.append(f"{what}: header {name}: {answer.headers.get(name.lower())!r}")
    wants_xml = "fault_code" in expect or "value" in expect or "value_len" in expect
    if not wants_xml:
        return problems
    if not answer.headers.get("content-type", "").startswith("text/xml"):
        problems.append(f"{what}: content-type {answer.headers.get('content-type')!r}")
    try:
        value = xmlrpc_loads(answer.body)
    except xmlrpc.client.Fault as exc:
        if "fault_code" not in expect:
            problems.append(f"{what}: fault {exc.faultCode} {exc.faultString[:200]!r}")
        elif exc.faultCode != expect["fault_code"]:
            problems.append(f"{what}: fault {exc.faultCode} {exc.faultString[:200]!r}, expected "
                            f"{expect['fault_code']}")  # fmt: skip
        elif not exc.faultString.startswith(expect.get("fault_prefix", "")):
            problems.append(f"{what}: faultString {exc.faultString[:200]!r} does not start "
                            f"with {expect['fault_prefix']!r}")  # fmt: skip
        elif expect.get("fault_contains", "") not in exc.faultString:
            problems.append(f"{what}: faultString {exc.faultString[:200]!r} does not mention "
                            f"{expect['fault_contains']!r}")  # fmt: skip
        return problems
    except Exception as exc:
        return [*problems, f"{what}: not a methodResponse ({exc!r}): {answer.body[:300]!r}"]
    if "fault_code" in expect:
        problems.append(f"{what}: a value, expected fault {expect['fault_code']}")
    if "value" in expect and value != expect["value"]:
        problems.append(f"{what}: value {str(value)[:80]!r}, expected {expect['value']!r}")
    if "value_len" in expect and (not isinstance(value, str) or len(value) != expect["value_len"]):
        problems.append(f"{what}: a value of {len(value)} characters")
    return problems


def run_case(rig: Rig, case: dict[str, Any]) -> None:
    expect = case["expect"]
    ctx = rig.ctx
    within = number(expect.get("within", 5), ctx.names)
    head, body = request_bytes(case["request"], ctx)
    chunks = [head, body]
    then = case.get("then")
    if then is not None:
        chunks += list(request_bytes(then["request"], ctx))
    upstream_before, log_offset = rig.upstream(), rig.log_size()
    cpu_before = cpu_seconds(rig.proc.pid)
    started = time.monotonic()
    want_close = bool(expect.get("closed"))
    obs = exchange(
        ctx.port,
        chunks,
        case.get("send", {}),
        answers=(2 if then is not None else 1) if "status" in expect else 0,
        want_close=want_close,
        deadline=within,
    )
    recovery = rig.wait_until_healthy()
    cpu = cpu_seconds(rig.proc.pid) - cpu_before
    stall = rig.good.stall(started)
    ended = time.monotonic()
    if known_bug(case):
        rig.known_bug_windows.append((started, ended))
        rig.known_bugs.add(case["name"])
    (requests, calls), (requests_before, calls_before) = rig.upstream(), upstream_before
    upstream = max(requests - requests_before, calls - calls_before)
    log_text = rig.log_since(log_offset)

    problems: list[str] = []
    if "status" in expect:
        if not obs.answers:
            problems.append(f"no answer within {within:g}s ({obs.leftover[:200]!r})")
        else:
            problems += check_answer(obs.answers[0], expect, "answer")
        if then is not None:
            if len(obs.answers) < 2:
                problems.append("no answer to the pipelined follow-up request")
            else:
                problems += check_answer(obs.answers[1], then["expect"], "follow-up")
    elif obs.answers or obs.leftover:
        problems.append(f"expected no answer, got {(obs.leftover or obs.answers[0].body)[:200]!r}")
    if obs.interim:
        problems.append(f"interim answers {obs.interim} (a 100 Continue invites the body)")
    if want_close and not obs.closed:
        problems.append(f"the connection was not closed within {within:g}s")
    if obs.elapsed > within:
        problems.append(f"took {obs.elapsed:.1f}s (limit {within:g}s)")
    if recovery > 1.0:
        problems.append(f"/healthz took {recovery:.1f}s to answer after the case")
    if stall > STALL_LIMIT:
        problems.append(f"the well-behaved client waited {stall:.1f}s for an answer")
    wants_upstream = bool(expect.get("upstream", False)) or bool(
        then is not None and then["expect"].get("upstream")
    )
    if wants_upstream and not upstream:
        problems.append("the call did not reach the simulator (the detector is broken?)")
    if not wants_upstream and upstream:
        problems.append(f"{upstream} request(s) reached the simulator")
    if wants_upstream:
        seen = rig.hostile_sim.stats()["private_keys_seen"]
        if any(k != rig.placeholder for k in seen):
            problems.append(f"Keap saw private keys other than the placeholder: {seen}")
    if TRACEBACK.search(log_text) or '"level": "error"' in log_text:
        problems.append(f"keyshim logged an error: {log_text[-1500:]}")

    rig.results[case["name"]] = Result(
        describe_expected(expect),
        describe_observed(obs, upstream),
        obs.elapsed,
        cpu,
        stall,
        not problems,
    )
    assert not problems, "\n".join(problems)


# --- the fuzz test (in-process, fast) ----------------------------------------------------------


@dataclass
class InProcess:
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    key: str
    sim: Simulator
    seeds: list[bytes]

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.loop.run_until_complete(
            self.client.post("/api/xmlrpc", content=body, headers=headers)
        )


@pytest.fixture(scope="module")
def inproc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    base = Settings.from_env({}, db=str(tmp / "keyshim.db"), scheduler_interval=0)
    base = replace(base, max_body=256 * 1024, body_timeout=5.0)
    init_files(base)
    store = open_store(base)
    sim = Simulator(SimConfig())
    loop = asyncio.new_event_loop()
    # Forwarded calls go to the simulator over loopback, through http1 as in production.
    served = contextlib.AsyncExitStack()
    url = loop.run_until_complete(served.enter_async_context(serve_simulator(sim)))
    add_oauth_account(store, sim, url)
    key = issue_key(store, base, "prod")
    store.close()
    app = KeyshimApp(
        base,
        lambda s: build_services(s, transport=httpx.ASGITransport(app=sim.app), forward_http1=True),
    )
    loop.run_until_complete(app.startup())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shim.test")
    seeds = [
        codec.dumps_call("DataService.echo", [key, "hello"]),
        codec.dumps_call("DataService.echo", ["ping"]),
        codec.dumps_call("ContactService.add", [key, {"FirstName": "Ann", "Email": "a@b.c"}]),
        codec.dumps_call("ContactService.load", [key, 1, ["Id", "FirstName", "Email"]]),
        codec.dumps_call(
            "DataService.query", [key, "Contact", 10, 0, {"FirstName": "A%"}, ["Id", "FirstName"]]
        ),
        codec.dumps_call(
            "DataService.add",
            [
                key,
                "Contact",
                {
                    "FirstName": "Bo",
                    "Birthday": datetime.datetime(1990, 1, 2, 3, 4, 5),
                    "Score": 1.5,
                    "Opt": True,
                    "Big": 2**40,
                    "Nil": None,
                },
            ],
        ),
        codec.dumps_call("FileService.uploadFile", [key, 1, "a.txt", b"hello file"]),
        (
            '<?xml version="1.0" encoding="ISO-8859-1"?>\n<!-- legacy --><methodCall><methodName>'
            "DataService.echo</methodName><params><param><value><![CDATA[" + key + "]]></value>"
            "</param><param><value>caf\xe9 &amp; &#233;</value></param></params></methodCall>"
        ).encode("latin-1"),
    ]
    yield InProcess(loop, client, key, sim, seeds)
    loop.run_until_complete(client.aclose())
    loop.run_until_complete(app.shutdown())
    loop.run_until_complete(served.aclose())
    loop.close()


TOKENS = [
    b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>", b"&e;", b"<![CDATA[", b"]]>",
    b"<!--", b"-->", b"<?pi x?>", b"<value>", b"</value>", b"<struct>", b"</struct>",
    b"<array><data>", b"</data></array>", b"<param>", b"</param>", b"<string>", b"</string>",
    b"<i4>", b"<double>1e99999</double>", b"<dateTime.iso8601>", b"<base64>", b"&#0;", b"&#xD800;",
    b"&#x10FFFF;", b"&amp;", b"\x00", b"\xff\xfe", b"\xc3", b"\r\n", b"shk_", b".", b"<methodName>",
    b'<?xml version="1.0" encoding="UTF-16"?>', b"<xi:include xmlns:xi='x' href='/etc/passwd'/>",
]  # fmt: skip

MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.integers(1, 64)),
    st.tuples(
        st.just("duplicate"), st.integers(0, 1 << 16), st.integers(1, 200), st.integers(1, 50)
    ),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=24)),
    st.tuples(st.just("token"), st.integers(0, 1 << 16), st.sampled_from(TOKENS)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16)),
)


def mutate(body: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    for op in ops:
        at = op[1] % (len(body) + 1)
        if op[0] == "flip" and body:
            at %= len(body)
            body = body[:at] + bytes([body[at] ^ op[2]]) + body[at + 1 :]
        elif op[0] == "delete":
            body = body[:at] + body[at + op[2] :]
        elif op[0] == "duplicate":
            body = body[:at] + body[at : at + op[2]] * op[3] + body[at:]
        elif op[0] in ("insert", "token"):
            body = body[:at] + op[2] + body[at:]
        elif op[0] == "truncate":
            body = body[:at]
    return body


@settings(
    max_examples=int(os.environ.get("HOSTILE_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.integers(0, 7),
    ops=st.lists(MUTATION, min_size=1, max_size=6),
    content_type=st.sampled_from([None, "text/xml", "text/xml; charset=utf-8", "application/xml",
                                  "text/plain", "application/json", "multipart/form-data"]),
    encoding=st.sampled_from([None, None, None, "gzip", "deflate", "gzip-lie", "br"]),
)  # fmt: skip
def test_fuzzed_legacy_calls_always_get_a_well_formed_answer(
    inproc: InProcess,
    seed: int,
    ops: list[tuple[Any, ...]],
    content_type: str | None,
    encoding: str | None,
) -> None:
    body = mutate(inproc.seeds[seed], ops)
    headers = {} if content_type is None else {"Content-Type": content_type}
    if encoding in ("gzip", "deflate"):
        body = compress(body, encoding)
    if encoding is not None:
        headers["Content-Encoding"] = encoding.removesuffix("-lie")
    response = inproc.post(body, headers)

    assert response.status_code in (200, 415), (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/xml")
    assert not TRACEBACK.search(response.text), response.text
    try:
        xmlrpc_loads(response.content)
    except xmlrpc.client.Fault as exc:
        assert not exc.faultString.startswith("[Unexpected]keyshim internal error"), exc
        if response.status_code == 415:
            assert exc.faultCode == 111
    else:
        assert response.status_code == 200
    assert inproc.key not in inproc.sim.stats()["private_keys_seen"]


# --- the corpus against a real keyshim process -------------------------------------------------


def test_corpus_is_big_and_well_formed() -> None:
    assert len(CASES) >= 45
    for case in CASES:
        assert {"name", "description", "request", "expect"} <= set(case), case["name"]
        assert "upstream" in case["expect"], case["name"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", [case_param(c) for c in CASES])
def test_hostile_case(rig: Rig, case: dict[str, Any]) -> None:
    run_case(rig, case)


@pytest.mark.timeout(60)
def test_keyshim_survived_the_corpus(rig: Rig) -> None:
    """After every case: no good call failed, latency held, memory came back, still healthy."""
    ended = time.monotonic()
    assert rig.proc.poll() is None
    assert get(rig.port, "/healthz")[0] == 200
    rss_after, peak = rss(rig.proc.pid)
    good = rig.good
    samples = [(s, e) for s, e in good.samples if s >= rig.started]
    outside = [
        e - s
        for s, e in samples
        if not any(s <= w_end and e >= w_start for w_start, w_end in rig.known_bug_windows)
    ]
    latencies = sorted(outside)
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0
    report = format_report(rig, ended - rig.started, rss_after, peak, len(samples), p99)
    print(report)
    if os.environ.get("HOSTILE_REPORT"):
        Path(os.environ["HOSTILE_REPORT"]).write_text(report + "\n")
    assert not good.failures, good.failures[:10]
    assert len(latencies) >= 50, "the well-behaved client barely ran"
    assert p99 < P99_LIMIT, f"p99 latency {p99:.3f}s"
    assert rss_after - rig.rss_before < RSS_GROWTH_LIMIT, report
    assert set(rig.hostile_sim.stats()["private_keys_seen"]) <= {rig.placeholder}


def format_report(
    rig: Rig, seconds: float, rss_after: int, peak: int, calls: int, p99: float
) -> str:
    mb = 1024 * 1024
    width = max((len(name) for name in rig.results), default=10)
    head = f"{'case':{width}}  {'expected':32}  {'observed':36}  secs   cpu  stall  verdict"
    lines = [head]
    for name, r in rig.results.items():
        verdict = "ok" if r.ok else "FAILS (known bug)" if name in rig.known_bugs else "FAILS"
        lines.append(
            f"{name:{width}}  {r.expected:32}  {r.observed:36}  {r.seconds:4.1f}  {r.cpu:4.1f}"
            f"  {r.stall:5.1f}  {verdict}"
        )
    lines.append(
        f"{len(rig.results)} cases in {seconds:.1f}s; keyshim RSS {rig.rss_before / mb:.0f} MB "
        f"before, {rss_after / mb:.0f} MB after, peak {peak / mb:.0f} MB; good client: {calls} "
        f"calls, {len(rig.good.failures)} failures, p99 {p99 * 1000:.0f} ms outside known bugs"
    )
    return "\n".join(lines)
