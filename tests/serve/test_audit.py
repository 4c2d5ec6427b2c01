"""The audit buffer survives a busy database: records a flush could not write are kept (up to
``SHIM_AUDIT_BUFFER``) and written by a later flush; only overflow is dropped, and counted."""

from __future__ import annotations

import sqlite3
import time

import pytest

from shim.models import CallRecord
from shim.serve.audit import AuditLog
from shim.settings import Settings
from shim.store.master_key import load as load_master_key
from shim.store.secrets import SecretBox
from shim.store.sqlite import SqliteStore
from tests.support.stack import Stack

pytestmark = pytest.mark.anyio


def record(i: int) -> CallRecord:
    return CallRecord(at=time.time(), request_id=f"r{i}", key_id=None, account=None,
                      method="DataService.echo", outcome="ok", upstream_status=200,
                      duration_ms=1.0, bytes_in=0, bytes_out=0)  # fmt: skip


def written(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


def test_records_survive_flushes_that_meet_a_locked_database(
    settings: Settings, store: SqliteStore
) -> None:
    # A store that waits only briefly for the lock (the server's waits 10 s, then fails alike).
    impatient = SqliteStore(settings.db, SecretBox(load_master_key(settings)), timeout=0.05)
    dropped: list[int] = []
    audit = AuditLog(impatient, retention=0, clock=time.time, on_drop=lambda: dropped.append(1))
    other = sqlite3.connect(settings.db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        for i in range(20):
            audit.add(record(i))
            if i % 5 == 4:
                assert audit.flush_now() == 0  # the database is busy: nothing written...
        other.execute("COMMIT")
        assert audit.flush_now() == 20  # ...and nothing lost once it is free again
    finally:
        other.close()
        impatient.close()
    assert written(settings.db) == 20
    assert dropped == []


def test_a_full_buffer_drops_the_oldest_and_counts_them(
    settings: Settings, store: SqliteStore
) -> None:
    impatient = SqliteStore(settings.db, SecretBox(load_master_key(settings)), timeout=0.05)
    dropped: list[int] = []
    audit = AuditLog(
        impatient, retention=0, clock=time.time, max_buffer=8, on_drop=lambda: dropped.append(1)
    )
    other = sqlite3.connect(settings.db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        for i in range(6):
            audit.add(record(i))
        assert audit.flush_now() == 0
        for i in range(6, 12):
            audit.add(record(i))
        assert audit.flush_now() == 0
        other.execute("COMMIT")
        assert audit.flush_now() == 8
    finally:
        other.close()
        impatient.close()
    assert len(dropped) == 4 and audit.dropped == 4
    assert store.audit_dropped() == 4  # persisted with the flush that got through
    with sqlite3.connect(settings.db) as conn:
        ids = sorted(r[0] for r in conn.execute("SELECT request_id FROM calls"))
    assert ids == sorted(f"r{i}" for i in range(4, 12))


async def test_healthz_reports_the_audit_buffer(stack: Stack) -> None:
    services = stack.app.services
    assert services is not None
    services.audit.dropped = 3
    health = (await stack.client.get("/healthz")).json()
    assert health["audit"] == {"buffered": services.audit.buffered, "dropped": 3}
