"""keyshim benchmark: what keyshim costs on top of the fastest possible upstream.

    python3 bench/run.py            # about 3.5 minutes on 2 cores; one table on stdout

Three paths, interleaved round by round so that drift hits all of them alike:

    direct   wrk ──────────────────────────▶ nginx upstream (sends the Bearer header itself)
    nginx    wrk ──▶ nginx proxy (+header) ─▶ nginx upstream  (the floor for any proxy)
    keyshim  wrk ──▶ keyshim (key → token) ─▶ nginx upstream

at 1, 16 and 64 connections, plus keyshim --workers 2 at 64 connections; then a 64 MB
FileService.getFile through keyshim (time, peak RSS) and the key check with 100 and 100,000
keys in the store. Progress goes to stderr; see bench/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from util import (
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

import getfile  # noqa: E402
import keycheck  # noqa: E402
from load import Cell, WrkRun, contact_add_body, run_wrk  # noqa: E402
from stack import Stack, running_stack, start_floor, start_keyshim, stop, wait_healthy  # noqa: E402

CONNECTIONS = (1, 16, 64)

# Targets (issue 5 §1).
ADDED_P50_MS = 0.5
ADDED_P99_MS = 2.0
MIN_SHARE_OF_NGINX = 0.20
MAX_CPU_MS_PER_CALL = 0.2
MAX_RSS_GROWTH_MB = 16.0
MAX_KEYCHECK_RATIO = 1.5


@dataclass
class Route:
    """One path for a script to reach the upstream."""

    name: str
    url: str
    body: Path
    authorization: str | None  # sent by the script itself (direct path only)
    cpu_pid: int | None  # the hop whose CPU time is measured (nginx proxy, keyshim)


def measure_routes(
    stack: Stack, routes: list[Route], extra: Route, rounds: int, seconds: int
) -> dict[tuple[str, int], Cell]:
    cells: dict[tuple[str, int], Cell] = {}
    for route in [*routes, extra]:
        for c in CONNECTIONS:
            cells[route.name, c] = Cell(route.name, c)
    progress("warm-up: 1 s per path at 16 connections")
    for route in [*routes, extra]:
        _run(stack, route, 16, 1)
    for r in range(rounds):
        first = r % len(routes)  # rotate which path goes first
        order = routes[first:] + routes[:first]
        for c in CONNECTIONS:
            for p in order + ([extra] if c == 64 else []):
                run = _run(stack, p, c, seconds)
                cells[p.name, c].runs.append(run)
                rps = run.requests / (run.duration_us / 1e6)
                progress(
                    f"round {r + 1}/{rounds}  {p.name:<20} c={c:<3} {rps:>8.0f} req/s  "
                    f"p50 {run.p50_us / 1000:6.2f} ms  p99 {run.p99_us / 1000:6.2f} ms  "
                    f"bad {run.bad + run.socket_errors}"
                )
    return {k: v for k, v in cells.items() if v.runs}


def _run(stack: Stack, p: Route, connections: int, seconds: int) -> WrkRun:
    cpu_before = cpu_seconds(p.cpu_pid) if p.cpu_pid else 0.0
    run = run_wrk(stack.wrk, p.url, p.body, connections, seconds, authorization=p.authorization)
    if p.cpu_pid:
        run = WrkRun(**{**asdict(run), "cpu_s": cpu_seconds(p.cpu_pid) - cpu_before})
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=4, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--keyshim-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for keyshim (A/B tries, e.g. SHIM_LOG_LEVEL=warning)",
    )
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.keyshim_env)

    load = MachineLoad()
    speed_before = calibrate_us()
    progress(f"CPU speed check: sum(range(10_000)) takes {speed_before:.0f} µs")
    token = secrets.token_urlsafe(32)
    with running_stack(token) as (stack, shims):
        progress("starting keyshim (1 worker), keyshim --workers 2, and a stock keyshim")
        shim1 = start_keyshim("1w", stack.db, stack.workdir / "keyshim-1w.log", extra_env=extra_env)
        shim2 = start_keyshim(
            "2w", stack.db, stack.workdir / "keyshim-2w.log", workers=2, extra_env=extra_env
        )
        stock = start_keyshim(
            "stock", stack.db, stack.workdir / "keyshim-stock.log", keap_budget=True
        )
        for shim in (shim1, shim2, stock):
            shims.callback(stop, shim.proc)
        floor = start_floor(stack.direct_url, token, stack.workdir / "floor.log")
        shims.callback(stop, floor.proc)
        for shim in (shim1, shim2, stock):
            wait_healthy(shim)
        progress(f"keyshim on :{shim1.port}, --workers 2 on :{shim2.port}, stock on :{stock.port}")

        direct_body = stack.workdir / "contact-add-direct.xml"
        direct_body.write_bytes(contact_add_body("keyshim"))  # what keyshim forwards
        key_body = stack.workdir / "contact-add-key.xml"
        key_body.write_bytes(contact_add_body(stack.keys.bench))
        routes = [
            Route("direct", stack.direct_url, direct_body, f"Bearer {token}", None),
            Route("nginx proxy", stack.proxy_url, direct_body, None, stack.proxy.proc.pid),
            Route("python floor", floor.url, direct_body, None, floor.proc.pid),
            Route("keyshim", shim1.url, key_body, None, shim1.proc.pid),
        ]
        workers2 = Route("keyshim --workers 2", shim2.url, key_body, None, shim2.proc.pid)
        cells = measure_routes(stack, routes, workers2, args.rounds, args.seconds)

        progress("stock keyshim (Keap's 25 calls/s budget on), 16 connections, once")
        budgeted = Route("keyshim, Keap budget", stock.url, key_body, None, stock.proc.pid)
        budget_run = _run(stack, budgeted, 16, args.seconds)
        cells[budgeted.name, 16] = Cell(budgeted.name, 16, [budget_run])

        progress("64 MB FileService.getFile: directly, then through keyshim (RSS every 20 ms)")
        files = getfile.measure(
            stack.file_url, shim1.url, stack.keys.files, token, shim1.proc.pid, stack.file_sha256
        )
        progress(
            f"getFile: {files.via_keyshim.seconds:.2f}s via keyshim, "
            f"{files.direct.seconds:.2f}s direct, RSS idle {files.idle_rss_kb / 1024:.1f} MB, "
            f"peak {files.peak_rss_kb / 1024:.1f} MB"
        )
        logged_errors = _log_errors(stack.workdir)
    progress("key check: 100 vs 100,000 keys in the store (in-process)")
    keycosts = keycheck.measure()
    machine = Machine(load.other_cores(), speed_before, calibrate_us())

    print(render(cells, files, keycosts, machine, args, logged_errors))
    if args.json:
        dump_json(args.json, cells, files, keycosts, machine)
    progress(f"done in {elapsed():.0f}s")
    return 0


def _log_errors(workdir: Path) -> int:
    """Error lines keyshim logged (a failed forward is logged at level error)."""
    count = 0
    for log in workdir.glob("keyshim-*.log"):
        count += sum('"level": "error"' in line for line in log.read_text().splitlines())
    return count


@dataclass(frozen=True)
class Machine:
    """How quiet the machine was: other processes' CPU use, and the CPU speed check."""

    other_cores: float
    speed_before_us: float
    speed_after_us: float


@dataclass(frozen=True)
class Target:
    what: str
    value: str
    goal: str
    ok: bool


def targets(
    cells: dict[tuple[str, int], Cell],
    files: getfile.GetFileResult,
    keycosts: list[keycheck.KeyCheckCost],
) -> list[Target]:
    direct1, shim1 = cells["direct", 1], cells["keyshim", 1]
    added50, added99 = shim1.p50_ms - direct1.p50_ms, shim1.p99_ms - direct1.p99_ms
    share = cells["keyshim", 64].rps / cells["nginx proxy", 64].rps
    cpu = cells["keyshim", 64].cpu_ms_per_call or 0.0
    small, large = keycosts[0], keycosts[-1]
    ratio = large.total_us / small.total_us
    errors = sum(cell.errors for (name, _), cell in cells.items() if name.startswith("keyshim"))
    return [
        Target(
            "keyshim adds at 1 conn, p50 (vs direct)",
            f"{added50:+.2f} ms",
            f"<= {ADDED_P50_MS:g} ms",
            added50 <= ADDED_P50_MS,
        ),
        Target(
            "keyshim adds at 1 conn, p99 (vs direct)",
            f"{added99:+.2f} ms",
            f"<= {ADDED_P99_MS:g} ms",
            added99 <= ADDED_P99_MS,
        ),
        Target(
            "keyshim req/s / nginx proxy req/s, 64 conns",
            f"{share:.1%}",
            f">= {MIN_SHARE_OF_NGINX:.0%}",
            share >= MIN_SHARE_OF_NGINX,
        ),
        Target(
            "keyshim CPU per forwarded call, 64 conns",
            f"{cpu:.3f} ms",
            f"<= {MAX_CPU_MS_PER_CALL:g} ms",
            cpu <= MAX_CPU_MS_PER_CALL,
        ),
        Target(
            "64 MB getFile: keyshim peak RSS over idle",
            f"{files.growth_mb:+.1f} MB",
            f"<= {MAX_RSS_GROWTH_MB:g} MB",
            files.growth_mb <= MAX_RSS_GROWTH_MB and files.correct,
        ),
        Target(
            f"key check µs/call uncached, {small.keys:,} -> {large.keys:,} keys",
            f"{small.total_us:.0f} -> {large.total_us:.0f} ({ratio:.2f}x)",
            f"<= {MAX_KEYCHECK_RATIO:g}x",
            ratio <= MAX_KEYCHECK_RATIO,
        ),
        Target("keyshim wrong answers + socket errors", f"{errors:,}", "0", errors == 0),
    ]


GRID = "{:<22}{:>6}{:>10}{:>9}{:>9}{:>8}{:>13}"
TARGET = "{:<44}{:>20}{:>11}{:>6}"


def render(
    cells: dict[tuple[str, int], Cell],
    files: getfile.GetFileResult,
    keycosts: list[keycheck.KeyCheckCost],
    machine: Machine,
    args: argparse.Namespace,
    logged_errors: int,
) -> str:
    """The one table: paths x concurrency, then the targets, then two lines of detail."""
    header = GRID.format("path", "conns", "req/s", "p50 ms", "p99 ms", "errors", "CPU ms/call")
    rule = "-" * len(header)
    lines = [
        f"keyshim bench: {cpu_model()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {tool_version('nginx')}, {tool_version('wrk')}",
        f"{args.rounds} interleaved rounds x {args.seconds} s per cell; other processes kept "
        f"{machine.other_cores:.2f} of {os.cpu_count()} cores busy meanwhile; CPU speed check "
        f"{machine.speed_before_us:.0f} / {machine.speed_after_us:.0f} µs (lower is faster)",
        rule,
        header,
        rule,
    ]
    for c in CONNECTIONS:
        for (name, conns), cell in cells.items():
            if conns == c:
                per_call = cell.cpu_ms_per_call
                lines.append(
                    GRID.format(
                        name,
                        conns,
                        f"{cell.rps:,.0f}",
                        f"{cell.p50_ms:.2f}",
                        f"{cell.p99_ms:.2f}",
                        f"{cell.errors:,}",
                        "-" if per_call is None else f"{per_call:.3f}",
                    )
                )
    lines += [rule, TARGET.format("target", "value", "goal", ""), rule]
    for t in targets(cells, files, keycosts):
        lines.append(TARGET.format(t.what, t.value, t.goal, "PASS" if t.ok else "FAIL"))
    small, large = keycosts[0], keycosts[-1]
    via, direct = files.via_keyshim, files.direct
    lines += [
        rule,
        f"getFile: {via.size / 2**20:.1f} MiB {'intact' if files.correct else 'CORRUPTED'}, "
        f"{via.seconds:.2f} s via keyshim, {direct.seconds:.2f} s direct; keyshim RSS idle "
        f"{files.idle_rss_kb / 1024:.1f} MB, peak {files.peak_rss_kb / 1024:.1f} MB "
        f"({files.rss_samples} samples), VmHWM {files.hwm_before_kb / 1024:.1f} -> "
        f"{files.hwm_after_kb / 1024:.1f} MB",
        f"key check steps, µs at {small.keys:,} / {large.keys:,} keys: key_id_of "
        f"{small.key_id_us:.1f} / {large.key_id_us:.1f}, get_key {small.get_key_us:.1f} / "
        f"{large.get_key_us:.1f}, verify {small.verify_us:.1f} / {large.verify_us:.1f}; "
        f"a repeat call's check (read remembered): {small.cached_us:.1f} / {large.cached_us:.1f}",
    ]
    if logged_errors:
        lines.append(f"keyshim logged {logged_errors} error lines (its logs are in the temp dir)")
    return "\n".join(lines)


def dump_json(
    path: Path,
    cells: dict[tuple[str, int], Cell],
    files: getfile.GetFileResult,
    keycosts: list[keycheck.KeyCheckCost],
    machine: Machine,
) -> None:
    data = {
        "cells": [
            {
                "path": cell.path,
                "connections": cell.connections,
                "rps": cell.rps,
                "p50_ms": cell.p50_ms,
                "p99_ms": cell.p99_ms,
                "errors": cell.errors,
                "cpu_ms_per_call": cell.cpu_ms_per_call,
                "runs": [asdict(r) for r in cell.runs],
            }
            for cell in cells.values()
        ],
        "getfile": asdict(files),
        "keycheck": [asdict(k) for k in keycosts],
        "machine": asdict(machine),
        "python": platform.python_version(),
    }
    path.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    sys.exit(main())
