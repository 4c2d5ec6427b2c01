"""One declarative spec per legacy DataService table, and the table methods every spec gets.

A ``TableSpec`` says, for one legacy table: its legacy fields (name, XML-RPC type, whether
legacy scripts could write it) and where each lives in REST v2 (``Column``: property, filter,
whether REST accepts it in a write); the REST resource (list path and key, item path); which
legacy orders REST gives; which writes REST allows. From that alone a spec answers
``query``/``findByField``/``count``/``load``/``add``/``update``/``delete`` with the legacy
checks and faults, through the one legacy-query pipeline (``listing.run_query``), and
``docs/translation.md`` prints its field table. A table with its own rules (Contact, the
read-only join ContactGroupAssign) implements the same ``Table`` protocol by hand.

To translate a new flat table: write its ``TableSpec`` (in the module of its REST resource)
and add one line to ``shim/rest/tables.py``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal, Protocol, TypeGuard

from shim.errors import NoTableAccess, NotFound, NoTranslation
from shim.rest import criteria as crit
from shim.rest import legacy
from shim.rest.contact_map import parse_rest_time
from shim.rest.context import Ctx
from shim.rest.legacy import FieldSpec, FieldType
from shim.rest.listing import SCAN_LIMIT, Filter, Row, count, project, run_query, scan
from shim.xmlrpc import Value

Fidelity = Literal["exact", "approximate"]
Write = Literal["add", "update", "delete"]
ALL_WRITES: frozenset[Write] = frozenset({"add", "update", "delete"})
_COMPARE = {"=": "==", "~>~": ">", "~<~": "<", "~>=~": ">=", "~<=~": "<="}


class Table(Protocol):
    """What ``DataService`` needs of a translated table."""

    @property
    def table(self) -> str: ...

    async def query(
        self,
        ctx: Ctx,
        limit: int,
        page: int,
        criteria: Mapping[str, Value],
        names: list[str],
        order_by: str | None,
        ascending: bool,
    ) -> Value: ...

    async def count(self, ctx: Ctx, criteria: Mapping[str, Value]) -> int: ...

    async def load(self, ctx: Ctx, record_id: int, names: list[str]) -> Value: ...

    async def add(self, ctx: Ctx, data: Mapping[str, Value]) -> int: ...

    async def update(self, ctx: Ctx, record_id: int, data: Mapping[str, Value]) -> int: ...

    async def delete(self, ctx: Ctx, record_id: int) -> bool: ...


@dataclass(frozen=True)
class Convert:
    """A field whose value REST writes differently: money in minor units, 0/1 flags as
    booleans, enums as words. ``read`` takes REST's raw value (never None)."""

    read: Callable[[Any], Value]
    write: Callable[[Value], Any]


@dataclass(frozen=True)
class Column:
    """One legacy field and its REST v2 place."""

    type: FieldType
    #: REST property; ``a.b`` is attribute ``b`` of object ``a``; None: no REST equivalent
    #: (never returned; writing or filtering on it is refused with [NoRestTranslation]).
    prop: str | None
    #: Writable in the legacy API (else [NoFieldAccess], as legacy answered).
    writable: bool = True
    #: Accepted by REST's create/update models (a legacy-writable field REST cannot write is
    #: refused, never dropped).
    rest_writable: bool = True
    #: REST filter field standing in for an exact legacy value, or None.
    filter: str | None = None
    #: The filter takes a trailing ``*`` (legacy ``v%``).
    wildcard: bool = False
    #: ``filter==NONE`` finds empty values (legacy ``~null~``).
    none: bool = False
    #: The (numeric) filter takes ``> < >= <=``.
    compare: bool = False
    #: REST matches exactly the legacy rows (False: a superset, re-checked by keyshim).
    exact: bool = True
    #: JSON shape of an id: ``{"id": "7"}`` (``ref``) or a string ``"7"`` (``text_id``).
    ref: bool = False
    text_id: bool = False
    #: Where the request models take it, when not at ``prop`` (an opportunity reads
    #: ``contact.id`` and writes ``contact_id``).
    write: str | None = None
    #: REST value -> legacy value, for enumerations (a custom field's type -> DataType).
    codes: Mapping[str, Value] | None = None
    #: The same value on every row (a legacy column REST has no need for), or None.
    const: int | str | None = None
    note: str = ""
    #: The value's REST form differs from legacy's (see ``Convert``).
    convert: Convert | None = None

    @property
    def spec(self) -> FieldSpec:
        return FieldSpec(self.type, self.writable)


def rest_only(type_: FieldType, prop: str, **kw: Any) -> Column:
    """A field legacy scripts could read but not write."""
    return Column(type_, prop, writable=False, **kw)


def missing(type_: FieldType, note: str = "", writable: bool = True) -> Column:
    """A legacy field with no REST v2 equivalent."""
    return Column(type_, None, writable=writable, note=note or "no REST v2 equivalent")


@dataclass(frozen=True)
class TableSpec:
    """A flat legacy table over one REST v2 resource; see the module docstring."""

    table: str
    #: REST list path (also the create path) and the key of the list in its answer.
    path: str
    items: str
    columns: dict[str, Column]
    #: Item path; ``{id}`` is the record id. Default ``{path}/{id}``.
    item: str = ""
    #: Legacy field -> REST ``order_by`` field giving the legacy order (ties by Id), for
    #: ascending order. Anything else is ordered by keyshim after a bounded scan.
    orders: dict[str, str] = field(default_factory=dict)
    #: The list endpoint takes ``fields=`` (else every property comes back).
    fields_param: bool = False
    #: The legacy writes REST v2 can do.
    writes: frozenset[Write] = ALL_WRITES
    #: The table is read-only in the legacy API as well ([NoTableAccess] on writes).
    legacy_read_only: bool = False
    #: Update method: PATCH with ``update_mask`` (Keap's usual) or PUT.
    update_method: str = "PATCH"
    fidelity: Fidelity = "exact"
    notes: str = ""
    #: Properties REST requires on create that legacy never did (added when not written;
    #: rest-commerce's name for ``create_defaults``, both honoured until they are unified).
    add_defaults: dict[str, Any] = field(default_factory=dict)
    #: Heading in the generated docs (default: the table name).
    title: str = ""
    #: REST has no GET of one record: ``load`` finds it in the list.
    load_by_list: bool = False
    #: ``load`` translates (a table whose records REST cannot name one by one says False).
    loads: ClassVar[bool] = True

    # -- the legacy table ----------------------------------------------------------------
    @cached_property
    def fields(self) -> dict[str, FieldSpec]:
        return {name: col.spec for name, col in self.columns.items()}

    def item_path(self, record_id: int) -> str:
        return (self.item or self.path + "/{id}").replace("{id}", str(record_id))

    @property
    def rest(self) -> str:
        """The REST requests, for the docs."""
        return f"{self.path}, {self.item or self.path + '/{id}'}"

    # -- listing Source (see listing.py) -------------------------------------------------
    def filter(self, c: crit.Criterion) -> Filter | None:
        col = self.columns.get(c.field)
        if col is None or col.filter is None:
            return None
        name = col.filter
        if c.op == "null":
            return Filter(f"{name}==NONE", col.exact) if col.none else None
        # Criterion.raw is the operand in the field's type, .operand the text as sent.
        if col.type == "int":
            op = _COMPARE.get(c.op)
            number = c.raw
            if op is None or not isinstance(number, int) or isinstance(number, bool):
                return None
            return Filter(f"{name}{op}{number}", col.exact) if op == "==" or col.compare else None
        if col.type == "date":
            return None
        if c.op == "=" and _expressible(c.operand):
            return Filter(f"{name}=={c.operand}", col.exact)
        prefix = c.prefix
        if col.wildcard and prefix is not None and _expressible(prefix):
            return Filter(f"{name}=={prefix}*", col.exact)
        return None

    def order(self, name: str, ascending: bool) -> str | None:
        rest = self.orders.get(name)
        return f"{rest} asc" if rest is not None and ascending else None

    def want(self, names: Iterable[str]) -> list[str] | None:
        if not self.fields_param:
            return None
        props = {"id"}
        for name in names:
            col = self.columns.get(name)
            if col is not None and col.prop is not None:
                props.add(col.prop.split(".")[0])
        return sorted(props)

    def readable(self, name: str) -> bool:
        col = self.columns.get(name)
        return col is not None and (col.prop is not None or col.const is not None)

    def row(self, item: dict[str, Any]) -> Row:
        return {name: _read(item, col) for name, col in self.columns.items()}

    def base_key(self, row: Row) -> Any:
        return row.get("Id") or 0

    # -- writing -------------------------------------------------------------------------
    def body(self, values: Mapping[str, Value]) -> dict[str, Any]:
        """REST JSON for coerced legacy values; a field REST cannot write is refused."""
        body: dict[str, Any] = {}
        for name, value in values.items():
            col = self.columns[name]
            if col.prop is None or not col.rest_writable:
                raise NoTranslation(
                    f"{self.table}.{name} cannot be written through REST v2"
                    + (f" ({col.note})" if col.note else "")
                )
            _put(body, (col.write or col.prop).split("."), _to_rest(value, col))
        return body

    def _attrs(self, top: str) -> set[str]:
        """The attributes of request object ``top`` the spec writes."""
        found = set()
        for col in self.columns.values():
            where = (col.write or col.prop or "").split(".")
            if len(where) == 2 and where[0] == top and col.rest_writable and col.writable:
                found.add(where[1])
        return found

    def _check_write(self, method: Write) -> None:
        if self.legacy_read_only:
            raise NoTableAccess(f"Access denied to table {self.table}")
        if method not in self.writes:
            raise NoTranslation(
                f"DataService.{method} on table {self.table} has no REST v2 translation "
                f"(REST v2 cannot {method} {self.items.replace('_', ' ')})"
            )

    # -- the table methods ---------------------------------------------------------------
    async def query(
        self,
        ctx: Ctx,
        limit: int,
        page: int,
        criteria: Mapping[str, Value],
        names: list[str],
        order_by: str | None,
        ascending: bool,
    ) -> Value:
        return await run_query(ctx, self, limit, page, criteria, names, order_by, ascending)

    async def count(self, ctx: Ctx, criteria: Mapping[str, Value]) -> int:
        compiled = crit.compile_query(self.table, self.fields, criteria)
        return await count(ctx.client, self, compiled)

    async def load(self, ctx: Ctx, record_id: int, names: list[str]) -> Value:
        legacy.check_fields(self.table, self.fields, names)
        if record_id < 1:
            raise NotFound()
        if self.load_by_list:
            rows = await scan(ctx.client, self, [], SCAN_LIMIT, f"{self.table} is read whole")
            found = next((row for row in rows if row.get("Id") == record_id), None)
            if found is None:
                raise NotFound()
            return project(found, names)
        item = await ctx.client.get(self.item_path(record_id))
        return project(self.row(item if isinstance(item, dict) else {}), names)

    async def add(self, ctx: Ctx, data: Mapping[str, Value]) -> int:
        self._check_write("add")
        values = legacy.writable(self.table, self.fields, dict(data))
        body = {**self.add_defaults, **self.body(values)}
        item = await ctx.client.json("POST", self.path, json_body=body)
        record_id = int_id(item.get("id")) if isinstance(item, dict) else None
        if record_id is None:
            raise NotFound("Keap REST answered without the new record's id")
        return record_id

    async def update(self, ctx: Ctx, record_id: int, data: Mapping[str, Value]) -> int:
        self._check_write("update")
        values = legacy.writable(self.table, self.fields, dict(data))
        if record_id < 1:
            raise NotFound()
        body = self.body(values)
        path = self.item_path(record_id)
        if any(isinstance(v, dict) for v in body.values()):
            # REST replaces a named object (an address) whole: keep its other parts.
            current = await ctx.client.get(path)
            for key, value in body.items():
                was = current.get(key) if isinstance(current, dict) else None
                if isinstance(value, dict) and isinstance(was, dict):
                    writable = self._attrs(key)
                    body[key] = {k: v for k, v in was.items() if k in writable} | value
        params = [("update_mask", prop) for prop in body] if self.update_method == "PATCH" else []
        await ctx.client.json(self.update_method, path, params=params, json_body=body)
        return record_id

    async def delete(self, ctx: Ctx, record_id: int) -> bool:
        self._check_write("delete")
        if record_id < 1:
            raise NotFound()
        await ctx.client.json("DELETE", self.item_path(record_id))
        return True


def check_spec(spec: TableSpec) -> list[str]:
    """What is wrong with a spec (empty when nothing): the unit tests run it on every spec."""
    problems = []
    if "Id" not in spec.columns or spec.columns["Id"].type != "int":
        problems.append(f"{spec.table}: no int Id field")
    for name, col in spec.columns.items():
        if col.filter is not None and col.prop is None:
            problems.append(f"{spec.table}.{name}: a filter without a REST property")
        if (col.wildcard or col.compare) and col.filter is None:
            problems.append(f"{spec.table}.{name}: filter options without a filter")
        if col.none and col.type == "date":
            problems.append(f"{spec.table}.{name}: ~null~ filter on a date")
    for name in spec.orders:
        if name not in spec.columns:
            problems.append(f"{spec.table}: order on unknown field {name}")
    return problems


def int_id(value: Any) -> int | None:
    """A REST id (a JSON string) as the legacy int id."""
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else None


def _expressible(value: object) -> TypeGuard[str]:
    """Whether a text value can go into a REST filter as it is (``;`` separates clauses,
    ``*`` is a wildcard, REST trims values)."""
    return (
        isinstance(value, str)
        and value != ""
        and value == value.strip()
        and ";" not in value
        and "*" not in value
    )


def _read(item: Mapping[str, Any], col: Column) -> Value:
    if col.const is not None:
        return col.const
    if col.prop is None:
        return None
    raw: Any = item
    for part in col.prop.split("."):
        if isinstance(raw, list):  # a list of objects: the first (a user's emails)
            raw = raw[0] if raw else None
        raw = raw.get(part) if isinstance(raw, dict) else None
    if col.ref and isinstance(raw, dict):
        raw = raw.get("id")
    if raw is None or raw == "":
        return None
    if col.convert is not None:
        return col.convert.read(raw)
    if col.codes is not None:
        return col.codes.get(str(raw))
    if col.type == "int":
        if isinstance(raw, bool):
            return int(raw)
        return raw if isinstance(raw, int) else int_id(raw)
    if col.type == "date":
        return parse_rest_time(str(raw))
    if col.type == "float":
        try:
            return float(raw)
        except (TypeError, ValueError):
            return None
    if isinstance(raw, bool):
        return "1" if raw else "0"
    return str(raw)


def _to_rest(value: Value, col: Column) -> Any:
    if col.convert is not None:
        return col.convert.write(value)
    if col.ref:
        return {"id": str(value)} if isinstance(value, int) and value > 0 else None
    if col.text_id:
        return str(value) if isinstance(value, int) and value > 0 else None
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return value


def _put(body: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        inner = body.get(part)
        if not isinstance(inner, dict):
            inner = body[part] = {}
        body = inner
    body[path[-1]] = value


def read_only(table: str) -> NoTableAccess:
    return NoTableAccess(f"Access denied to table {table}")
