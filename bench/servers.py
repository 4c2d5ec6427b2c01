"""Which ASGI server should serve keyshim? The same canned app under each, loaded by wrk.

keyshim runs as a raw ASGI app under uvicorn (httptools + uvloop). This script measures what the
server itself costs, with the app made as cheap as it can be, so that the choice rests on
numbers: every server serves ``app`` below, which reads the whole POST body and answers a fixed
``<int>42</int>`` XML-RPC methodResponse.

Server configurations (one worker process each, on 127.0.0.1 at a free port):

* ``uvicorn``         ``--http httptools --loop uvloop`` (what keyshim uses);
* ``uvicorn-asyncio`` ``--http httptools --loop asyncio``;
* ``granian``         ``--interface asgi --loop uvloop`` (its ``auto`` loop picks rloop, else
  uvloop; the explicit ``uvloop`` keeps the loop fixed), default runtime options;
* ``hypercorn``       ``-k uvloop`` (falls back to ``asyncio`` if uvloop is missing).

Each is started as a subprocess of ``--python`` (``python -m uvicorn|granian|hypercorn``),
polled until it answers, warmed up for 1 s, then loaded by ``wrk --latency`` posting a ~1.5 kB
``ContactService.add`` at 1, 16 and 64 connections (``-t1`` for 1 connection, ``-t2``
otherwise). The cells are interleaved: each round starts every server in turn, rotating which
goes first, so drift in the machine's speed hits all alike.

The key figure is ``CPU µs/req``: user + system time (``/proc/<pid>/stat`` utime + stime) of the
server process and all its descendants (granian and hypercorn run their worker in a child
process) spent during a wrk run, divided by the requests it completed. wrk runs on the same
2 cores, so req/s at 16 and 64 connections is a shared-machine figure; CPU per request is not.

    python bench/servers.py                               # ~2.5 minutes, table on stdout
    python bench/servers.py --servers uvicorn,granian --json out.json
    python bench/servers.py --python /path/to/venv/bin/python

A server whose package (or uvloop/httptools, where needed) cannot be imported by ``--python``
is skipped with a note. Every process started is stopped by its own pid, and the temporary
directory is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import contact_add_body, run_wrk
from util import _stat_fields, calibrate_us, cpu_seconds, elapsed, process_tree, progress

# --------------------------------------------------------------------------------------------
# The app every server serves
# --------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RESPONSE_BODY = (
    b'<?xml version="1.0"?><methodResponse><params><param><value><int>42</int></value>'
    b"</param></params></methodResponse>"
)
_OK_HEADERS = [
    (b"content-type", b"text/xml"),
    (b"content-length", str(len(RESPONSE_BODY)).encode()),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Raw ASGI: POST -> read the whole body -> 200 text/xml canned methodResponse."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 405, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = bytearray()
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
    await send({"type": "http.response.body", "body": RESPONSE_BODY})


# --------------------------------------------------------------------------------------------
# Server configurations
# --------------------------------------------------------------------------------------------

HOST = "127.0.0.1"
#: Distributions whose versions are reported (and probed for importability).
DISTRIBUTIONS = ("uvicorn", "httptools", "uvloop", "granian", "hypercorn", "h11")


@dataclass(frozen=True)
class ServerConfig:
    name: str
    needs: tuple[str, ...]
    build: Callable[[str, str, int, set[str]], list[str]]
    note: Callable[[set[str]], str] = lambda _: ""


def _uvicorn(loop: str) -> Callable[[str, str, int, set[str]], list[str]]:
    def build(python: str, target: str, port: int, _have: set[str]) -> list[str]:
        return [
            python, "-m", "uvicorn", target, "--host", HOST, "--port", str(port),
            "--http", "httptools", "--loop", loop, "--lifespan", "on",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip

    return build


def _granian(python: str, target: str, port: int, have: set[str]) -> list[str]:
    loop = ["--loop", "uvloop"] if "uvloop" in have else []
    return [
        python, "-m", "granian", "--interface", "asgi", "--host", HOST, "--port", str(port),
        "--workers", "1", *loop, "--log-level", "warning", target,
    ]  # fmt: skip


def _hypercorn(python: str, target: str, port: int, have: set[str]) -> list[str]:
    worker = "uvloop" if "uvloop" in have else "asyncio"
    return [
        python, "-m", "hypercorn", "--bind", f"{HOST}:{port}", "--workers", "1",
        "--worker-class", worker, "--log-level", "warning", target,
    ]  # fmt: skip


SERVERS: dict[str, ServerConfig] = {
    c.name: c
    for c in (
        ServerConfig("uvicorn", ("uvicorn", "httptools", "uvloop"), _uvicorn("uvloop")),
        ServerConfig("uvicorn-asyncio", ("uvicorn", "httptools"), _uvicorn("asyncio")),
        ServerConfig(
            "granian",
            ("granian",),
            _granian,
            lambda have: "" if "uvloop" in have else "uvloop missing: granian's default loop",
        ),
        ServerConfig(
            "hypercorn",
            ("hypercorn",),
            _hypercorn,
            lambda have: "" if "uvloop" in have else "uvloop missing: asyncio worker",
        ),
    )
}

_PROBE = """
import importlib, importlib.metadata, json, sys
out = {}
for dist in json.loads(sys.argv[1]):
    try:
        importlib.import_module(dist)
        out[dist] = importlib.metadata.version(dist)
    except Exception:
        out[dist] = None
print(json.dumps(out))
"""


def probe(python: str) -> dict[str, str | None]:
    """Version of each distribution importable by ``python`` (None where it is not)."""
    done = subprocess.run(
        [python, "-c", _PROBE, json.dumps(DISTRIBUTIONS)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result: dict[str, str | None] = json.loads(done.stdout)
    return result


# --------------------------------------------------------------------------------------------
# Progress, /proc, processes
# --------------------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    try:
        return _stat_fields(pid)[19]  # field 22: start time, tells a reused pid apart
    except (OSError, IndexError):
        return None


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server, then SIGKILL whatever of its tree (by pid) is still there."""
    members = [(pid, _start_time(pid)) for pid in process_tree(proc.pid)]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    for pid, started in members:
        if pid != proc.pid and started is not None and _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_counters() -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq
    steal ...), in ticks."""
    line = Path("/proc/stat").read_text().splitlines()[0]
    return [int(x) for x in line.split()[1:]]


# --------------------------------------------------------------------------------------------
# Load (the body and the wrk script are bench/run.py's: bench/load.py, bench/post.lua)
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    server: str
    conns: int
    round: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_s: float

    @property
    def cpu_us_per_req(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else float("nan")


def wait_ready(proc: subprocess.Popen[bytes], port: int, body: bytes, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            conn.request("POST", "/", body=body, headers={"Content-Type": "text/xml"})
            answer = conn.getresponse()
            if answer.status == 200 and b"<int>42</int>" in answer.read():
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"no answer within 20 s:\n{log.read_text()[-2000:]}")


@dataclass
class Bench:
    python: str
    wrk: str
    tmp: Path
    duration: int
    conns: list[int]
    have: set[str]
    runs: list[Run] = field(default_factory=list)

    def cell(self, config: ServerConfig, round_no: int) -> None:
        """Start ``config``'s server, warm it up, run every concurrency, stop it."""
        module = Path(__file__).resolve()
        port = free_port()
        cmd = config.build(self.python, f"{module.stem}:app", port, self.have)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(module.parent), env.get("PYTHONPATH", "")) if p
        )
        log = self.tmp / f"{config.name}-{round_no}.log"
        url = f"http://{HOST}:{port}/"
        body_file = self.tmp / "body.xml"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=self.tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        try:
            wait_ready(proc, port, body_file.read_bytes(), log)
            run_wrk(self.wrk, url, body_file, 4, 1)  # warm-up
            order = self.conns if round_no % 2 == 0 else self.conns[::-1]
            for conns in order:
                before = cpu_seconds(proc.pid)
                result = run_wrk(self.wrk, url, body_file, conns, self.duration)
                cpu = cpu_seconds(proc.pid) - before
                errors = result.bad + result.status + result.socket_errors
                run = Run(
                    server=config.name, conns=conns, round=round_no,
                    requests=result.requests, seconds=result.duration_us / 1e6,
                    p50_ms=result.p50_us / 1e3, p99_ms=result.p99_us / 1e3,
                    errors=errors, cpu_s=cpu,
                )  # fmt: skip
                self.runs.append(run)
                progress(
                    f"  {config.name:<16} c={conns:<3} {run.requests / run.seconds:9.0f} req/s "
                    f"p99 {run.p99_ms:6.2f} ms  {run.cpu_us_per_req:6.1f} CPU µs/req"
                    + (f"  {errors} errors" if errors else "")
                )
        finally:
            stop_tree(proc)


def summarise(runs: list[Run], names: list[str], conns: list[int]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        for c in conns:
            cell = [r for r in runs if r.server == name and r.conns == c]
            if not cell:
                continue
            requests = sum(r.requests for r in cell)
            per_round = [r.cpu_us_per_req for r in cell]
            cpu = sum(r.cpu_s for r in cell) / requests * 1e6 if requests else float("nan")
            rows.append(
                {
                    "server": name,
                    "conns": c,
                    "req_per_s": requests / sum(r.seconds for r in cell),
                    "p50_ms": statistics.median(r.p50_ms for r in cell),
                    "p99_ms": statistics.median(r.p99_ms for r in cell),
                    "errors": sum(r.errors for r in cell),
                    "cpu_us_per_req": cpu,
                    "cpu_spread_pct": (max(per_round) - min(per_round)) / cpu * 100,
                    "rounds": len(cell),
                }
            )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'server':<16} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'CPU µs/req':>11} {'spread':>7}"
    ]
    for r in rows:
        lines.append(
            f"{r['server']:<16} {r['conns']:>5} {r['req_per_s']:>9.0f} {r['p50_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['errors']:>7} {r['cpu_us_per_req']:>11.1f} "
            f"{r['cpu_spread_pct']:>6.1f}%"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help=f"comma-separated, of: {', '.join(SERVERS)}"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter with the servers")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--conns", default="1,16,64", help="comma-separated concurrencies")
    args = parser.parse_args(argv)

    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SERVERS]
    if unknown:
        parser.error(f"unknown server(s): {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    wrk = shutil.which("wrk")
    if wrk is None:
        parser.error("wrk is not on PATH (Debian: apt-get install wrk)")
    conns = [int(c) for c in args.conns.split(",")]

    versions = probe(args.python)
    have = {dist for dist, version in versions.items() if version}
    progress("versions: " + ", ".join(f"{d} {v or '-'}" for d, v in versions.items()))
    configs, notes = [], []
    for name in wanted:
        config = SERVERS[name]
        missing = [d for d in config.needs if d not in have]
        if missing:
            notes.append(f"{name}: skipped, {args.python} cannot import {', '.join(missing)}")
            progress(notes[-1])
            continue
        if config.note(have):
            notes.append(f"{name}: {config.note(have)}")
        configs.append(config)
    if not configs:
        progress("no server to run")
        return 1

    counters_before, calibrations = cpu_counters(), [calibrate_us()]
    progress(f"calibration: sum(range(10_000)) = {calibrations[0]:.1f} µs")
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as tmp_name:
        tmp = Path(tmp_name)
        body = contact_add_body("0123456789abcdef0123456789abcdef")
        (tmp / "body.xml").write_bytes(body)
        bench = Bench(args.python, wrk, tmp, args.duration, conns, have)
        for round_no in range(args.rounds):
            shift = round_no % len(configs)
            for config in configs[shift:] + configs[:shift]:
                calibrations.append(calibrate_us())
                progress(
                    f"round {round_no + 1}/{args.rounds}: {config.name} "
                    f"(calibration {calibrations[-1]:.0f} µs)"
                )
                try:
                    bench.cell(config, round_no)
                except RuntimeError as exc:
                    notes.append(f"{config.name} round {round_no + 1}: {exc}")
                    progress(notes[-1])
    calibrations.append(calibrate_us())
    counters_after = cpu_counters()
    delta = [a - b for a, b in zip(counters_after, counters_before, strict=True)]
    total_ticks: int = sum(delta)
    steal_pct = delta[7] / total_ticks * 100 if len(delta) > 7 and total_ticks else 0.0

    rows = summarise(bench.runs, [c.name for c in configs], conns)
    print(format_table(rows))
    print(
        f"\nbody {len(body)} B; {args.rounds} rounds x {args.duration:g} s per cell; "
        f"steal {steal_pct:.1f}%; spread = (max-min)/mean of CPU µs/req over rounds"
    )
    print(
        f"machine speed (best-of-5 sum(range(10_000)), before each server start): "
        f"min {min(calibrations):.0f}, median {statistics.median(calibrations):.0f}, "
        f"max {max(calibrations):.0f} µs"
    )
    print("versions: " + ", ".join(f"{d} {v or '-'}" for d, v in versions.items()))
    for note in notes:
        print(f"note: {note}")
    if args.json:
        payload = {
            "versions": versions,
            "python": args.python,
            "body_bytes": len(body),
            "duration_s": args.duration,
            "rounds": args.rounds,
            "calibration_us": calibrations,
            "steal_pct": steal_pct,
            "notes": notes,
            "rows": rows,
            "runs": [asdict(r) | {"cpu_us_per_req": r.cpu_us_per_req} for r in bench.runs],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        progress(f"wrote {args.json}")
    progress(f"done in {elapsed():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
