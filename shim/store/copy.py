"""``shim store copy``: move an installation between SQLite and PostgreSQL, either way.

Rows travel as stored, so every secret stays sealed under the same master key (the seal
contexts name a row and column, never a backend) and every token chain keeps its pair and
generation: nothing is re-authorized. The copy holds the source's ``serving`` lock exclusively,
which every running server holds shared, so it refuses while a server runs on the source and no
server can start on it until the copy is done.
"""

from __future__ import annotations

from shim.errors import CliError
from shim.store.protocol import COPY_TABLES, Store

#: Held shared by every ``shim serve`` process for as long as it runs.
SERVING = "serving"


def copy_store(source: Store, target: Store, owner: str) -> dict[str, int]:
    """Copy every table of COPY_TABLES; return rows copied per table."""
    held = source.try_lock(SERVING, owner)
    if held is None:
        raise CliError("a keyshim server is running on the source: stop every shim serve first")
    try:
        if not target.is_empty():
            raise CliError(
                "the target already holds accounts, keys or calls; copy into a new database"
            )
        return {
            table: target.import_rows(table, source.export_rows(table)) for table in COPY_TABLES
        }
    finally:
        held.release()
