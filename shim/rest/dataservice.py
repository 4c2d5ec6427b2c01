"""DataService's table methods, dispatched on the legacy table name.

Translated tables: Contact, ContactGroup, ContactGroupCategory and ContactGroupAssign
(read-only, as in the legacy API). Another known legacy table gets ``[NoRestTranslation]``;
a name the legacy API never had gets its ``[NoTableFound]``.
"""

from __future__ import annotations

from collections.abc import Mapping

from shim.errors import NoTableFound, NotFound, NoTranslation, ShimError
from shim.rest import contacts, legacy, tags
from shim.rest.context import Ctx
from shim.xmlrpc import Value

TABLES = ("Contact", "ContactGroup", "ContactGroupCategory", tags.ASSIGN)


def covers(args: list[object]) -> bool:
    """Whether a DataService table call has a translation: its first argument names a
    translated table, or no legacy table at all (answered locally with NoTableFound)."""
    table = args[0] if args else None
    return not isinstance(table, str) or table not in legacy.OTHER_TABLES


def _unsupported(method: str, table: str) -> ShimError:
    if table in legacy.OTHER_TABLES:
        return NoTranslation(f"DataService.{method} on table {table} has no REST v2 translation")
    return NoTableFound(f"No table found: {table}")


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
    if table == "Contact":
        return await contacts.query(ctx, limit, page, criteria, names, order_by, ascending)
    if table in tags.TABLES:
        t = tags.TABLES[table]
        return await tags.query(ctx, t, limit, page, criteria, names, order_by, ascending)
    if table == tags.ASSIGN:
        return await tags.assign_query(ctx, limit, page, criteria, names, order_by, ascending)
    raise _unsupported("query", table)


async def find_by_field(
    ctx: Ctx, table: str, limit: int, page: int, field: str, value: Value, names: list[str]
) -> Value:
    return await query(ctx, table, limit, page, {field: value}, names)


async def count(ctx: Ctx, table: str, criteria: Mapping[str, Value]) -> int:
    if table == "Contact":
        return await contacts.count_rows(ctx, criteria)
    if table in tags.TABLES:
        return await tags.count_rows(ctx, tags.TABLES[table], criteria)
    if table == tags.ASSIGN:
        return await tags.assign_count(ctx, criteria)
    raise _unsupported("count", table)


async def load(ctx: Ctx, table: str, record_id: int, names: list[str]) -> Value:
    if table == "Contact":
        return await contacts.load(ctx, record_id, names)
    if table in tags.TABLES:
        return await tags.load(ctx, tags.TABLES[table], record_id, names)
    if table == tags.ASSIGN:
        legacy.check_fields(table, tags.ASSIGN_FIELDS, names)
        raise NotFound()  # the join table has no Id to load by
    raise _unsupported("load", table)


async def add(ctx: Ctx, table: str, data: dict[str, Value]) -> int:
    if table == "Contact":
        return await contacts.add(ctx, data)
    if table in tags.TABLES:
        return await tags.add(ctx, tags.TABLES[table], data)
    if table == tags.ASSIGN:
        raise tags.read_only(table)
    raise _unsupported("add", table)


async def update(ctx: Ctx, table: str, record_id: int, data: dict[str, Value]) -> int:
    if table == "Contact":
        return await contacts.update(ctx, record_id, data)
    if table in tags.TABLES:
        return await tags.update(ctx, tags.TABLES[table], record_id, data)
    if table == tags.ASSIGN:
        raise tags.read_only(table)
    raise _unsupported("update", table)


async def delete(ctx: Ctx, table: str, record_id: int) -> bool:
    if table == "Contact":
        return await contacts.delete(ctx, record_id)
    if table in tags.TABLES:
        return await tags.delete(ctx, tags.TABLES[table], record_id)
    if table == tags.ASSIGN:
        raise tags.read_only(table)
    raise _unsupported("delete", table)
