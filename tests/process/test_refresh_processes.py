"""Token refresh with real processes and sockets: stampede, crashes, spent answers, flaky Keap.

The Keap simulator runs in this process (``BackgroundServer``), so the tests read
``sim.stats()`` and flip ``sim.config`` directly. keyshim runs as real ``shim serve``
subprocesses sharing one SQLite database, and is killed with SIGKILL where a crash is the point
(``SHIM_FAILPOINT``, or while the simulator holds a refresh). Each keyshim's output goes to a
file that is printed when a test fails.

Expected outcomes are the ones README's "What happens when a process dies mid-refresh" table
documents; ``test_crash_at_each_step_of_a_refresh`` prints the table it observed, and the
stampede test prints its figures (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from shim import xmlrpc
from shim.models import Chain, TokenPair
from shim.oauth.token_policy import fingerprint, refresh_lock
from shim.serve.runtime import init_files, open_store
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.simulator.state import SPENT_BODIES
from tests.support.servers import BackgroundServer
from tests.support.stack import add_oauth_account, issue_key

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
ACCOUNT = "prod"

T = TypeVar("T")


# --- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_for(predicate: Callable[[], T], what: str, timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


@dataclass(frozen=True)
class Outcome:
    """What a script saw: ``ok`` (value), ``fault`` (code, string), ``http`` or ``error``."""

    kind: str
    value: Any = None
    code: int | None = None

    def __str__(self) -> str:
        if self.kind == "ok":
            return "ok"
        if self.kind == "fault":
            return f"fault {self.code} {str(self.value).split(']')[0]}]"
        return f"{self.kind} {self.code or ''} {str(self.value)[:60]}".strip()


def outcome_of(status: int, content: bytes) -> Outcome:
    if status != 200:
        return Outcome("http", content[:300], status)
    try:
        value = xmlrpc.parse_response(content)
    except xmlrpc.Fault as fault:
        return Outcome("fault", fault.string, fault.code)
    return Outcome("ok", value)


def rpc(url: str, key: str, text: str = "hello", timeout: float = 30.0) -> Outcome:
    """``DataService.echo(key, text)`` through keyshim (forwarded to Keap like any call)."""
    body = xmlrpc.dumps_call("DataService.echo", [key, text])
    try:
        response = httpx.post(
            url, content=body, headers={"Content-Type": "text/xml"}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        return Outcome("error", f"{type(exc).__name__}: {exc}")
    return outcome_of(response.status_code, response.content)


class Webhook:
    """A tiny alert receiver (ASGI 3): every JSON document POSTed to it, in order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
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
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.events.append(json.loads(body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def kinds(self, account: str) -> list[str]:
        return [str(e["event"]) for e in self.events if e.get("account") == account]


@dataclass
class ShimProcess:
    label: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def rpc_url(self) -> str:
        return self.url + "/api/xmlrpc"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until ``/healthz`` answers at all (503 is an answer: the chain may be dead)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.label} exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.url + "/healthz", timeout=2.0)
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.label} never answered /healthz:\n{self.log()}")
            time.sleep(0.05)

    def healthz(self) -> tuple[int, dict[str, Any]]:
        response = httpx.get(self.url + "/healthz", timeout=10.0)
        return response.status_code, response.json()

    def kill(self) -> None:
        """SIGKILL the whole process group (supervisor and workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.kill()  # whatever is left of the group, always


class Harness:
    """One simulator, one alert receiver, one keyshim database, any number of keyshims."""

    def __init__(
        self,
        tmp_path: Path,
        sim: Simulator,
        sim_url: str,
        webhook: Webhook,
        webhook_url: str,
        db: str | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.sim = sim
        self.sim_url = sim_url
        self.webhook = webhook
        self.webhook_url = webhook_url
        self.settings = Settings.from_env(
            {}, db=db or str(tmp_path / "keyshim.db"), key_file=str(tmp_path / "keyshim.key")
        )
        init_files(self.settings)
        self.store = open_store(self.settings)
        self.procs: list[ShimProcess] = []

    def add_account(self, name: str = ACCOUNT, lifetime: float | None = None) -> str:
        """An account at the simulator; ``lifetime``: what keyshim believes is left."""
        add_oauth_account(self.store, self.sim, self.sim_url, name=name, lifetime=lifetime)
        return issue_key(self.store, self.settings, name)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIM_")}
        env.update(
            SHIM_DB=self.settings.db,
            SHIM_KEY_FILE=self.settings.key_file,
            SHIM_SCHEDULER_INTERVAL="0",
            SHIM_LOG_LEVEL="warning",
            SHIM_ALERT_WEBHOOK=self.webhook_url,
        )
        env.update(extra)
        return env

    def start(
        self, label: str, *, workers: int = 1, wait: bool = True, **extra: str
    ) -> ShimProcess:
        port = free_port()
        log_path = self.tmp_path / f"{label}.log"
        command = [sys.executable, "-m", "shim", "serve", "--port", str(port)]
        if workers > 1:
            command += ["--workers", str(workers)]
            # The workers' metrics files go under tmp_path: a server killed with SIGKILL
            # cannot remove the temp-dir folder it would make for them itself.
            metrics = self.tmp_path / f"metrics-{label}-{port}"
            metrics.mkdir()
            extra.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics))
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env(**extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        shim = ShimProcess(label, port, proc, log_path)
        self.procs.append(shim)
        if wait:
            shim.wait_ready()
        return shim

    def chain(self, name: str = ACCOUNT) -> Chain:
        chain = self.store.get_chain(name)
        assert chain is not None, f"the chain of {name} was deleted"
        return chain

    def lock_holder(self, name: str = ACCOUNT) -> str | None:
        return self.store.lock_holder(refresh_lock(name))

    def rotations(self, name: str = ACCOUNT) -> int:
        """How many times Keap rotated this account's chain (pairs issued after the first)."""
        account = self.store.get_account(name)
        assert account is not None
        issued = [t for t in self.sim.auth.access.values() if t.client_id == account.client_id]
        return len(issued) - 1

    def spent_at_keap(self, refresh_token: str) -> bool:
        """Has Keap consumed this refresh token?"""
        return self.sim.auth.refresh[refresh_token].spent

    def shim_status(self) -> tuple[int, dict[str, str]]:
        """``shim status --json``: exit code and state by account."""
        done = subprocess.run(
            [sys.executable, "-m", "shim", "status", "--json"],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            timeout=30,
        )
        states = {row["account"]: row["state"] for row in json.loads(done.stdout or b"[]")}
        return done.returncode, states

    def release(self) -> int:
        """Release held refreshes through the control API (so it runs on the sim's loop)."""
        response = httpx.post(self.sim_url + "/_sim/release", json={}, timeout=10.0)
        return int(response.json()["released"])

    def spend_elsewhere(self, name: str) -> dict[str, Any]:
        """Another party refreshes with the stored refresh token, over the real socket."""
        account = self.store.get_account(name)
        assert account is not None and account.client_id and account.client_secret
        response = httpx.post(
            account.token_url,
            data={"grant_type": "refresh_token", "refresh_token": self.chain(name).refresh_token},
            auth=(account.client_id, account.client_secret),
            timeout=10.0,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def close(self) -> None:
        for shim in self.procs:
            shim.stop()
        self.store.close()


@contextlib.contextmanager
def harness(tmp_path: Path, db: str | None = None) -> Iterator[Harness]:
    """``db``: a PostgreSQL URL (the multi-host tests); default a SQLite file in tmp_path."""
    sim = Simulator(SimConfig())
    webhook = Webhook()
    with BackgroundServer(sim.app) as sim_server, BackgroundServer(webhook) as hook_server:
        harness = Harness(tmp_path, sim, sim_server.url, webhook, hook_server.url, db)
        try:
            yield harness
        finally:
            harness.close()


@contextlib.contextmanager
def logs_on_failure(request: pytest.FixtureRequest, h: Harness) -> Iterator[None]:
    """Print every keyshim's output if the test failed (its report is in by teardown)."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        for shim in h.procs:
            print(f"\n--- {shim.label} (exit {shim.proc.returncode}) ---")
            print(shim.log()[-8000:])


@pytest.fixture
def h(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    with harness(tmp_path) as h, logs_on_failure(request, h):
        yield h


def assert_clean_logs(*shims: ShimProcess) -> None:
    for shim in shims:
        text = shim.log()
        assert "Traceback" not in text and '"level": "error"' not in text, text[-4000:]


# --- 1. stampede -----------------------------------------------------------------------------

LIFETIME = 2.0
MARGIN = 0.5
CALLERS = 200
EXPIRIES = 10


@dataclass
class Tally:
    calls: Counter[str]  # by server label
    outcomes: Counter[str]  # "ok", "fault 104", "http 500", "error", "wrong answer"
    spans: list[tuple[str, float, float]]  # (server, sent, answered) of every call
    problems: list[str]

    def in_flight_during(self, windows: list[tuple[float, float]]) -> Counter[str]:
        """Calls, by server, that were under way while one of ``windows`` was open."""
        return Counter(
            label
            for label, sent, answered in self.spans
            if any(sent < end and answered > begin for begin, end in windows)
        )


async def stampede(
    servers: dict[str, str],
    key: str,
    h: Harness,
    *,
    pace: float | None,
    deadline: float,
    stop_on_problem: bool = False,
    callers: int = CALLERS,
) -> Tally:
    """CALLERS tasks call echo (``pace``: mean seconds between one caller's calls; None:
    back to back) until EXPIRIES more chain generations exist, or the deadline."""
    tally = Tally(Counter(), Counter(), [], [])
    labels = list(servers)
    stop = asyncio.Event()
    generation0 = h.chain().generation
    limits = httpx.Limits(max_connections=callers, max_keepalive_connections=callers)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def caller(i: int) -> None:
            label = labels[i % len(labels)]
            url = servers[label]
            rng = random.Random(i)
            if pace is not None:
                await asyncio.sleep(rng.uniform(0, pace))  # staggered starts
            n = 0
            while not stop.is_set():
                text = f"caller-{i}-{n}"
                n += 1
                body = xmlrpc.dumps_call("DataService.echo", [key, text])
                started = time.monotonic()
                try:
                    response = await client.post(
                        url, content=body, headers={"Content-Type": "text/xml"}
                    )
                except httpx.HTTPError as exc:
                    outcome = Outcome("error", f"{type(exc).__name__}: {exc}")
                else:
                    outcome = outcome_of(response.status_code, response.content)
                tally.spans.append((label, started, time.monotonic()))
                tally.calls[label] += 1
                if outcome == Outcome("ok", text):
                    tally.outcomes["ok"] += 1
                else:
                    kind = "wrong answer" if outcome.kind == "ok" else outcome.kind
                    tally.outcomes[f"{kind} {outcome.code or ''}".strip()] += 1
                    tally.problems.append(
                        f"{label}: {outcome.kind} {outcome.code} {outcome.value!r}"
                    )
                    if stop_on_problem:
                        stop.set()
                    await asyncio.sleep(0.05)
                if pace is not None and not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), rng.uniform(0.5, 1.5) * pace)

        tasks = [asyncio.create_task(caller(i)) for i in range(callers)]
        while not stop.is_set():
            await asyncio.sleep(0.1)
            generation = h.chain().generation
            if generation - generation0 >= EXPIRIES or time.monotonic() > deadline:
                stop.set()
        if tally.problems and stop_on_problem:
            for task in tasks:  # the verdict is in: do not wait out queued calls
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return tally


@contextlib.contextmanager
def slow_token_endpoint(h: Harness, seconds: float) -> Iterator[dict[str, Any]]:
    """Keap's token endpoint takes ``seconds`` per refresh (the simulator holds each one), so
    callers pile up behind every refresh. Also records the most refreshes ever in flight."""
    seen: dict[str, Any] = {"max_in_flight": 0, "released": 0, "windows": []}
    stop = threading.Event()

    def run() -> None:
        since: float | None = None
        while not stop.is_set():
            held = h.sim.held
            seen["max_in_flight"] = max(seen["max_in_flight"], held)
            if held and since is None:
                since = time.monotonic()
            if since is not None and time.monotonic() - since >= seconds:
                seen["released"] += h.release()
                seen["windows"].append((since, time.monotonic()))
                since = None
            time.sleep(0.005)

    h.sim.config.hold_refresh = "before"
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)
        h.sim.config.hold_refresh = "off"
        h.release()


@dataclass
class StampedeRig:
    h: Harness
    servers: dict[str, str]  # label -> XML-RPC URL
    key: str


@pytest.fixture(scope="module")
def stampede_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StampedeRig]:
    """keyshim A with 4 worker processes and keyshim B, both on one database, in front of a
    simulator whose access tokens live 2 s. SHIM_QUOTA_WAIT=60: keyshim's upstream budget
    queues calls over Keap's quota instead of refusing them (see test_stampede_back_to_back)."""
    with harness(tmp_path_factory.mktemp("stampede")) as h:
        h.sim.config.access_token_lifetime = LIFETIME
        key = h.add_account()  # keyshim believes what the simulator says: 2 s
        env = {"SHIM_INLINE_MARGIN": str(MARGIN), "SHIM_QUOTA_WAIT": "60"}
        a = h.start("A-4-workers", workers=4, wait=False, **env)
        b = h.start("B", wait=False, **env)
        a.wait_ready()
        b.wait_ready()
        yield StampedeRig(h, {"A": a.rpc_url, "B": b.rpc_url}, key)


@pytest.fixture
def rig(stampede_rig: StampedeRig, request: pytest.FixtureRequest) -> Iterator[StampedeRig]:
    with logs_on_failure(request, stampede_rig.h):
        yield stampede_rig


def summary(
    name: str, tally: Tally, h: Harness, stats0: dict[str, Any], gen0: int, dt: float
) -> str:
    stats = h.sim.stats()
    lat = sorted(answered - sent for _, sent, answered in tally.spans) or [0.0]
    return (
        f"{name}: {sum(tally.calls.values())} calls "
        f"({', '.join(f'{k} {v}' for k, v in sorted(tally.calls.items()))}) by {CALLERS} "
        f"callers in {dt:.1f}s; {h.chain().generation - gen0} expiries; "
        f"{stats['refreshes_served'] - stats0['refreshes_served']} refreshes served "
        f"({stats['refresh_requests'] - stats0['refresh_requests']} requested); "
        f"outcomes {dict(tally.outcomes)}; "
        f"{stats['xmlrpc_unauthorized'] - stats0['xmlrpc_unauthorized']} upstream 401s; "
        f"latency p50 {lat[len(lat) // 2]:.2f}s max {lat[-1]:.2f}s"
    )


#: Mean seconds between one caller's calls: 200 callers then offer ~20 calls/s, within Keap's
#: 25/s per OAuth client that keyshim's upstream budget (shim/keap/budget.py) enforces; more than
#: that is held back and, past SHIM_QUOTA_WAIT, refused with [Throttled] by design.
PACE = 10.0
HOLD = 0.3


@pytest.mark.timeout(90)
def test_stampede_four_workers_and_a_second_server(rig: StampedeRig) -> None:
    """The issue's scenario: 4 worker processes plus a second server on the same database,
    200 concurrent callers, at least 10 expiries of a short-lived token: token-endpoint
    refreshes served equal expiries, and callers see zero faults.

    Each refresh takes HOLD seconds at Keap, so every expiry finds callers waiting in several
    processes at once; the simulator never has more than one refresh in flight."""
    h, servers, key = rig.h, rig.servers, rig.key
    generation0 = h.chain().generation
    stats0 = h.sim.stats()
    issued0 = len(h.sim.auth.access)
    started = time.monotonic()
    with slow_token_endpoint(h, HOLD) as slow:
        tally = asyncio.run(stampede(servers, key, h, pace=PACE, deadline=started + 45.0))
    duration = time.monotonic() - started
    line = summary("stampede", tally, h, stats0, generation0, duration)
    # Calls under way while a refresh sat at Keap: each was waiting for that one refresh.
    piled = tally.in_flight_during(slow["windows"])
    print(
        f"\n{line}; calls waiting on a held refresh: {dict(piled)} over "
        f"{len(slow['windows'])} refreshes; most refreshes at Keap at once: "
        f"{slow['max_in_flight']}"
    )

    stats = h.sim.stats()
    chain = h.chain()
    expiries = chain.generation - generation0
    refreshes = stats["refreshes_served"] - stats0["refreshes_served"]
    requests = stats["refresh_requests"] - stats0["refresh_requests"]
    assert not tally.problems, tally.problems[:10]
    assert set(tally.outcomes) == {"ok"} and tally.calls["A"] > 0 and tally.calls["B"] > 0
    assert expiries >= EXPIRIES, f"only {expiries} expiries in {duration:.1f}s"
    assert refreshes == expiries  # one token-endpoint refresh per expiry, never two
    assert requests == refreshes  # and no failed or duplicate attempt either
    assert slow["max_in_flight"] == 1 and slow["released"] == refreshes
    assert len(h.sim.auth.access) - issued0 == refreshes
    # When each refresh happened: the simulator's issue times of the tokens it gave out during
    # the run. Two refreshes for one expiry would be a fraction of a second apart.
    issued = [t.expires_at - LIFETIME for t in list(h.sim.auth.access.values())[issued0:]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(issued)]
    assert min(gaps) > (LIFETIME - MARGIN) / 2, gaps
    assert piled["A"] > len(slow["windows"]) and piled["B"] > 0  # a stampede, in both
    assert chain.state == "ok" and chain.failures == 0 and chain.in_flight is None
    assert h.webhook.events == []
    assert_clean_logs(*h.procs)


@pytest.mark.timeout(90)
def test_stampede_back_to_back_callers(rig: StampedeRig) -> None:
    """The issue's wording taken literally: 200 callers calling back to back. They offer far
    more than Keap's quota, so keyshim's budget queues them (SHIM_QUOTA_WAIT=60: queued, never
    refused); every call must still go out with a token that is valid when it is sent."""
    h, servers, key = rig.h, rig.servers, rig.key
    generation0 = h.chain().generation
    stats0 = h.sim.stats()
    started = time.monotonic()
    tally = asyncio.run(
        stampede(servers, key, h, pace=None, deadline=started + 30.0, stop_on_problem=True)
    )
    print("\n" + summary("back-to-back", tally, h, stats0, generation0, time.monotonic() - started))
    stats = h.sim.stats()
    refreshes = stats["refreshes_served"] - stats0["refreshes_served"]
    assert not tally.problems, tally.problems[:5]
    assert h.chain().generation - generation0 >= EXPIRIES
    assert refreshes == h.chain().generation - generation0
    assert stats["refresh_requests"] - stats0["refresh_requests"] == refreshes
    assert h.chain().state == "ok"


# --- 2. a crash at each step of a refresh ----------------------------------------------------


@dataclass(frozen=True)
class CrashCase:
    """One step of a refresh to die at, and what the store and Keap must show afterwards."""

    how: str  # "failpoint" (SHIM_FAILPOINT) or "hold" (the simulator holds the refresh)
    point: str  # failpoint name, or hold_refresh mode
    journal: bool  # a refresh-in-flight journal row survives the crash
    rotated: bool  # Keap consumed the stored refresh token (and issued a new pair)
    stored: bool  # keyshim stored the new pair before it died
    #: after a restart: "refresh on next call", "recovered", "adopted" (from its recovery
    #: file), "dead", "nothing to do"
    outcome: str


CRASHES = {
    "before_journal": CrashCase(
        "failpoint", "before_journal", False, False, False, "refresh on next call"
    ),
    "after_journal": CrashCase("failpoint", "after_journal", True, False, False, "recovered"),
    "hold-before": CrashCase("hold", "before", True, False, False, "recovered"),
    "hold-after": CrashCase("hold", "after", True, True, False, "dead"),
    "after_answer": CrashCase("failpoint", "after_answer", True, True, False, "dead"),
    "after_write_ahead": CrashCase("failpoint", "after_write_ahead", True, True, False, "adopted"),
    "after_store": CrashCase("failpoint", "after_store", False, True, True, "nothing to do"),
}


@dataclass
class Crashed:
    case: CrashCase
    key: str
    before: Chain
    shim: ShimProcess
    after: Chain | None = None  # the chain right after the crash
    lock: str | None = None  # who held the refresh lock right after the crash (nobody)
    doomed: Outcome | None = None  # what the script whose call triggered the refresh saw

    @property
    def name(self) -> str:
        return self.before.account


def crash_by_failpoint(h: Harness, c: Crashed) -> None:
    c.doomed = rpc(c.shim.rpc_url, c.key, "doomed")
    assert c.shim.proc.wait(timeout=30) == -signal.SIGKILL, c.shim.log()
    c.after, c.lock = h.chain(c.name), h.lock_holder(c.name)


def crash_while_held(h: Harness, c: Crashed) -> None:
    """Kill keyshim while Keap holds its refresh, then let Keap go on."""
    h.sim.config.hold_refresh = c.case.point  # type: ignore[assignment]
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(rpc, c.shim.rpc_url, c.key, "doomed")
        wait_for(lambda: h.sim.held == 1 or call.done(), "the simulator to hold the refresh")
        assert h.sim.held == 1, f"{call.result()} before Keap held it:\n{c.shim.log()}"
        c.shim.kill()
        if c.case.point == "before":
            # Keap had the request but never got to the token: it drops it, unprocessed.
            h.sim.fail_token_requests("503")
        h.sim.config.hold_refresh = "off"
        assert h.release() == 1
        wait_for(lambda: h.sim.stats()["token_failures_pending"] == 0, "the dropped request")
        c.doomed = call.result(timeout=30)
    assert c.shim.proc.returncode == -signal.SIGKILL
    c.after, c.lock = h.chain(c.name), h.lock_holder(c.name)


@pytest.mark.timeout(120)
def test_crash_at_each_step_of_a_refresh(h: Harness) -> None:
    """SIGKILL at each step of a refresh (README: "What happens when a process dies
    mid-refresh"), then one restart without a failpoint that must sort out every account.

    Each case has its own account and its own crashing keyshim on one database: three
    failpoint crashes at once, then the two simulator holds, then after_store just before the
    restart. A dead process's refresh lock is free the moment it dies: nothing to wait out."""
    sim = h.sim
    sim.config.access_token_lifetime = 3600
    # The old access token dies with each refresh: a call that works used the newest token.
    sim.config.old_access_token_valid_after_refresh = False
    crashes: dict[str, Crashed] = {}
    for name, case in CRASHES.items():
        key = h.add_account(name, lifetime=10)  # inside the 30 s margin: a call refreshes
        env = {"SHIM_INLINE_MARGIN": "30"}
        if case.how == "failpoint":
            env["SHIM_FAILPOINT"] = case.point
        shim = h.start(f"crashing-{name}", wait=False, **env)
        crashes[name] = Crashed(case, key, h.chain(name), shim)
    for c in crashes.values():
        c.shim.wait_ready()

    # -- crash -------------------------------------------------------------------------
    first = [c for n, c in crashes.items() if c.case.how == "failpoint" and n != "after_store"]
    with ThreadPoolExecutor(len(first)) as pool:
        list(pool.map(lambda c: crash_by_failpoint(h, c), first))
    stats = sim.stats()
    assert stats["refresh_requests"] == stats["refreshes_served"] == 2  # after_answer's, ...
    crash_while_held(h, crashes["hold-before"])
    crash_while_held(h, crashes["hold-after"])
    crash_by_failpoint(h, crashes["after_store"])
    stats = sim.stats()
    assert stats["refresh_requests"] == 5 and stats["refreshes_served"] == 4

    found: dict[str, str] = {}
    for name, c in crashes.items():
        assert c.doomed is not None and c.doomed.kind == "error", c.doomed  # connection died
        assert c.after is not None
        assert c.lock is None, (name, c.lock)  # freed by the death itself, no TTL
        assert (c.after.in_flight is not None) == c.case.journal, (name, c.after.in_flight)
        if c.after.in_flight is not None:
            assert c.after.in_flight.refresh_fingerprint == fingerprint(c.before.refresh_token)
            assert f":{c.shim.proc.pid}:" in c.after.in_flight.owner
        assert h.spent_at_keap(c.before.refresh_token) == c.case.rotated, name
        assert h.rotations(name) == int(c.case.rotated), name
        assert c.after.generation == c.before.generation + int(c.case.stored), name
        assert (c.after.refresh_token != c.before.refresh_token) == c.case.stored, name
        found[name] = (
            f"journal {'yes' if c.after.in_flight else 'no'}, "
            f"token {'spent' if c.case.rotated else 'unspent'} at Keap, "
            f"{'new pair stored' if c.case.stored else 'old pair stored'}"
        )

    # -- one restart, no failpoint -------------------------------------------------------
    restart_at = time.monotonic()
    restarted = h.start("restarted", SHIM_INLINE_MARGIN="30")
    outcome: dict[str, list[str]] = {name: [] for name in crashes}

    # after_store first: the new pair is used as it is, and the dead process holds nothing back.
    c = crashes["after_store"]
    answer = rpc(restarted.rpc_url, c.key, "after restart after_store")
    assert answer == Outcome("ok", "after restart after_store"), answer  # the new token
    first_ok = time.monotonic() - restart_at
    assert first_ok < 2.0, f"the first call worked {first_ok:.2f}s after the restart"
    assert h.rotations("after_store") == 1  # nothing to recover, nothing to refresh
    outcome["after_store"].append(f"call {answer} (0 refreshes)")
    chain = h.chain("after_store")
    assert chain.generation == c.before.generation + 1 and chain.in_flight is None
    assert h.lock_holder("after_store") is None
    now = time.time()
    h.store.put_tokens(
        "after_store", TokenPair(chain.access_token, chain.refresh_token, now + 10), now
    )  # the same pair, now about to expire: the next call must refresh
    started = time.monotonic()
    answer = rpc(restarted.rpc_url, c.key, "next refresh")
    waited = time.monotonic() - started
    assert answer == Outcome("ok", "next refresh"), answer
    assert h.rotations("after_store") == 2 and h.lock_holder("after_store") is None
    assert waited < 3.0, waited
    outcome["after_store"].append(f"next refresh found the lock free ({waited:.1f}s)")
    journaled = [n for n, c in crashes.items() if c.case.journal]
    wait_for(
        lambda: all(h.chain(n).in_flight is None for n in journaled), "recovery at startup", 20
    )
    dead = sorted(n for n, c in crashes.items() if c.case.outcome == "dead")
    wait_for(lambda: sorted(e["account"] for e in h.webhook.events) == dead, "dead alerts")
    # Issue #11: an unspent token works within 2 s of the restart; a token Keap rotated whose
    # answer was lost is flagged dead (and alerted) at once, by the recovery at startup.
    settled = time.monotonic() - restart_at
    assert settled < 2.0, f"recovery and alerts took {settled:.2f}s after the restart"
    log = restarted.log()
    for name, c in crashes.items():
        chain = h.chain(name)  # never deleted, whatever happened
        unfinished = c.case.journal and c.case.outcome != "adopted"
        assert (f"account {name}: found an unfinished refresh" in log) == unfinished, name
        if c.case.outcome == "recovered":  # before any call: recovery's own doing
            assert chain.state == "ok" and chain.failures == 0
            assert chain.generation == c.before.generation + 1
            assert h.rotations(name) == 1
            outcome[name].append("recovered at startup")
        elif c.case.outcome == "adopted":  # the sealed pair, stored before any refresh
            assert chain.state == "ok" and chain.failures == 0 and chain.in_flight is None
            assert chain.generation == c.before.generation + 1
            assert h.rotations(name) == 1  # the pair Keap issued to the dead process, kept
            assert f"account {name}: stored the pair kept in the recovery file" in log
            outcome[name].append("its recovery file applied at startup")
        elif c.case.outcome == "dead":
            assert chain.state == "needs_reauth" and chain.generation == c.before.generation
            assert chain.last_error and "Invalid Refresh Token" in chain.last_error
            assert h.rotations(name) == 1  # the pair Keap issued to the dead process, lost
            outcome[name].append("recovery got 'spent': needs_reauth")
        elif name == "before_journal":  # no journal: recovery had nothing to do
            assert chain.state == "ok" and chain.generation == c.before.generation
            assert h.rotations(name) == 0

    stats0 = sim.stats()
    # Recovery tried each journaled account but the adopted one once (two refreshes, two
    # "spent" answers), and after_store refreshed once more after the restart.
    assert stats0["refresh_requests"] == 5 + len(journaled) - 1 + 1
    assert stats0["refreshes_served"] == 4 + 2 + 1
    for name, c in crashes.items():
        if name == "after_store":
            continue
        rotations = h.rotations(name)
        answer = rpc(restarted.rpc_url, c.key, f"after restart {name}")
        if c.case.outcome == "dead":
            assert answer.kind == "fault" and answer.code == 105, (name, answer)
            assert str(answer.value).startswith("[ReauthorizationRequired]"), answer
        else:
            assert answer == Outcome("ok", f"after restart {name}"), (name, answer)
        refreshed = h.rotations(name) - rotations
        outcome[name].append(f"call {answer} ({refreshed} refresh{'es' * (refreshed != 1)})")
        assert h.rotations(name) == 1, name  # every chain rotated exactly once by now
    assert sim.stats()["refreshes_served"] == stats0["refreshes_served"] + 1  # before_journal

    # -- health, status, alerts ----------------------------------------------------------
    code, health = restarted.healthz()
    status_code, states = h.shim_status()
    expected = {
        name: "needs_reauth" if c.case.outcome == "dead" else "ok" for name, c in crashes.items()
    }
    assert code == 503 and status_code == 2
    assert {n: a["state"] for n, a in health["accounts"].items()} == expected
    assert states == expected
    for event in h.webhook.events:
        assert event["event"] == "dead" and "Invalid Refresh Token" in event["error"]
        assert "shim account authorize" in event["action"]
    for name in crashes:
        outcome[name].append(f"{expected[name]}, alert {h.webhook.kinds(name) or 'none'}")

    print(f"\n\n{'crash point':<15}| {'state found after the SIGKILL':<57}| after one restart")
    print("-" * 15 + "+" + "-" * 58 + "+" + "-" * 60)
    for name in crashes:
        print(f"{name:<15}| {found[name]:<57}| {'; '.join(outcome[name])}")
    print(f"(/healthz {code}, shim status exit {status_code}; after the restart: first call ok")
    print(f"at {first_ok:.2f}s, every journal settled and dead alerts sent at {settled:.2f}s)")


# --- 3. spent answers: believed only after the re-read ---------------------------------------


@pytest.mark.timeout(60)
def test_spent_answers_kill_only_after_the_reread(h: Harness) -> None:
    """Both gateways' "spent" bodies kill a chain whose token really is spent (needs_reauth,
    alert, fault 105); the same answer about a token another process has already replaced
    in the store (found by the re-read) kills nothing."""
    sim = h.sim
    sim.config.access_token_lifetime = 3600
    sim.config.old_access_token_valid_after_refresh = False
    names = [f"{kind}-{body}" for body in SPENT_BODIES for kind in ("dead", "race")]
    keys = {name: h.add_account(name, lifetime=10) for name in names}
    shim = h.start("shim", SHIM_INLINE_MARGIN="30")

    for body, expected in SPENT_BODIES.items():
        sim.config.spent_body = body  # type: ignore[assignment]

        # The token really is spent (another integration used it): dead, loudly.
        name = f"dead-{body}"
        before = h.chain(name)
        h.spend_elsewhere(name)
        stats0 = sim.stats()
        outcome = rpc(shim.rpc_url, keys[name])
        assert outcome.kind == "fault" and outcome.code == 105, outcome
        assert str(outcome.value).startswith("[ReauthorizationRequired]")
        chain = h.chain(name)
        assert chain.state == "needs_reauth" and chain.generation == before.generation
        assert chain.last_error is not None and expected["error"] in chain.last_error
        stats = sim.stats()
        assert stats["refresh_requests"] == stats0["refresh_requests"] + 1
        assert stats["refreshes_served"] == stats0["refreshes_served"]
        wait_for(lambda name=name: h.webhook.kinds(name) == ["dead"], f"the alert for {name}")
        alert = next(e for e in h.webhook.events if e["account"] == name)
        assert expected["error_description"] in alert["error"]

        # Another process legitimately won while our request sat at Keap: the "spent" answer
        # is about a token that the store has already replaced. Nothing is dead.
        name = f"race-{body}"
        before = h.chain(name)
        sim.config.hold_refresh = "before"
        stats0 = sim.stats()
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(rpc, shim.rpc_url, keys[name], "raced")
            wait_for(lambda call=call: sim.held == 1 or call.done(), "Keap to hold the refresh")
            assert sim.held == 1, f"{call.result()} before Keap held it:\n{shim.log()}"
            sim.config.hold_refresh = "off"
            won = h.spend_elsewhere(name)
            now = time.time()
            winner = h.store.put_tokens(
                name,
                TokenPair(won["access_token"], won["refresh_token"], now + won["expires_in"]),
                now,
            )
            assert h.release() == 1
            outcome = call.result(timeout=30)
        assert outcome == Outcome("ok", "raced"), outcome  # with the winner's access token
        chain = h.chain(name)
        assert chain.state == "ok" and chain.failures == 0 and chain.last_error is None
        assert chain.generation == winner.generation == before.generation + 1
        assert chain.refresh_token == won["refresh_token"]
        stats = sim.stats()
        assert stats["refresh_requests"] == stats0["refresh_requests"] + 2  # ours + winner's
        assert stats["refreshes_served"] == stats0["refreshes_served"] + 1  # winner's only
        assert rpc(shim.rpc_url, keys[name], "again") == Outcome("ok", "again")

    time.sleep(1.0)  # alerts are posted in the background: give a wrong one time to arrive
    assert {e["account"]: e["event"] for e in h.webhook.events} == {
        "dead-current": "dead",
        "dead-older": "dead",
    }
    code, health = shim.healthz()
    assert code == 503
    assert {n: a["state"] for n, a in health["accounts"].items()} == {
        "dead-current": "needs_reauth",
        "dead-older": "needs_reauth",
        "race-current": "ok",
        "race-older": "ok",
    }
    assert_clean_logs_except_alerts(shim)


def assert_clean_logs_except_alerts(shim: ShimProcess) -> None:
    """Dead chains are logged at ERROR on purpose; nothing else may be."""
    for line in shim.log().splitlines():
        if '"level": "error"' in line:
            assert "refresh failed (dead)" in line or '"event": "dead"' in line, line
    assert "Traceback" not in shim.log()


# --- 4. transient token-endpoint failures over real sockets ----------------------------------

TRANSIENT = ["500", {"kind": "timeout", "seconds": 3}, "reset"]
TRANSIENT_ENV = {
    "SHIM_INLINE_MARGIN": "30",
    "SHIM_TOKEN_TIMEOUT": "1",
    "SHIM_RETRY_BASE": "0.1",
    "SHIM_RETRY_CAP": "0.3",
}


@contextlib.contextmanager
def chain_states(h: Harness, names: list[str]) -> Iterator[set[str]]:
    """Every chain state seen in the store while the block runs (sampled every 20 ms)."""
    seen: set[str] = set()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.update(h.chain(name).state for name in names)
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join(timeout=5)
        seen.update(h.chain(name).state for name in names)


@pytest.mark.timeout(60)
def test_transient_failures_are_retried_within_one_refresh(h: Harness) -> None:
    h.sim.config.access_token_lifetime = 3600
    key = h.add_account(lifetime=10)
    shim = h.start("shim", **TRANSIENT_ENV, SHIM_REFRESH_RETRIES="3")
    before = h.chain()
    h.sim.fail_token_requests(*TRANSIENT)
    with chain_states(h, [ACCOUNT]) as seen:
        outcome = rpc(shim.rpc_url, key, "survives")
    assert outcome == Outcome("ok", "survives")
    stats = h.sim.stats()
    assert stats["refresh_requests"] == 4 and stats["refreshes_served"] == 1
    assert stats["token_failures_pending"] == 0
    chain = h.chain()
    assert chain.state == "ok" and chain.failures == 0 and chain.in_flight is None
    assert chain.generation == before.generation + 1
    assert seen == {"ok"}, seen
    assert h.webhook.events == []  # retried inside one refresh: never even degraded
    assert h.shim_status() == (0, {ACCOUNT: "ok"})


@pytest.mark.timeout(60)
def test_transient_failures_past_the_retries_degrade_but_never_kill(h: Harness) -> None:
    h.sim.config.access_token_lifetime = 3600
    key = h.add_account(lifetime=10)  # the old token has time left
    late_key = h.add_account("late", lifetime=0.5)  # the old token is (as good as) expired
    shim = h.start("shim", **TRANSIENT_ENV, SHIM_REFRESH_RETRIES="1")
    before = h.chain()

    with chain_states(h, [ACCOUNT, "late"]) as seen:
        # 500, then a timeout: retries exhausted. The old token still works, so the call does.
        h.sim.fail_token_requests(*TRANSIENT)
        first = rpc(shim.rpc_url, key, "old token")
        assert first == Outcome("ok", "old token")
        chain = h.chain()
        assert chain.state == "ok" and chain.failures == 1 and chain.last_error
        assert chain.generation == before.generation and chain.in_flight is None
        assert h.sim.stats()["refresh_requests"] == 2 and h.sim.stats()["refreshes_served"] == 0
        code, health = shim.healthz()
        assert code == 503 and health["accounts"][ACCOUNT]["state"] == "degraded"
        assert h.shim_status()[0] == 1  # degraded, not 2 (needs_reauth)
        wait_for(lambda: h.webhook.kinds(ACCOUNT) == ["degraded"], "the degraded alert")

        # The next call's refresh meets the reset, retries, and gets through.
        second = rpc(shim.rpc_url, key, "new token")
        assert second == Outcome("ok", "new token")
        chain = h.chain()
        assert chain.state == "ok" and chain.failures == 0 and chain.last_error is None
        assert chain.generation == before.generation + 1
        assert h.sim.stats()["refresh_requests"] == 4 and h.sim.stats()["refreshes_served"] == 1
        wait_for(
            lambda: h.webhook.kinds(ACCOUNT) == ["degraded", "recovered"], "the recovered alert"
        )

        # With no usable old token the call fails (109), but the chain only degrades.
        h.sim.fail_token_requests("503", "reset")
        late = rpc(shim.rpc_url, late_key, "late")
        assert late.kind == "fault" and late.code == 109, late
        assert str(late.value).startswith("[TokenRefreshFailed]")
        chain = h.chain("late")
        assert chain.state == "ok" and chain.failures == 1
        code, health = shim.healthz()
        assert health["accounts"]["late"]["state"] == "degraded"
        retry = rpc(shim.rpc_url, late_key, "late again")
        assert retry == Outcome("ok", "late again")
        assert h.chain("late").failures == 0

    assert seen == {"ok"}, seen  # never needs_reauth
    assert h.sim.stats()["refreshes_served"] == 2
    wait_for(lambda: h.webhook.kinds("late") == ["degraded", "recovered"], "the late alerts")
    code, health = shim.healthz()
    assert code == 200, health
    assert h.shim_status() == (0, {ACCOUNT: "ok", "late": "ok"})


def test_killed_servers_leave_no_metrics_folder_in_the_temp_dir(h: Harness) -> None:
    """Each run of these tests used to leave keyshim-metrics-* folders behind."""
    temp = h.tmp_path / "temp"  # this server's temp dir: other test runs share the system one
    temp.mkdir()
    h.add_account()
    shim = h.start("two-workers", workers=2, TMPDIR=str(temp))
    shim.kill()
    shim.proc.wait(timeout=30)
    assert list(temp.glob("keyshim-metrics-*")) == []
