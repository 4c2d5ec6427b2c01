"""DataService's table methods, dispatched on the legacy table name through the registry of
translated tables (``tables.py``; each one a ``spec.Table``).

A known legacy table with no translation gets ``[NoRestTranslation]`` naming the table; a
name the legacy API never had gets its ``[NoTableFound]``.
"""

from __future__ import annotations

from collections.abc import Mapping

from shim.errors import NoTableFound, NoTranslation
from shim.rest import legacy
from shim.rest.context import Ctx
from shim.rest.spec import Table
from shim.rest.tables import TABLES
from shim.xmlrpc import Value


def covers(args: list[object]) -> bool:
    """Whether a DataService table call has a translation: its first argument names a
    translated table, or no legacy table at all (answered locally with NoTableFound)."""
    table = args[0] if args else None
    return not isinstance(table, str) or table in TABLES or table not in legacy.OTHER_TABLES


def untranslated_table(args: list[object]) -> str:
    """Why a DataService call did not translate ("" when its table is not the reason)."""
    table = args[0] if args else None
    if isinstance(table, str) and table not in TABLES and table in legacy.OTHER_TABLES:
        return f" on table {table}"
    return ""


def _table(method: str, table: str) -> Table:
    found = TABLES.get(table)
    if found is not None:
        return found
    if table in legacy.OTHER_TABLES:
        raise NoTranslation(f"DataService.{method} on table {table} has no REST v2 translation")
    raise NoTableFound(f"No table found: {table}")


async def query(
    ctx: Ctx,
    table: str,
    limit: int,
    page: int,
    criteria: dict[str, Value],
    names: list[str],
    order_by: str | None = None,
    ascending: bool = True,
) -> Value:
    t = _table("query", table)
    return await t.query(ctx, limit, page, criteria, names, order_by, ascending)


async def find_by_field(
    ctx: Ctx, table: str, limit: int, page: int, field: str, value: Value, names: list[str]
) -> Value:
    return await query(ctx, table, limit, page, {field: value}, names)


async def count(ctx: Ctx, table: str, criteria: Mapping[str, Value]) -> int:
    return await _table("count", table).count(ctx, criteria)


async def load(ctx: Ctx, table: str, record_id: int, names: list[str]) -> Value:
    return await _table("load", table).load(ctx, record_id, names)


async def add(ctx: Ctx, table: str, data: dict[str, Value]) -> int:
    return await _table("add", table).add(ctx, data)


async def update(ctx: Ctx, table: str, record_id: int, data: dict[str, Value]) -> int:
    return await _table("update", table).update(ctx, record_id, data)


async def delete(ctx: Ctx, table: str, record_id: int) -> bool:
    return await _table("delete", table).delete(ctx, record_id)
