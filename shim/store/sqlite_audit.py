"""SQL for the audit table (calls), the usage report and the shared rate counters.

Two kinds of counters: ``rate_windows`` holds each key's combined calls per window of its rate
(``--rate``), counted atomically as calls are admitted; ``rate_counts`` holds each process's
own upstream calls per Keap credential and minute (the ``minute`` column holds the minute's
start in epoch seconds), published once a second for the upstream budget.

Kept apart from the credential tables: it is append-mostly, large, and pruned by retention,
and nothing in it is secret (key ids, never keys).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from shim.models import CallRecord

SCHEMA = """
CREATE TABLE calls (
    id              INTEGER PRIMARY KEY,
    at              REAL NOT NULL,
    request_id      TEXT NOT NULL,
    key_id          TEXT,
    account         TEXT,
    method          TEXT,
    outcome         TEXT NOT NULL,
    upstream_status INTEGER,
    duration_ms     REAL NOT NULL,
    bytes_in        INTEGER NOT NULL,
    bytes_out       INTEGER NOT NULL,
    route           TEXT NOT NULL DEFAULT 'xmlrpc'
);
CREATE INDEX calls_at ON calls (at);
CREATE INDEX calls_key_method ON calls (key_id, method);
"""

#: Migration 7: DataService calls keep their table (NULL for other methods and older rows).
TABLE_NAME_SCHEMA = "ALTER TABLE calls ADD COLUMN table_name TEXT;"

_COLUMNS = tuple(f.name for f in fields(CallRecord))
#: A record's row; ``dataclasses.astuple`` deep-copies every field and cost more than the insert.
_ROW = attrgetter(*_COLUMNS)
_INSERT = f"INSERT INTO calls ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"

#: Outcomes that are not faults.
GOOD = ("ok", "local")


def insert(conn: sqlite3.Connection, records: Sequence[CallRecord]) -> None:
    conn.executemany(_INSERT, map(_ROW, records))


def prune(conn: sqlite3.Connection, before: float) -> int:
    return conn.execute("DELETE FROM calls WHERE at < ?", (before,)).rowcount


def usage(conn: sqlite3.Connection, since: float) -> list[dict[str, Any]]:
    """Per key, method and DataService table: calls, faults, errors, first and last seen,
    upstream routes."""
    rows = conn.execute(
        """
        SELECT c.key_id, k.label, c.account, c.method, c.table_name,
               COUNT(*) AS calls,
               SUM(c.outcome NOT IN ('ok', 'local', 'error')) AS faults,
               SUM(c.outcome = 'error') AS errors,
               MIN(c.at) AS first_seen, MAX(c.at) AS last_seen,
               SUM(c.route = 'rest') AS via_rest,
               ROUND(AVG(c.duration_ms), 2) AS avg_ms
        FROM calls c LEFT JOIN keys k ON k.id = c.key_id
        WHERE c.at >= ?
        GROUP BY c.key_id, c.account, c.method, c.table_name
        ORDER BY calls DESC, c.key_id, c.method, c.table_name
        """,
        (since,),
    ).fetchall()
    return [dict(zip(r.keys(), r, strict=True)) for r in rows]


def fault_tags(
    conn: sqlite3.Connection, since: float
) -> dict[tuple[str | None, str | None, str | None], dict[str, int]]:
    """Per (key, method, table): how many of each fault tag, for the usage report's detail."""
    out: dict[tuple[str | None, str | None, str | None], dict[str, int]] = {}
    for key_id, method, table_name, outcome, n in conn.execute(
        "SELECT key_id, method, table_name, outcome, COUNT(*) FROM calls WHERE at >= ? "
        "AND outcome NOT IN ('ok', 'local') GROUP BY key_id, method, table_name, outcome",
        (since,),
    ):
        out.setdefault((key_id, method, table_name), {})[outcome] = n
    return out


RATE_SCHEMA = """
CREATE TABLE rate_counts (
    key_id TEXT NOT NULL,
    minute INTEGER NOT NULL,
    owner  TEXT NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (key_id, minute, owner)
);
"""


def publish_rates(
    conn: sqlite3.Connection, owner: str, counts: dict[tuple[str, int], int], oldest: int
) -> None:
    """Replace this owner's counts (absolute, so a lost flush heals) and drop slots older than
    ``oldest`` (a dead process's). The ``minute`` column holds a slot: a window's start in
    epoch seconds (``shim.access.rate_policy``)."""
    conn.execute("DELETE FROM rate_counts WHERE owner = ?", (owner,))
    conn.executemany(
        "INSERT INTO rate_counts (key_id, minute, owner, count) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key_id, minute, owner) DO UPDATE SET count = excluded.count",
        [(k, m, owner, n) for (k, m), n in counts.items()],
    )
    conn.execute("DELETE FROM rate_counts WHERE minute < ?", (oldest,))


def others_rates(
    conn: sqlite3.Connection, subjects: Sequence[str], slot: int, owner: str
) -> dict[str, tuple[int, int]]:
    if not subjects:
        return {}
    marks = ", ".join("?" * len(subjects))
    rows = conn.execute(
        "SELECT key_id, SUM(CASE WHEN minute = ? THEN count ELSE 0 END), COUNT(DISTINCT owner) "
        f"FROM rate_counts WHERE key_id IN ({marks}) AND minute >= ? AND owner != ? "
        "GROUP BY key_id",
        (slot, *subjects, slot - 60, owner),
    )
    return {str(k): (int(n), int(peers)) for k, n, peers in rows}


WINDOW_SCHEMA = """
DROP TABLE leases;
CREATE TABLE rate_windows (
    key_id TEXT NOT NULL,
    slot   INTEGER NOT NULL,  -- the window's start, epoch seconds
    count  INTEGER NOT NULL,
    PRIMARY KEY (key_id, slot)
);
"""


def admit_call(
    conn: sqlite3.Connection, key_id: str, slot: int, window: int, limit: int, prev_weight: float
) -> tuple[int, int] | None:
    """Inside the caller's write transaction, so the check and the count are one step."""
    rows = dict(
        conn.execute(
            "SELECT slot, count FROM rate_windows WHERE key_id = ? AND slot IN (?, ?)",
            (key_id, slot - window, slot),
        ).fetchall()
    )
    prev, cur = int(rows.get(slot - window, 0)), int(rows.get(slot, 0))
    if prev * prev_weight + cur + 1 > limit:
        return prev, cur
    conn.execute(
        "INSERT INTO rate_windows (key_id, slot, count) VALUES (?, ?, 1) "
        "ON CONFLICT (key_id, slot) DO UPDATE SET count = count + 1",
        (key_id, slot),
    )
    if cur == 0:  # first call of a window: forget this key's older ones
        conn.execute(
            "DELETE FROM rate_windows WHERE key_id = ? AND slot < ?", (key_id, slot - window)
        )
    return None


def add_calls(conn: sqlite3.Connection, key_id: str, slot: int, window: int, count: int) -> None:
    conn.execute(
        "INSERT INTO rate_windows (key_id, slot, count) VALUES (?, ?, ?) "
        "ON CONFLICT (key_id, slot) DO UPDATE SET count = count + excluded.count",
        (key_id, slot, count),
    )
    conn.execute("DELETE FROM rate_windows WHERE key_id = ? AND slot < ?", (key_id, slot - window))


QUOTA_SCHEMA = """
CREATE TABLE quota_figures (
    account TEXT PRIMARY KEY NOT NULL,
    figures TEXT NOT NULL,  -- JSON: Keap's x-keap-product-quota-*/throttle-* headers
    at      REAL NOT NULL
);
"""


def put_quota(conn: sqlite3.Connection, figures: dict[str, tuple[dict[str, str], float]]) -> None:
    conn.executemany(
        "INSERT INTO quota_figures (account, figures, at) VALUES (?, ?, ?) "
        "ON CONFLICT (account) DO UPDATE SET figures = excluded.figures, at = excluded.at "
        "WHERE excluded.at > quota_figures.at",
        [(name, json.dumps(f), at) for name, (f, at) in figures.items()],
    )


def get_quota(conn: sqlite3.Connection) -> dict[str, tuple[dict[str, str], float]]:
    rows = conn.execute("SELECT account, figures, at FROM quota_figures")
    return {name: (json.loads(figures), float(at)) for name, figures, at in rows}
