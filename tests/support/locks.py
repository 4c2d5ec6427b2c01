"""Another process's SQLite writer, for tests of keyshim under a locked store."""

from __future__ import annotations

import sqlite3
import threading
import time


def hold_write_lock(path: str, seconds: float, taken: threading.Event) -> None:
    """Another process's writer: ``BEGIN IMMEDIATE`` and sit on the lock."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE keys SET label = label")
        taken.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()
