"""Legacy ``query``/``count`` over REST v2 lists: what REST filters, what keyshim filters.

For each criterion the table's ``Source`` says whether a REST filter expresses it exactly, as
a superset (re-checked locally), or not at all. Then:

* **Direct**: every criterion exact and the legacy order available from REST (ties broken
  the same way): legacy page N of size L is REST page N with ``page_size=L``. REST pages by
  cursor, so page tokens are cached per query (account, path, filter, order, size); a script
  walking pages 0, 1, 2... costs one request a page, a cold jump to page N costs N+1.
* **Scan**: anything else reads every candidate REST returns (1000 a request), filters and
  orders locally with the legacy semantics, then slices the page. A scan that would read
  more than ``SCAN_LIMIT`` records is refused with ``[NoRestTranslation]`` naming what REST
  could not filter: keyshim never runs an unbounded scan on a script's behalf.

Cursor paging differs from legacy offsets in one way: records added or deleted between two
page calls shift legacy offsets but not REST cursors (no record is skipped or repeated).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shim.errors import NoTranslation
from shim.rest import legacy
from shim.rest.client import RestClient
from shim.rest.criteria import Criterion, check_page, compile_query, legacy_page, matches
from shim.rest.legacy import FieldSpec
from shim.xmlrpc import Value

if TYPE_CHECKING:
    from shim.rest.context import Ctx

#: Most records a query or count may read in order to filter or sort them locally.
SCAN_LIMIT = 5_000
#: Most records ``count`` may page through (ids only) when REST filters exactly.
COUNT_LIMIT = 50_000
#: REST's largest page.
REST_PAGE = 1000
Row = dict[str, Value]


@dataclass(frozen=True)
class Filter:
    """A REST filter clause standing in for a legacy criterion."""

    clause: str
    #: True: REST matches exactly what legacy matched; False: a superset, checked locally.
    exact: bool


class Source(Protocol):
    """How one legacy table is listed over REST v2."""

    @property
    def table(self) -> str: ...

    @property
    def path(self) -> str:
        """The REST list path."""
        ...

    @property
    def items(self) -> str:
        """The key of the list in REST's answer."""
        ...

    @property
    def fields(self) -> dict[str, FieldSpec]:
        """The legacy table's fields."""
        ...

    def filter(self, criterion: Criterion) -> Filter | None: ...

    def order(self, field: str, ascending: bool) -> str | None:
        """REST ``order_by`` giving the legacy order (ties by Id ascending), else None."""
        ...

    def want(self, names: Iterable[str]) -> list[str] | None:
        """Read ``names`` too from now on; returns the REST ``fields=`` that carries
        everything wanted (None: the endpoint takes no ``fields``)."""
        ...

    def readable(self, name: str) -> bool:
        """Whether REST returns the field (so keyshim can filter or sort on it)."""
        ...

    def row(self, item: dict[str, Any]) -> Row: ...

    def base_key(self, row: Row) -> Any:
        """The legacy table's natural order (Id), the tie-break of every ordering."""
        ...


class PageTokens:
    """Page tokens per query: (page number -> token that fetches it), LRU and time-bounded."""

    def __init__(self, ttl: float = 3600.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, dict[int, str]]] = OrderedDict()

    def pages(self, key: tuple[Any, ...]) -> dict[int, str]:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or now - entry[0] > self.ttl:
            entry = (now, {0: ""})
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return entry[1]


def prepare(
    table: str,
    fields: dict[str, FieldSpec],
    limit: int,
    page: int,
    criteria: Mapping[str, Value],
    names: list[str],
    order_by: str | None,
) -> tuple[list[Criterion], int]:
    """The legacy checks of a query, in the legacy order, before any REST request: the
    fields asked for, every criterion, the order field, the page. Returns the compiled
    criteria and the effective limit."""
    legacy.check_fields(table, fields, names)
    compiled = compile_query(table, fields, criteria)
    if order_by is not None:
        legacy.field(table, fields, order_by)
    return compiled, check_page(limit, page)


async def run_query(
    ctx: Ctx,
    source: Source,
    limit: int,
    page: int,
    criteria: Mapping[str, Value],
    names: list[str],
    order_by: str | None,
    ascending: bool,
) -> list[Value]:
    """THE legacy-query pipeline of the translator: legacy checks, then REST filters for
    what REST can say and keyshim's own filtering for the rest, then the legacy page."""
    compiled, limit = prepare(source.table, source.fields, limit, page, criteria, names, order_by)
    order = (order_by, ascending)
    rows = await select(ctx.client, ctx.state.tokens, source, compiled, order, limit, page, names)
    return [project(row, names) for row in rows]


def server_params(source: Source, criteria: list[Criterion]) -> tuple[list[str], list[Criterion]]:
    """REST filter clauses, and the criteria keyshim must check itself."""
    clauses: list[str] = []
    residual: list[Criterion] = []
    for criterion in criteria:
        found = source.filter(criterion)
        if found is not None and found.clause:
            clauses.append(found.clause)
        if found is None or not found.exact:
            if not source.readable(criterion.field):
                raise NoTranslation(
                    f"{source.table}.{criterion.field}: REST v2 can filter it only by an exact "
                    "value or a trailing %, and never returns it for keyshim to check"
                )
            residual.append(criterion)
    return clauses, residual


def _filter_params(clauses: list[str]) -> list[tuple[str, str]]:
    return [("filter", ";".join(clauses))] if clauses else []


async def select(
    client: RestClient,
    tokens: PageTokens,
    source: Source,
    criteria: list[Criterion],
    order: tuple[str | None, bool],
    limit: int,
    page: int,
    names: list[str],
) -> list[Row]:
    """The legacy page ``page`` of ``limit`` rows; each row holds at least ``names``."""
    clauses, residual = server_params(source, criteria)
    order_by, ascending = order
    rest_order = source.order(order_by or "Id", ascending)
    wanted = [*names, *(c.field for c in residual), *([order_by] if order_by else [])]
    params = _filter_params(clauses)
    props = source.want(wanted)
    if props is not None:
        params.append(("fields", ",".join(props)))
    if not residual and rest_order is not None:
        return await _direct(client, tokens, source, params, rest_order, limit, page)
    rows = await scan(client, source, params, SCAN_LIMIT, _why(residual, order_by))
    rows = [row for row in rows if matches(residual, row)]
    rows.sort(key=source.base_key)
    return legacy_page(rows, source.fields, order_by, ascending, limit, page)


async def count(client: RestClient, source: Source, criteria: list[Criterion]) -> int:
    """How many rows match (REST has no generic count: page through ids, bounded)."""
    clauses, residual = server_params(source, criteria)
    params = _filter_params(clauses)
    props = source.want([c.field for c in residual])
    if props is not None:
        params.append(("fields", ",".join(props)))
    limit = SCAN_LIMIT if residual else COUNT_LIMIT
    rows = await scan(client, source, params, limit, _why(residual, None))
    return sum(1 for row in rows if matches(residual, row))


async def _direct(
    client: RestClient,
    tokens: PageTokens,
    source: Source,
    params: list[tuple[str, str]],
    rest_order: str,
    limit: int,
    page: int,
) -> list[Row]:
    params = [*params, ("order_by", rest_order), ("page_size", str(limit))]
    known = tokens.pages((client.account.name, source.path, tuple(params)))
    start = max(p for p in known if p <= page)
    if (page - start) * limit > COUNT_LIMIT:
        raise NoTranslation(
            f"DataService.query on {source.table}: page {page} of {limit} needs more than "
            f"{COUNT_LIMIT} records paged through over REST v2 (it pages by cursor); walk the "
            "pages in order, or narrow the query"
        )
    token = known[start]
    for number in range(start, page + 1):
        query = [*params, ("page_token", token)] if token else params
        data = await client.get(source.path, query)
        items = _items(data, source.items)
        following = str(data.get("next_page_token") or "") if isinstance(data, dict) else ""
        if following:
            known[number + 1] = following
        if number == page:
            return [source.row(item) for item in items]
        if not following or not items:
            return []
        token = following
    return []  # pragma: no cover - the loop always returns


async def scan(
    client: RestClient, source: Source, params: list[tuple[str, str]], limit: int, why: str
) -> list[Row]:
    """Every record REST lists for ``params``: at most ``limit``, else refused saying ``why``
    keyshim had to read them all."""
    rows: list[Row] = []
    token = ""
    while True:
        query = [*params, ("page_size", str(REST_PAGE))]
        if token:
            query.append(("page_token", token))
        data = await client.get(source.path, query)
        items = _items(data, source.items)
        rows.extend(source.row(item) for item in items)
        if len(rows) > limit:
            raise NoTranslation(
                f"{source.table}: this call would read more than {limit} records over REST v2 "
                f"({why}); add a criterion REST can filter on (an exact value, or a trailing % "
                "on a filterable field)"
            )
        token = str(data.get("next_page_token") or "") if isinstance(data, dict) else ""
        if not token or not items:
            return rows


def _why(residual: list[Criterion], order_by: str | None) -> str:
    """Why a scan is needed, for the refusal."""
    ops = {"like": "LIKE", "null": "~null~", "notnull": "~<>~null~", "=": "="}
    parts = [f"{c.field} {ops.get(c.op, c.op)} filtered by keyshim" for c in residual]
    if order_by is not None:
        parts.append(f"ordered by {order_by} in keyshim")
    return "; ".join(parts) or "counted by keyshim"


def _items(data: Any, key: str) -> list[dict[str, Any]]:
    items = data.get(key) if isinstance(data, dict) else None
    return [item for item in items or [] if isinstance(item, dict)]


def project(row: Row, names: list[str]) -> Row:
    """The requested fields that have a value, in the order asked (legacy answers)."""
    return {name: row[name] for name in names if row.get(name) is not None and row[name] != ""}
