"""/metrics: Prometheus text with calls, latencies, refreshes, expiry, quota, in flight."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
import xmlrpc.client
from pathlib import Path

import pytest

from shim.models import TokenPair
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.servers import BackgroundServer
from tests.support.stack import Stack, add_oauth_account, issue_key


def value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in metrics")


@pytest.mark.anyio
async def test_metrics_in_process(stack: Stack) -> None:
    await stack.call("DataService.echo", "x")
    await stack.fault("ContactService.load", 424242, ["Id"])
    await stack.fault("DataService.echo", "x", key="shk_" + "A" * 40)
    chain = stack.store.get_chain("prod")
    assert chain is not None
    stack.store.put_tokens(
        "prod", TokenPair("bogus", chain.refresh_token, time.time() + 999), time.time()
    )
    await stack.call("DataService.echo", "after 401")  # one refresh
    response = await stack.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        value(text, "keyshim_calls_total", account="prod", method="DataService.echo", outcome="ok")
        == 2
    )
    assert (
        value(text, "keyshim_calls_total", method="ContactService.load", outcome="RecordNotFound")
        == 1
    )
    assert value(text, "keyshim_calls_total", method="-", outcome="InvalidKey") == 1
    assert value(text, "keyshim_refreshes_total", account="prod", outcome="ok") == 1
    assert value(text, "keyshim_call_seconds_count") == 4
    assert value(text, "keyshim_upstream_seconds_count") >= 3
    assert 0 < value(text, "keyshim_access_token_expiry_seconds", account="prod") <= 86400
    assert value(text, "keyshim_chain_usable", account="prod") == 1
    assert value(text, "keyshim_calls_in_flight") == 0
    assert stack.key not in text


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_sum_across_workers(
    tmp_path: Path, settings: Settings, store: SqliteStore, workers: int
) -> None:
    """With one worker (the default) every call metric was missing: the server process had
    imported prometheus_client before shim serve pointed it at a multiprocess directory."""
    sim = Simulator(SimConfig())
    with BackgroundServer(sim.app) as keap:
        add_oauth_account(store, sim, keap.url)
        key = issue_key(store, settings, "prod")
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {
            **os.environ,
            "SHIM_DB": settings.db,
            "SHIM_SCHEDULER_INTERVAL": "0",
            "SHIM_LOG_LEVEL": "warning",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "shim", "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            for _ in range(40):  # new connection each call: spread over both workers
                xmlrpc.client.ServerProxy(base + "/api/xmlrpc").DataService.echo(key, "x")
            seen = set()
            for _ in range(20):
                text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
                seen.add(
                    value(text, "keyshim_calls_total", method="DataService.echo", outcome="ok")
                )
            assert seen == {40.0}  # whichever worker answers, the sum of all
            assert re.search(r"keyshim_access_token_expiry_seconds\{account=\"prod\"\}", text)
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def test_dropped_audit_records_and_budget_refusals_are_counted(store: SqliteStore) -> None:
    from shim.keap.budget import Budget
    from shim.models import Account, CallRecord
    from shim.serve.audit import AuditLog
    from shim.serve.metrics import Metrics

    metrics = Metrics()
    audit = AuditLog(
        store, retention=0, clock=time.time, max_buffer=2, on_drop=metrics.dropped_audit
    )
    for i in range(5):
        audit.add(CallRecord(at=float(i), request_id=str(i), key_id=None, account=None,
                             method=None, outcome="ok", upstream_status=None, duration_ms=1.0,
                             bytes_in=0, bytes_out=0))  # fmt: skip
    budget = Budget(share=1.0, max_wait=0, clock=lambda: 0.0, on_refused=metrics.refused_by_budget)
    key = Account(name="k", kind="service_key", created_at=0, service_key="s")
    budget.reserve(key, 0.0)
    with pytest.raises(Exception, match="holding calls back"):
        budget.reserve(key, 0.0)
    text = metrics.render([]).decode()
    assert value(text, "keyshim_audit_dropped_total") == 3
    assert value(text, "keyshim_quota_refused_total") == 1
