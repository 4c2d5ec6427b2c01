"""``shim status`` tells an account still on route ``xmlrpc`` that it is meeting brownouts;
re-opening an existing database keeps every account's route."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from shim.cli import cli
from shim.models import CallRecord
from shim.rest.outages import xmlrpc_outages
from shim.store.sqlite import SqliteStore
from tests.rest.test_translation import _box


def test_outages_are_counted_from_fault_tags() -> None:
    rows: list[dict[str, Any]] = [
        {"account": "a", "fault_tags": {"UpstreamError": 2, "RecordNotFound": 5}},
        {"account": "a", "fault_tags": {"Brownout": 1}},
        {"account": "b", "fault_tags": {"InvalidKey": 1}},
    ]
    assert xmlrpc_outages(rows) == {"a": 3}


def test_status_suggests_auto_to_an_xmlrpc_account_in_a_brownout(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"SHIM_DB": str(tmp_path / "k.db"), "SHIM_SECRET_KEY": ""}

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        return result.output

    run("init")
    run("account", "add", "old", "--service-key", "KeapAK-1", "--route", "xmlrpc")
    run("account", "add", "new", "--service-key", "KeapAK-2")
    store = SqliteStore(str(tmp_path / "k.db"), _box(tmp_path))
    now = time.time()
    store.record_calls(
        [
            CallRecord(
                now, f"r{i}", f"k-{account}", account, "ContactService.load", outcome, 503, 1, 1, 1
            )
            for i, (account, outcome) in enumerate(
                [("old", "UpstreamError"), ("old", "Brownout"), ("new", "UpstreamError")]
            )
        ]
    )
    store.close()
    text = run("status")
    old = next(line for line in text.splitlines() if line.startswith("old"))
    assert "XML-RPC failed 2 calls in the last 24 h" in old
    assert "shim account set old --route auto" in old
    new = next(line for line in text.splitlines() if line.startswith("new"))
    assert "XML-RPC failed" not in new  # already on auto
    data = {a["account"]: a for a in json.loads(run("status", "--json"))}
    assert data["old"]["xmlrpc_outages_last_day"] == 2
    assert "xmlrpc_outages_last_day" not in data["new"]
    # migrating the database again (a keyshim upgrade) changes no account's route
    store = SqliteStore(str(tmp_path / "k.db"), _box(tmp_path))
    store.migrate()
    assert {a.name: a.route for a in store.list_accounts()} == {"new": "auto", "old": "xmlrpc"}
    store.close()
