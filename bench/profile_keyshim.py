"""Where keyshim spends its CPU per call: py-spy on a keyshim serving a wrk load.

    python3 bench/profile_keyshim.py    # 10 s at 16 connections; installs py-spy
    python3 bench/profile_keyshim.py --seconds 20 --connections 64 --out /tmp/keyshim.txt

Same stack as bench/run.py (nginx upstream, keyshim with one worker). py-spy samples the
keyshim process (without pausing it) while wrk posts ContactService.add; idle samples (the
event loop waiting in epoll) are left out, so the percentages are shares of keyshim's busy
time. Prints the top functions by own time and by inclusive time, and own time by package;
the collapsed stacks are kept in ``--out`` for a flame graph (e.g. speedscope.app).
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from util import calibrate_us, cpu_seconds, ensure_keyshim, progress  # noqa: E402

ensure_keyshim()

from load import contact_add_body, run_wrk  # noqa: E402
from stack import running_stack, start_keyshim, stop, wait_healthy  # noqa: E402

#: Packages (first path component, or shim module) grouped into the areas a call passes.
AREAS = {
    "HTTP client (httpx, httpcore, anyio, h11)": {
        "httpx", "httpcore", "anyio", "h11", "sniffio", "idna", "certifi", "urllib", "http",
    },
    "ASGI server (uvicorn, httptools)": {"uvicorn", "httptools"},
    "event loop (asyncio)": {"asyncio", "uvloop", "concurrent", "selectors"},
    "XML parsing (expat/ElementTree, shim.xmlrpc)": {"xml", "defusedxml", "shim.xmlrpc"},
    "SQLite store and audit writes": {
        "shim.store.sqlite", "shim.store.sqlite_audit", "sqlite_utils",
    },
    "logging, metrics, dataclasses": {
        "logging", "shim.logs", "json", "dataclasses", "prometheus_client", "shim.serve.metrics",
        "shim.serve.audit", "copy",
    },
}  # fmt: skip
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def ensure_py_spy() -> str:
    found = shutil.which("py-spy")
    if found is None:
        progress("installing py-spy (pip)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
        found = shutil.which("py-spy")
    if found is None:
        sys.exit("bench: py-spy is not on PATH after installing it")
    return found


def frame_name(frame: str) -> tuple[str, str]:
    """(``function (file.py)``, package or shim module) for a py-spy frame
    ``function (package/file.py:12)``; py-spy already shortens paths to the import root."""
    m = _FRAME.match(frame)
    if m is None:
        return frame, "?"
    path = m["file"]
    package = path.split("/")[0].removesuffix(".py")
    if package == "shim":
        package = path.removesuffix(".py").replace("/", ".")
    return f"{m['func']} ({path})", package


def summarize(raw: Path, top: int) -> str:
    """Own time and inclusive time per function, own time per package, from collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")]  # root first
        if not frames:
            continue
        total += count
        own[frames[-1][0]] += count
        packages[frames[-1][1]] += count
        for name in {name for name, _ in frames}:
            inclusive[name] += count

    def table(title: str, counter: Counter[str]) -> list[str]:
        rows = [f"{title} ({total:,} busy samples)"]
        for name, count in counter.most_common(top):
            rows.append(f"  {100 * count / total:5.1f}%  {name}")
        return rows

    ours = Counter({name: n for name, n in inclusive.items() if "(shim/" in name})
    areas: Counter[str] = Counter()
    for package, count in packages.items():
        area = next((a for a, members in AREAS.items() if package in members), None)
        areas[area or ("keyshim, other modules" if package.startswith("shim.") else "other")] += (
            count
        )
    lines = table("own time by function", own)
    lines += ["", *table("inclusive time by function", inclusive)]
    lines += ["", *table("inclusive time of keyshim's own functions", ours)]
    lines += ["", *table("own time by package/module", packages)]
    lines += ["", *table("own time by area", areas)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples a second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir(), "keyshim-profile.txt")
    )
    parser.add_argument(
        "--keyshim-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment for keyshim (e.g. SHIM_LOG_LEVEL=warning)",
    )  # fmt: skip
    args = parser.parse_args()
    py_spy = ensure_py_spy()
    extra_env = dict(item.split("=", 1) for item in args.keyshim_env)

    token = secrets.token_urlsafe(32)
    with running_stack(token) as (stack, shims):
        log = stack.workdir / "keyshim.log"
        shim = start_keyshim("profiled", stack.db, log, workers=args.workers, extra_env=extra_env)
        shims.callback(stop, shim.proc)
        wait_healthy(shim)
        body = stack.workdir / "contact-add-key.xml"
        body.write_bytes(contact_add_body(stack.keys.bench))
        progress("warm-up: 2 s")
        run_wrk(stack.wrk, shim.url, body, args.connections, 2)

        raw = stack.workdir / "profile.txt"
        cmd = [
            py_spy, "record", "--pid", str(shim.proc.pid), "--rate", str(args.rate),
            "--nonblocking", "--format", "raw", "--output", str(raw),
            "--duration", str(args.seconds + 1),
        ]  # fmt: skip
        if args.workers > 1:
            cmd.append("--subprocesses")
        progress(f"py-spy on keyshim pid {shim.proc.pid}; wrk {args.connections} connections")
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cpu_before = cpu_seconds(shim.proc.pid)
        run = run_wrk(stack.wrk, shim.url, body, args.connections, args.seconds)
        cpu = cpu_seconds(shim.proc.pid) - cpu_before
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0:
            sys.exit(f"py-spy failed: {err.decode(errors='replace')}")
        shutil.copyfile(raw, args.out)

    rps = run.requests / (run.duration_us / 1e6)
    print(
        f"CPU speed check: {calibrate_us():.0f} µs for sum(range(10_000)) "
        "(lower is faster; see bench/README.md)"
    )
    print(
        f"keyshim under py-spy: {rps:,.0f} req/s, p50 {run.p50_us / 1000:.2f} ms, "
        f"p99 {run.p99_us / 1000:.2f} ms, {cpu * 1000 / max(run.requests, 1):.3f} ms CPU/call "
        f"(sampling adds a little), bad answers {run.bad + run.socket_errors}\n"
    )
    print(summarize(args.out, args.top))
    print(f"\ncollapsed stacks: {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
