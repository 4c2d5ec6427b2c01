"""``shim usage`` and ``shim readiness``: per key, the share of its calls on REST v2 over time
(issue 17: how far each script or team has moved off XML-RPC)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from shim.cli import cli
from shim.models import CallRecord
from shim.rest import readiness
from shim.serve.runtime import open_store
from shim.settings import Settings

DAY = 86400.0


def record(at: float, key: str, method: str, route: str = "xmlrpc") -> CallRecord:
    return CallRecord(
        at=at, request_id="r", key_id=key, account="prod", method=method, outcome="ok",
        upstream_status=200, duration_ms=1.0, bytes_in=1, bytes_out=1, route=route,
    )  # fmt: skip


def test_usage_and_readiness_show_the_share_on_rest_v2_per_period(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"SHIM_DB": str(tmp_path / "k.db"), "SHIM_SECRET_KEY": ""}
    assert runner.invoke(cli, ["init"], env=env).exit_code == 0
    now = time.time()
    calls = (
        # "sync" moves: all XML-RPC 20 days ago, half and half 3 days ago, REST v2 today.
        [record(now - 20 * DAY, "sync", "ContactService.load")] * 4
        + [record(now - 3 * DAY, "sync", "ContactService.load")] * 2
        + [record(now - 3 * DAY, "sync", "REST GET /contacts/{id}", "rest-pass")] * 2
        + [record(now - 3600, "sync", "REST GET /contacts/{id}", "rest-pass")] * 3
        # "report" has not moved.
        + [record(now - 3600, "report", "DataService.query")] * 5
    )
    store = open_store(Settings.from_env(env))
    try:
        store.record_calls(calls)
    finally:
        store.close()

    usage = runner.invoke(cli, ["usage", "--since", "30d"], env=env, catch_exceptions=False)
    assert usage.exit_code == 0, usage.output
    share = usage.output.split("share of calls on REST v2", 1)[1].splitlines()
    assert "7d to 24h ago | last 24h" in share[0]
    sync = next(line for line in share if line.startswith("sync"))
    assert "0% (4/0) |  50% (2/2) | 100% (0/3)" in sync
    report = next(line for line in share if line.startswith("report"))
    assert report.endswith("|    - |   0% (5/0)")

    ready = runner.invoke(
        cli, ["readiness", "--since", "30d", "--json"], env=env, catch_exceptions=False
    )
    data = json.loads(ready.output)
    by_key = {k["key_id"]: k for k in data["keys"]}
    assert by_key["sync"]["rest_v2"] == 5 and by_key["sync"]["no"] == 0
    periods = {m["key_id"]: m["periods"] for m in data["protocols"]}
    assert [p["rest_share"] for p in periods["sync"]] == [0.0, 0.5, 1.0]
    text = runner.invoke(cli, ["readiness", "--since", "30d"], env=env, catch_exceptions=False)
    assert "45% already REST v2" in text.output
    assert "share of calls on REST v2" in text.output


def test_migration_with_one_period() -> None:
    rows = [
        {"key_id": "k", "label": "l", "method": "REST GET /tags", "calls": 1},
        {"key_id": "k", "label": "l", "method": "ContactService.add", "calls": 3},
        {"key_id": None, "label": None, "method": "REST GET /tags", "calls": 9},
    ]
    moved = readiness.migration([(0.0, "since 1970")], lambda since: rows)
    assert moved == [
        {
            "key_id": "k",
            "label": "l",
            "periods": [{"period": "since 1970", "xmlrpc": 3, "rest_v2": 1, "rest_share": 0.25}],
        }
    ]
