"""Progress lines on stderr, and what /proc says about a process tree (CPU time, memory)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_STARTED = time.monotonic()
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def progress(message: str) -> None:
    """One line per step on stderr, stamped with the seconds since the bench started."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def elapsed() -> float:
    return time.monotonic() - _STARTED


def calibrate_us() -> float:
    """CPU speed check: best of 5 of ``sum(range(10_000))`` in microseconds. A busy or
    throttled machine shows here first; an idle modern x86 core takes about 60-100 µs."""
    timer = timeit.Timer("sum(range(10_000))")
    return min(timer.repeat(repeat=5, number=200)) / 200 * 1e6


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (uvicorn's worker processes, for example)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and every live descendant (all their threads included)."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # stat fields 14 and 15: utime, stime
    return ticks / CLOCK_TICKS


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` figure from /proc/<pid>/status, e.g. VmRSS or VmHWM."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class RssSampler:
    """Samples VmRSS of one process every ``interval`` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))


class MachineLoad:
    """How much CPU the rest of the machine used meanwhile: other sessions, test suites.

    Busy time of all CPUs (/proc/stat) minus what this bench and its children used.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.busy = self._busy()
        self.ours = self._ours()

    @staticmethod
    def _busy() -> float:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq = fields[:7]  # steal is not counted
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _ours() -> float:
        reaped = os.times()  # wrk runs and other children already waited for
        return cpu_seconds(os.getpid()) + reaped.children_user + reaped.children_system

    def other_cores(self) -> float:
        """Average number of cores busy with other work since this object was made."""
        wall = time.monotonic() - self.started
        other = (self._busy() - self.busy) - (self._ours() - self.ours)
        return max(0.0, other / wall)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def tool_version(tool: str) -> str:
    """``nginx 1.22.1`` from `nginx -v`, ``wrk 4.1.0-3+b2`` from `wrk -v` (both on stderr)."""
    from stack import SBIN_PATH

    env = {**os.environ, "PATH": SBIN_PATH}
    done = subprocess.run([tool, "-v"], capture_output=True, text=True, env=env)
    words = (done.stderr + done.stdout).split()
    version = next((w.split("/")[-1] for w in words if "/" in w), "?")
    return f"{tool} {version}"


def ensure_keyshim() -> None:
    """Install keyshim (editable, from this checkout) if it cannot be imported."""
    try:
        import shim  # noqa: F401
    except ImportError:
        progress("installing keyshim from this checkout (pip install -e .)")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-e", str(REPO)],
            check=True,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
