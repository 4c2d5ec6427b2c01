"""HTTP client bench: keyshim's forwarding path on http1.py, httpx-aiohttp and aiohttp.

    python3 bench/clients.py            # about 3.5 minutes on 2 cores; one table on stdout

Issue 13 asks whether shim/http1.py (keyshim's own HTTP/1.1 client) still earns its keep: if
httpx on httpx-aiohttp's transport, or aiohttp directly, costs within 15% of its CPU per
forwarded call, http1.py is retired for that client. Everything is measured in one run, the
cells interleaved round by round (which target goes first rotates) so drift hits all alike:

    direct           wrk ─────────────────────────────────────▶ nginx upstream
    keyshim <c>      wrk ──▶ shim serve, upstream client <c> ──▶ nginx upstream
    proxy <c>        wrk ──▶ minimal forwarding app, <c>     ──▶ nginx upstream

for each client <c> in http1, httpx-aiohttp, aiohttp, at 1, 16 and 64 connections. ``keyshim``
is keyshim as shipped with only the class it builds for ``Upstream`` swapped
(bench/keyshim_client.py): the real forwarding path, and the decision's figure. ``proxy`` is
bench/client_variants.py's app: the same ``Upstream.open`` and streaming back, none of
keyshim's per-call work, so the client's share of the cost shows more plainly. The upstream,
the load (wrk + post.lua, which checks every answer) and the CPU accounting (/proc) are
bench/run.py's; see bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from util import (
    REPO,
    MachineLoad,
    calibrate_us,
    cpu_model,
    cpu_seconds,
    elapsed,
    ensure_keyshim,
    progress,
    tool_version,
)

ensure_keyshim()

from client_variants import CLIENTS  # noqa: E402
from load import Cell, WrkRun, contact_add_body, run_wrk  # noqa: E402
from stack import (  # noqa: E402
    ANSWER,
    BENCH_DIR,
    Stack,
    running_stack,
    start_floor,
    start_keyshim,
    stop,
    wait_healthy,
)

CONNECTIONS = (1, 16, 64)
#: Issue 13's rule: a candidate within this much of http1.py's CPU per call replaces it.
MAX_CPU_RATIO = 1.15
BASELINE = "http1"


def ensure_bench_extra() -> None:
    """Install the ``bench`` extra (aiohttp, httpx-aiohttp) if it is missing."""
    try:
        import aiohttp  # noqa: F401
        import httpx_aiohttp  # noqa: F401
    except ImportError:
        progress("installing the bench extra (pip install -e '.[bench]')")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-e", f"{REPO}[bench]"],
            check=True,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )


@dataclass
class Target:
    """One thing wrk posts to."""

    name: str
    kind: str  # "direct", "keyshim" or "proxy"
    client: str | None
    url: str
    body: Path
    authorization: str | None = None  # sent by wrk itself (direct only)
    pid: int | None = None  # the process whose CPU time is measured
    upstream_connections: int | None = None  # its open connections upstream, after c=64
    cells: dict[int, Cell] = field(default_factory=dict)


def measure(stack: Stack, targets: list[Target], rounds: int, seconds: int) -> None:
    """Every target at every concurrency, ``rounds`` times, interleaved."""
    for t in targets:
        t.cells = {c: Cell(t.name, c) for c in CONNECTIONS}
    progress("warm-up: 1 s per target at 16 connections")
    for t in targets:
        _run(stack, t, 16, 1)
    for r in range(rounds):
        first = r % len(targets)
        order = targets[first:] + targets[:first]
        for c in CONNECTIONS:
            for t in order:
                run = _run(stack, t, c, seconds)
                t.cells[c].runs.append(run)
                if c == CONNECTIONS[-1] and t.pid is not None:
                    t.upstream_connections = upstream_connections(t.pid, stack.upstream.port)
                per_call = run.cpu_s * 1000 / run.requests if run.requests else 0.0
                progress(
                    f"round {r + 1}/{rounds}  {t.name:<22} c={c:<3}"
                    f"{run.requests / (run.duration_us / 1e6):>8.0f} req/s  "
                    f"p50 {run.p50_us / 1000:6.2f} ms  p99 {run.p99_us / 1000:6.2f} ms  "
                    f"CPU {per_call:.3f} ms/call  bad {run.bad + run.socket_errors}"
                )


def _run(stack: Stack, t: Target, connections: int, seconds: int) -> WrkRun:
    before = cpu_seconds(t.pid) if t.pid else 0.0
    run = run_wrk(stack.wrk, t.url, t.body, connections, seconds, authorization=t.authorization)
    if t.pid:
        run = WrkRun(**{**asdict(run), "cpu_s": cpu_seconds(t.pid) - before})
    return run


# -- checks: the answers are right, and each process runs the client it claims -----------


def check_answer(t: Target) -> None:
    """One call by hand: HTTP 200, text/xml, and the upstream's canned answer byte for byte."""
    url = urlsplit(t.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    headers = {"Content-Type": "text/xml"}
    if t.authorization:
        headers["Authorization"] = t.authorization
    try:
        conn.request("POST", url.path, t.body.read_bytes(), headers)
        answer = conn.getresponse()
        body = answer.read()
    finally:
        conn.close()
    kind = answer.getheader("content-type", "")
    if answer.status != 200 or not kind.startswith("text/xml") or body != ANSWER.encode():
        raise SystemExit(f"{t.name}: wrong answer: {answer.status} {kind!r} {body[:200]!r}")


def check_client(t: Target) -> None:
    """aiohttp's C parser is mapped into the process iff its client is built on aiohttp (the
    variants import aiohttp only when they use it): the swap really happened."""
    if t.pid is None:
        return
    maps = Path(f"/proc/{t.pid}/maps").read_text()
    loaded = "aiohttp/_http_parser" in maps
    if loaded != (t.client != BASELINE):
        raise SystemExit(f"{t.name}: aiohttp's parser {'is' if loaded else 'is not'} loaded")


def upstream_connections(pid: int, port: int) -> int:
    """Established TCP connections from ``pid`` to the upstream's ``port`` (its pool's size)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def logged_errors(workdir: Path) -> int:
    """Error lines the measured processes logged (keyshim: level error; the proxies log at
    warning and up, so any traceback)."""
    count = 0
    for log in workdir.glob("clients-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            count += '"level": "error"' in line or line.startswith("Traceback")
    return count


# -- report ----------------------------------------------------------------------------------


def cpu_per_call(cell: Cell) -> float:
    return sum(r.cpu_s for r in cell.runs) * 1000 / cell.requests


def round_cpu(cell: Cell) -> list[float]:
    return [r.cpu_s * 1000 / r.requests for r in cell.runs]


@dataclass(frozen=True)
class Ratio:
    """A candidate's CPU per call over http1.py's, same path and concurrency."""

    kind: str
    client: str
    connections: int
    ratio: float
    round_low: float  # the lowest and highest ratio of one round (cells of a round interleave)
    round_high: float


def ratios(targets: list[Target]) -> list[Ratio]:
    out = []
    by = {(t.kind, t.client): t for t in targets}
    for kind in ("keyshim", "proxy"):
        base = by[kind, BASELINE]
        for client in CLIENTS:
            if client == BASELINE:
                continue
            t = by[kind, client]
            for c in CONNECTIONS:
                per_round = [
                    x / y
                    for x, y in zip(round_cpu(t.cells[c]), round_cpu(base.cells[c]), strict=True)
                ]
                ratio = cpu_per_call(t.cells[c]) / cpu_per_call(base.cells[c])
                out.append(Ratio(kind, client, c, ratio, min(per_round), max(per_round)))
    return out


def decision(found: list[Ratio]) -> str:
    """Issue 13's rule on the keyshim rows: within 15% at every concurrency."""
    passing = []
    for client in CLIENTS[1:]:
        mine = [r for r in found if r.kind == "keyshim" and r.client == client]
        if all(r.ratio <= MAX_CPU_RATIO for r in mine):
            passing.append(client)
    if not passing:
        return (
            f"neither candidate is within {MAX_CPU_RATIO - 1:.0%} of http1.py's CPU per call "
            "at every concurrency: keep http1.py"
        )
    return f"within {MAX_CPU_RATIO - 1:.0%} of http1.py at every concurrency: {', '.join(passing)}"


ROW = "{:<24}{:>6}{:>9}{:>9}{:>9}{:>8}{:>10}{:>15}{:>9}{:>7}"


def render(
    targets: list[Target], args: argparse.Namespace, machine: tuple[float, float, float], logs: int
) -> str:
    other, speed_before, speed_after = machine
    header = ROW.format(
        "target", "conns", "req/s", "p50 ms", "p99 ms", "errors", "CPU ms", "rounds' range",
        "vs http1", "conns↑",
    )  # fmt: skip
    rule = "-" * len(header)
    lines = [
        f"HTTP client bench: {cpu_model()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {_versions()}, {tool_version('nginx')}, "
        f"{tool_version('wrk')}",
        f"{args.rounds} interleaved rounds x {args.seconds} s per cell; other processes kept "
        f"{other:.2f} of {os.cpu_count()} cores busy meanwhile; CPU speed check "
        f"{speed_before:.0f} / {speed_after:.0f} µs (lower is faster)",
        "CPU ms = the measured process's CPU time per call (all rounds); conns↑ = its open "
        "connections upstream after its last 64-connection run",
        rule,
        header,
        rule,
    ]
    by = {(t.kind, t.client): t for t in targets}
    for c in CONNECTIONS:
        for t in targets:
            cell = t.cells[c]
            if t.pid is None:
                cpu = spread = versus = "-"
            else:
                cpu = f"{cpu_per_call(cell):.3f}"
                per_round = round_cpu(cell)
                spread = f"{min(per_round):.3f}-{max(per_round):.3f}"
                base = cpu_per_call(by[t.kind, BASELINE].cells[c])
                versus = f"{cpu_per_call(cell) / base:.2f}x"
            pool = t.upstream_connections
            lines.append(
                ROW.format(
                    t.name, c, f"{cell.rps:,.0f}", f"{cell.p50_ms:.2f}", f"{cell.p99_ms:.2f}",
                    f"{cell.errors:,}", cpu, spread, versus,
                    "-" if pool is None or c != CONNECTIONS[-1] else pool,
                )
            )  # fmt: skip
        lines.append(rule)
    found = ratios(targets)
    lines.append("CPU per call over http1.py's (in brackets: the lowest and highest of one round)")
    for kind in ("keyshim", "proxy"):
        for client in CLIENTS[1:]:
            cells = [r for r in found if r.kind == kind and r.client == client]
            text = "  ".join(
                f"c={r.connections}: {r.ratio:.2f}x [{r.round_low:.2f}-{r.round_high:.2f}]"
                for r in cells
            )
            lines.append(f"  {kind:<8} {client:<14} {text}")
    errors = sum(t.cells[c].errors for t in targets for c in CONNECTIONS)
    lines += [
        rule,
        f"wrong answers + socket errors: {errors:,}; error lines logged: {logs}",
        f"decision (keyshim rows, rule: <= {MAX_CPU_RATIO:.2f}x): {decision(found)}",
    ]
    return "\n".join(lines)


def _versions() -> str:
    from importlib.metadata import version

    names = ("httpx", "aiohttp", "httpx-aiohttp", "uvicorn", "uvloop", "httptools")
    return ", ".join(f"{name} {version(name)}" for name in names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    ensure_bench_extra()

    load = MachineLoad()
    speed_before = calibrate_us()
    progress(f"CPU speed check: sum(range(10_000)) takes {speed_before:.0f} µs")
    token = secrets.token_urlsafe(32)
    with running_stack(token) as (stack, processes):
        direct_body = stack.workdir / "contact-add-direct.xml"
        direct_body.write_bytes(contact_add_body("keyshim"))  # what keyshim forwards
        key_body = stack.workdir / "contact-add-key.xml"
        key_body.write_bytes(contact_add_body(stack.keys.bench))
        targets = [
            Target("direct", "direct", None, stack.direct_url, direct_body, f"Bearer {token}")
        ]
        shims = []
        for client in CLIENTS:
            shim = start_keyshim(
                client,
                stack.db,
                stack.workdir / f"clients-keyshim-{client}.log",
                extra_env={"BENCH_CLIENT": client},
                launcher=BENCH_DIR / "keyshim_client.py",
            )
            processes.callback(stop, shim.proc)
            shims.append(shim)
            targets.append(
                Target(
                    f"keyshim {client}", "keyshim", client, shim.url, key_body, pid=shim.proc.pid
                )
            )
        for client in CLIENTS:
            proxy = start_floor(
                stack.direct_url,
                token,
                stack.workdir / f"clients-proxy-{client}.log",
                app="client_variants:app",
                extra_env={"BENCH_CLIENT": client},
            )
            processes.callback(stop, proxy.proc)
            targets.append(
                Target(
                    f"proxy {client}", "proxy", client, proxy.url, direct_body, pid=proxy.proc.pid
                )
            )
        for shim in shims:
            wait_healthy(shim)
        for t in targets:
            check_answer(t)
            check_client(t)
        progress("every target answers the canned answer byte for byte; clients verified")
        measure(stack, targets, args.rounds, args.seconds)
        for t in targets:
            check_client(t)
        logs = logged_errors(stack.workdir)
    machine = (load.other_cores(), speed_before, calibrate_us())
    print(render(targets, args, machine, logs))
    if args.json:
        data = {
            "machine": dict(
                zip(("other_cores", "speed_before_us", "speed_after_us"), machine, strict=True)
            ),
            "python": platform.python_version(),
            "targets": [
                {
                    "name": t.name,
                    "upstream_connections": t.upstream_connections,
                    "cells": [
                        {
                            "connections": c,
                            "rps": cell.rps,
                            "p50_ms": cell.p50_ms,
                            "p99_ms": cell.p99_ms,
                            "errors": cell.errors,
                            "cpu_ms_per_call": cell.cpu_ms_per_call,
                            "runs": [asdict(r) for r in cell.runs],
                        }
                        for c, cell in t.cells.items()
                    ],
                }
                for t in targets
            ],
            "ratios": [asdict(r) for r in ratios(targets)],
            "logged_errors": logs,
        }
        args.json.write_text(json.dumps(data, indent=2))
    progress(f"done in {elapsed():.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
