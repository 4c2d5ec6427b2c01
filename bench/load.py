"""Load from wrk: the request bodies, one wrk run, and the sum of several runs of a cell."""

from __future__ import annotations

import statistics
import subprocess
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

LUA = Path(__file__).resolve().parent / "post.lua"

#: A realistic ContactService.add: the legacy fields an order-sync script sends.
CONTACT = {
    "FirstName": "Ada",
    "LastName": "Lovelace",
    "Email": "ada.lovelace@example.com",
    "Phone1": "+44 20 7946 0958",
    "Company": "Analytical Engines Ltd",
    "JobTitle": "Programmer",
    "StreetAddress1": "12 St James's Square",
    "City": "London",
    "State": "Greater London",
    "PostalCode": "SW1Y 4JH",
    "Country": "United Kingdom",
    "Website": "https://example.com/ada",
    "ContactType": "Customer",
    "Leadsource": "Web order",
}


def contact_add_body(first_param: str) -> bytes:
    """The body an old ``xmlrpc.client`` script sends (first parameter: its API key)."""
    return xmlrpc.client.dumps((first_param, CONTACT), "ContactService.add").encode("utf-8")


@dataclass(frozen=True)
class WrkRun:
    """One wrk run, as its Lua ``done()`` reported it (latencies in microseconds)."""

    requests: int
    duration_us: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    good: int
    bad: int
    connect: int
    read: int
    write: int
    status: int
    timeout: int
    cpu_s: float = 0.0  # CPU time the measured hop spent during the run

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout


def run_wrk(
    wrk: str,
    url: str,
    body_file: Path,
    connections: int,
    seconds: int,
    *,
    authorization: str | None = None,
) -> WrkRun:
    """One wrk run: one thread for 1 connection, two threads otherwise (2-core machine)."""
    threads = 1 if connections == 1 else 2
    cmd = [
        wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout",
        "10s", "-s", str(LUA), url, "--", str(body_file),
    ]  # fmt: skip
    if authorization is not None:
        cmd.append(authorization)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = next((line for line in out.splitlines() if line.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{out}")
    values = dict(item.split("=", 1) for item in line.split()[1:])
    return WrkRun(**{name: int(value) for name, value in values.items()})


@dataclass
class Cell:
    """One path at one concurrency, summed over the interleaved rounds."""

    path: str
    connections: int
    runs: list[WrkRun] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def rps(self) -> float:
        return self.requests / (sum(r.duration_us for r in self.runs) / 1e6)

    @property
    def p50_ms(self) -> float:
        """The median over rounds of each round's p50 (wrk keeps no mergeable histogram)."""
        return statistics.median(r.p50_us for r in self.runs) / 1000

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_us for r in self.runs) / 1000

    @property
    def errors(self) -> int:
        """Bad answers (non-200, or no <int>42</int>) plus socket errors and timeouts."""
        return sum(r.bad + r.socket_errors for r in self.runs)

    @property
    def cpu_ms_per_call(self) -> float | None:
        cpu = sum(r.cpu_s for r in self.runs)
        return cpu * 1000 / self.requests if cpu and self.requests else None
