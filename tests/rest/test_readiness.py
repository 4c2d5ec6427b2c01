"""Readiness by table: the translation table's table registry, the audit's table column, and
``shim readiness`` judging DataService calls per table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shim.models import CallRecord
from shim.rest import dataservice, readiness, tables
from shim.rest.judging import READS
from shim.rest.spec import TableSpec
from shim.rest.table import judge, translated_tables
from shim.serve.audit import table_of
from shim.store import sqlite as sqlite_store
from shim.store.secrets import SecretBox
from shim.store.sqlite import MIGRATIONS, SqliteStore
from tests.support.stack import Stack

pytestmark = pytest.mark.anyio


def test_judge_by_method_and_table() -> None:
    assert judge("DataService.query", "Contact") == "approximate"
    assert judge("DataService.query", "Ticket") == "no"  # the deprecated ticket system
    assert judge("DataService.query", "NoSuchTable") == "no"
    assert judge("DataService.delete", "ContactGroup") == "approximate"  # the table's fields
    assert judge("DataService.delete", "Contact") == "approximate"
    assert judge("DataService.query", "ContactGroupAssign") == "approximate"
    assert judge("DataService.add", "ContactGroupAssign") == "no"  # read-only
    assert judge("DataService.query") == "approximate"  # table unknown: the method decides
    assert judge("ContactService.merge") == "exact"
    assert judge("SearchService.getSavedSearchResultsAllFields") == "approximate"
    assert judge("SearchService.quickSearch") == "no"  # REST v2 has no quick search
    assert judge("DataService.update", "ProductCategoryAssign") == "no"  # delete, then add
    assert judge("DataService.update", "SocialAccount") == "approximate"
    assert judge("DataService.getAppSetting", args=["Contact", "phonetypes"]) == "approximate"
    assert judge("DataService.getAppSetting", args=["Nope", "nope"]) == "no"


def test_translated_tables_follow_the_dispatcher(monkeypatch: pytest.MonkeyPatch) -> None:
    found = translated_tables()
    assert set(found) == set(dataservice.TABLES)
    assert found["ContactGroupAssign"].methods == READS
    # a table the dispatcher gains is judged translated at once, from its spec
    spec = TableSpec("Widget", "/widgets", "widgets", {}, writes=frozenset({"add"}))
    monkeypatch.setitem(tables.TABLES, "Widget", spec)
    assert translated_tables()["Widget"].methods == (*READS, "add")
    assert judge("DataService.query", "Widget") == "approximate"  # the method's fidelity
    assert judge("DataService.add", "Widget") == "approximate"
    assert judge("DataService.delete", "Widget") == "no"
    read_only = replace(spec, table="Gadget", legacy_read_only=True, fidelity="approximate")
    monkeypatch.setitem(tables.TABLES, "Gadget", read_only)
    assert judge("DataService.add", "Gadget") == "no"
    assert judge("DataService.count", "Gadget") == "approximate"


def test_table_of() -> None:
    assert table_of("DataService.query", ["key", "Contact", 10, 0, {}, ["Id"]]) == "Contact"
    assert table_of("DataService.add", ["key", "X" * 500, {}]) == "X" * 64
    assert table_of("DataService.query", ["key", 5]) is None
    assert table_of("DataService.getAppSetting", ["key", "Contact", "x"]) is None
    assert table_of("ContactService.load", ["key", 1, []]) is None
    assert table_of("DataService.query", ["key"]) is None


def test_migration_nine_keeps_older_audit_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database written before migration 9 upgrades in place; its calls have no table."""
    path = tmp_path / "old.db"
    with SqliteStore(path, SecretBox(b"m" * 32)) as s:
        monkeypatch.setattr(sqlite_store, "MIGRATIONS", [m for m in MIGRATIONS if m[0] < 9])
        assert s.migrate() == 8
        s._db.conn.execute(
            "INSERT INTO calls (at, request_id, method, outcome, duration_ms, bytes_in, "
            "bytes_out) VALUES (1, 'old', 'DataService.query', 'ok', 1, 1, 1)"
        )
        monkeypatch.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS)
        assert s.migrate() == MIGRATIONS[-1][0]
        s.record_calls(
            [
                CallRecord(
                    2.0, "new", None, None, "DataService.query", "ok", 200, 1.0, 1, 1,
                    table_name="Contact",
                )
            ]
        )  # fmt: skip
        rows = {r["table_name"]: r["calls"] for r in s.usage(0)}
    assert rows == {None: 1, "Contact": 1}


async def test_audit_records_the_table(stack: Stack, store: SqliteStore) -> None:
    await stack.call("DataService.query", "Contact", 10, 0, {"Id": "%"}, ["Id"])
    await stack.call("DataService.query", "ContactGroup", 10, 0, {"Id": "%"}, ["Id"])
    await stack.call("ContactService.findByEmail", "nobody@example.com", ["Id"])
    assert stack.app.services is not None
    stack.app.services.audit.flush_now()
    rows = {(r["method"], r["table_name"]): r["calls"] for r in store.usage(0)}
    assert rows == {
        ("DataService.query", "Contact"): 1,
        ("DataService.query", "ContactGroup"): 1,
        ("ContactService.findByEmail", None): 1,
    }


def _row(key: str, method: str, calls: int, table: str | None = None) -> dict[str, Any]:
    return {
        "key_id": key, "label": key, "account": "prod", "method": method, "table_name": table,
        "calls": calls,
    }  # fmt: skip


def test_readiness_per_table() -> None:
    data = readiness.report(
        [
            _row("k1", "DataService.query", 50, "Contact"),
            _row("k1", "DataService.query", 30, "Ticket"),
            _row("k1", "ContactService.merge", 20),
            _row("k2", "DataService.query", 10),  # recorded before the table was
        ]
    )
    k1, k2 = data["keys"]
    assert [(m["table"], m["translation"]) for m in k1["methods"]] == [
        ("Contact", "approximate"),
        ("Ticket", "no"),
        (None, "exact"),
    ]
    assert (k1["share"], k1["exact_share"]) == (0.7, 0.2)
    assert k2["share"] == 1.0
    assert data["caveat"] is not None and data["caveat"].startswith("10 calls:")
    text = "\n".join(readiness.lines(data))
    assert "DataService.query Ticket" in text and "note: 10 calls" in text
    clean = readiness.report([_row("k1", "DataService.query", 5, "Contact")])
    assert clean["caveat"] is None
    assert "note:" not in "\n".join(readiness.lines(clean))


def test_usage_rows_split_by_table(store: SqliteStore) -> None:
    base = CallRecord(1.0, "a", None, "prod", "DataService.query", "ok", 200, 1.0, 1, 1)
    store.record_calls(
        [
            replace(base, table_name="Contact"),
            replace(base, request_id="b", outcome="NoTableFound", table_name="Nope"),
        ]
    )
    rows = {r["table_name"]: r for r in store.usage(0)}
    assert rows["Contact"]["faults"] == 0 and rows["Contact"]["fault_tags"] == {}
    assert rows["Nope"]["fault_tags"] == {"NoTableFound": 1}
