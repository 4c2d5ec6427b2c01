"""The DataService table ProductCategoryAssign over REST v2's product-category assignments.

REST keeps, per category, the list of its product ids: ``GET
/productCategories/assignedProducts`` (``assigned_product_categories[{product_category_id,
product_ids}]``, filters ``product_category_ids`` and ``product_ids``) reads them, and ``POST
/productCategories/{id}:assignProducts {product_ids}`` replaces a category's list whole ("any
IDs omitted are removed"). One legacy row per (category, product).

REST has no assignment record, so no id. keyshim's legacy ``Id`` is a stand-in computed from
the pair, ``ProductCategoryId * 100000 + ProductId`` (category 3, product 21: 300021): the
same for the same pair on every call, and decodable, so ``load`` and ``delete`` by Id work.
It is not the number Keap's legacy API gave the row (a script that stored those must look
the rows up again); a product id of 100000 or more has no stand-in (the row has no Id, and
adding it is refused). Adding a pair the category already holds changes nothing and answers
its Id (legacy stored a second row). A write reads the category's list, changes it and sends
it back, under a lock on the category (keyshim's own concurrent writes never undo each
other), then reads it again and retries if another client's write replaced it meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shim.errors import DatabaseError, NotFound, NoTranslation
from shim.rest import criteria as crit
from shim.rest import legacy
from shim.rest.commerce_tables import exact_id
from shim.rest.context import Ctx
from shim.rest.listing import REST_PAGE, SCAN_LIMIT, Row, prepare, project
from shim.rest.spec import Column, TableSpec
from shim.xmlrpc import Value

log = logging.getLogger("shim.rest")

TABLE = "ProductCategoryAssign"
#: The stand-in Id is ProductCategoryId * ID_BASE + ProductId.
ID_BASE = 100_000
#: Read-change-write attempts before keyshim gives up with [DatabaseError].
ATTEMPTS = 3
_LIST = "/productCategories/assignedProducts"


def legacy_id(category: int, product: int) -> int | None:
    """The stand-in Id of a pair (None when the product id is too large to encode)."""
    return category * ID_BASE + product if 0 < product < ID_BASE and category > 0 else None


def pair_of(record_id: int) -> tuple[int, int] | None:
    """The (category, product) a stand-in Id names, or None."""
    category, product = divmod(record_id, ID_BASE)
    return (category, product) if category > 0 and product > 0 else None


def _number(value: Any) -> int | None:
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else None


@dataclass(frozen=True)
class CategoryAssign(TableSpec):
    """ProductCategoryAssign; see the module docstring."""

    async def _rows(self, ctx: Ctx, compiled: list[crit.Criterion]) -> list[Row]:
        """Every row REST lists for the exact criteria (a superset of the matches)."""
        category = exact_id(compiled, "ProductCategoryId")
        product = exact_id(compiled, "ProductId")
        record = exact_id(compiled, "Id")
        if record is not None:
            named = pair_of(record)
            if named is None:
                return []
            category = category if category is not None else named[0]
            product = product if product is not None else named[1]
        clauses = [f"product_category_ids=={category}"] if category is not None else []
        clauses += [f"product_ids=={product}"] if product is not None else []
        params = [("filter", ";".join(clauses))] if clauses else []
        rows: list[Row] = []
        token = ""
        while True:
            query = [*params, ("page_size", str(REST_PAGE))]
            answer = await ctx.client.get(_LIST, query + ([("page_token", token)] if token else []))
            items = answer.get(self.items) if isinstance(answer, dict) else None
            for item in items or []:
                if isinstance(item, dict):
                    rows.extend(self._expand(item))
            if len(rows) > SCAN_LIMIT:
                raise NoTranslation(
                    f"{TABLE}: this call would read more than {SCAN_LIMIT} assignments over "
                    "REST v2; give an exact ProductCategoryId or ProductId"
                )
            token = str(answer.get("next_page_token") or "") if isinstance(answer, dict) else ""
            if not token or not items:
                return rows

    def _expand(self, item: Mapping[str, Any]) -> list[Row]:
        category = _number(item.get("product_category_id"))
        if category is None:
            return []
        out: list[Row] = []
        for raw in item.get("product_ids") or []:
            product = _number(raw)
            if product is not None:
                row: Row = {"ProductCategoryId": category, "ProductId": product}
                out.append({"Id": legacy_id(category, product), **row})
        return out

    async def _matching(self, ctx: Ctx, compiled: list[crit.Criterion]) -> list[Row]:
        rows = [r for r in await self._rows(ctx, compiled) if crit.matches(compiled, r)]
        unique = {(r["ProductCategoryId"], r["ProductId"]): r for r in rows}
        return sorted(unique.values(), key=lambda r: (r["ProductCategoryId"], r["ProductId"]))

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
        compiled, limit = prepare(self.table, self.fields, limit, page, criteria, names, order_by)
        rows = await self._matching(ctx, compiled)
        shown = crit.legacy_page(rows, self.fields, order_by, ascending, limit, page)
        return [project(row, names) for row in shown]

    async def count(self, ctx: Ctx, criteria: Mapping[str, Value]) -> int:
        return len(await self._matching(ctx, crit.compile_query(self.table, self.fields, criteria)))

    async def load(self, ctx: Ctx, record_id: int, names: list[str]) -> Value:
        legacy.check_fields(self.table, self.fields, names)
        rows = await self.query(ctx, 1, 0, {"Id": record_id}, names, None, True)
        if pair_of(record_id) is None or not isinstance(rows, list) or not rows:
            raise NotFound()
        return rows[0]

    async def add(self, ctx: Ctx, data: Mapping[str, Value]) -> int:
        self._check_write("add")
        values = legacy.writable(self.table, self.fields, dict(data))
        category, product = values.get("ProductCategoryId"), values.get("ProductId")
        if not isinstance(category, int) or not isinstance(product, int):
            raise NoTranslation(
                f"{TABLE}: REST v2 assigns a product to a category; give both a "
                "ProductCategoryId and a ProductId"
            )
        record_id = legacy_id(category, product)
        if record_id is None:
            raise NoTranslation(
                f"{TABLE}: keyshim's stand-in Id (ProductCategoryId * {ID_BASE} + ProductId) "
                f"needs ids from 1 and a ProductId below {ID_BASE}"
            )
        await self._change(ctx, category, lambda ids: None if product in ids else [*ids, product])
        return record_id

    async def update(self, ctx: Ctx, record_id: int, data: Mapping[str, Value]) -> int:
        legacy.writable(self.table, self.fields, dict(data))
        raise NoTranslation(
            f"DataService.update on table {TABLE} has no REST v2 translation (REST v2 keeps "
            "no assignment to change: delete the row and add the new pair)"
        )

    async def delete(self, ctx: Ctx, record_id: int) -> bool:
        self._check_write("delete")
        named = pair_of(record_id)
        if named is None:
            raise NotFound()
        category, product = named

        tries = 0

        def without(ids: list[int]) -> list[int] | None:
            nonlocal tries
            tries += 1
            if product not in ids:
                if tries == 1:
                    raise NotFound()
                return None  # a retry: our first write took it out already
            return [i for i in ids if i != product]

        await self._change(ctx, category, without)
        return True

    async def _products(self, ctx: Ctx, category: int) -> list[int]:
        """The category's product ids, in REST's order."""
        compiled = crit.compile_query(self.table, self.fields, {"ProductCategoryId": category})
        rows = await self._rows(ctx, compiled)
        found = [r["ProductId"] for r in rows if r["ProductCategoryId"] == category]
        return [p for p in dict.fromkeys(found) if isinstance(p, int)]

    async def _change(
        self, ctx: Ctx, category: int, change: Callable[[list[int]], list[int] | None]
    ) -> None:
        """Read the category's list, ``change`` it (None: nothing to do), write it whole."""
        async with ctx.lock(f"rest-category:{ctx.account}:{category}"):
            for attempt in range(1, ATTEMPTS + 1):
                new = change(await self._products(ctx, category))
                if new is None:
                    return
                body = {"product_ids": [str(p) for p in new]}
                path = f"/productCategories/{category}:assignProducts"
                await ctx.client.json("POST", path, json_body=body)
                if sorted(await self._products(ctx, category)) == sorted(new):
                    return
                log.warning(
                    "category %s of %s changed while keyshim wrote it (attempt %d); retrying",
                    category,
                    ctx.account,
                    attempt,
                )
        raise DatabaseError(
            f"Product category {category} kept changing while keyshim wrote it through REST v2 "
            f"({ATTEMPTS} attempts); the last write may have been overwritten"
        )


PRODUCT_CATEGORY_ASSIGN = CategoryAssign(
    TABLE,
    _LIST,
    "assigned_product_categories",
    {
        "Id": Column("int", None, writable=False,
                     note=f"stand-in: ProductCategoryId * {ID_BASE} + ProductId (REST has no "
                     "assignment id)"),
        "ProductCategoryId": Column("int", "product_category_id", filter="product_category_ids"),
        "ProductId": Column("int", "product_ids", filter="product_ids",
                            note="one legacy row per product of a category"),
    },
    item="/productCategories/{ProductCategoryId}:assignProducts",
    writes=frozenset({"add", "delete"}),
    notes="one row per product of each category; Id is a stand-in (ProductCategoryId * "
    f"{ID_BASE} + ProductId), not legacy's row id; add and delete read the category's list and "
    "write it back whole (POST :assignProducts); adding a pair already there adds no second "
    "row; rows come ordered by category, then product; update is refused (delete, then add)",
    fidelity="approximate",
)  # fmt: skip
