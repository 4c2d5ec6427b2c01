"""DataService add/update on ``OrderItem`` through REST v2's order items.

REST keeps an item under its order: ``POST /orders/{order_id}/items`` adds one and ``PATCH
/orders/{order_id}/items/{order_item_id}`` changes one, so every write needs the item's order.
An add names it (``OrderId``, the REST order id: legacy ``Job.Id``). An update names only the
item, so keyshim finds its order, cheapest first:

1. the item -> order cache (``RestState.order_items``), filled whenever keyshim sees an item:
   one it added (here or by ``InvoiceService.addOrderItem``), and every item of every order an
   ``OrderItem``/``InvoiceItem`` query read. Item ids never move between orders in REST and are
   never reused, so a cached pair stays right; a deleted item answers 404, RecordNotFound;
2. the ``OrderId`` the update gives, when that order holds the item (one GET);
3. the orders most recently modified first (``GET /orders?order_by=modification_time desc``),
   at most ``listing.SCAN_LIMIT`` of them: read until the item turns up. Not found in every
   order: ``[RecordNotFound]``, as legacy. More orders than that: ``[NoRestTranslation]`` asking
   for the ``OrderId`` (or a query of the item first), rather than an unbounded scan.

What REST cannot write is refused: a change of an item's type (UpdateOrderItemRequest has no
``item_type``; repeating the type it has is fine, at the cost of reading its order), a move to
another order, and a subscription line (type 9) without the ``SubscriptionPlanId`` REST
requires. Legacy's own item checks (a known type, a quantity of at least 1, a product on a
product line) are ``orders.check_item``'s, with its wording, made before any request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shim.errors import NotFound, NoTranslation
from shim.rest import listing
from shim.rest.context import Ctx
from shim.rest.orders import LEGACY_ITEM_TYPES, check_item, number, remember_item, remember_items
from shim.xmlrpc import Value

#: Legacy text fields REST refuses when blank ("must not be whitespace").
TEXTS = ("name", "description", "notes")
#: The table spec's legacy values -> REST body (``TableSpec.body``).
BodyOf = Callable[[Mapping[str, Value]], dict[str, Any]]


def _item_in(order: Any, item_id: int) -> dict[str, Any] | None:
    """Item ``item_id`` of a REST order, or None."""
    items = order.get("order_items") if isinstance(order, dict) else None
    found = (i for i in items or [] if isinstance(i, dict) and number(i.get("id")) == item_id)
    return next(found, None)


async def order_of_item(ctx: Ctx, item_id: int, hint: int | None) -> str:
    """The REST order holding item ``item_id`` (see the module docstring for the order of the
    attempts); unknown: ``[RecordNotFound]``."""
    cached = ctx.state.order_items.get((ctx.account, item_id))
    if cached is not None:
        return cached
    if hint is not None and hint > 0:
        try:
            order = await ctx.client.get(f"/orders/{hint}")
        except NotFound:
            order = None
        if isinstance(order, dict):
            remember_items(ctx, order)
            if _item_in(order, item_id) is not None:
                return str(hint)
    token, seen = "", 0
    while True:
        params = [("order_by", "modification_time desc"), ("page_size", str(listing.REST_PAGE))]
        if token:
            params.append(("page_token", token))
        answer = await ctx.client.get("/orders", params)
        orders = answer.get("orders") if isinstance(answer, dict) else None
        for order in orders or []:
            if isinstance(order, dict):
                remember_items(ctx, order)
                if _item_in(order, item_id) is not None:
                    return str(order.get("id"))
        seen += len(orders or [])
        token = str(answer.get("next_page_token") or "") if isinstance(answer, dict) else ""
        if not token or not orders:
            raise NotFound()
        if seen >= listing.SCAN_LIMIT:
            raise NoTranslation(
                f"OrderItem {item_id}: REST v2 changes an item through its order, and it is not "
                f"in the {seen} most recently modified orders; give its OrderId in the update"
            )


def _texts(body: dict[str, Any]) -> dict[str, Any]:
    """Blank texts (REST refuses whitespace) become null: left out of an add, cleared by an
    update."""
    return {
        k: (None if k in TEXTS and isinstance(v, str) and not v.strip() else v)
        for k, v in body.items()
    }


def _line(values: Mapping[str, Value]) -> tuple[int, int, int]:
    def whole(name: str) -> int:
        value = values.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return whole("ItemType") or 4, whole("Qty"), whole("ProductId")


async def add(ctx: Ctx, values: dict[str, Value], body_of: BodyOf) -> int:
    """``POST /orders/{OrderId}/items``; ``body_of`` is the table spec's legacy -> REST body
    (values already checked as legacy checked them). Returns the new item's id."""
    item_type, quantity, product = _line(values)
    rest_type = check_item(item_type, quantity, product)  # the item's checks, then its order
    if rest_type == "SUBSCRIPTION" and not values.get("SubscriptionPlanId"):
        raise NoTranslation(
            "OrderItem: REST v2 adds a subscription line (ItemType 9) only with its "
            "SubscriptionPlanId"
        )
    order = values.pop("OrderId", None)
    if not isinstance(order, int) or order < 1:
        raise NotFound()
    values["ItemType"] = item_type
    body = {k: v for k, v in _texts(body_of(values)).items() if v is not None}
    item = await ctx.client.json("POST", f"/orders/{order}/items", json_body=body)
    item_id = number(item.get("id")) if isinstance(item, dict) else None
    if item_id is None:
        raise NotFound("Keap REST answered without the new item's id")
    remember_item(ctx, item_id, str(order))
    return item_id


async def _type_of(ctx: Ctx, order: str, item_id: int) -> int | None:
    """The legacy type an item reads as now (an update may repeat it unchanged)."""
    item = _item_in(await ctx.client.get(f"/orders/{order}"), item_id)
    if item is None:
        raise NotFound()
    return LEGACY_ITEM_TYPES.get(str(item.get("item_type")))


async def update(ctx: Ctx, item_id: int, values: dict[str, Value], body_of: BodyOf) -> int:
    """``PATCH /orders/{order}/items/{item_id}`` with ``update_mask``; see the module
    docstring for how the order is found."""
    if item_id < 1:
        raise NotFound()
    hint = values.pop("OrderId", None)
    types = [values.pop("ItemType")] if "ItemType" in values else []
    body = _texts(body_of(values))
    order = await order_of_item(ctx, item_id, hint if isinstance(hint, int) else None)
    if isinstance(hint, int) and str(hint) != order:
        raise NoTranslation(
            f"OrderItem {item_id} is on order {order}: REST v2 cannot move an item to another order"
        )
    for wanted in types:
        if wanted != await _type_of(ctx, order, item_id):
            raise NoTranslation(
                "OrderItem.ItemType cannot be changed through REST v2 (an item keeps its type)"
            )
    if not body:
        return item_id
    params = [("update_mask", prop) for prop in body]
    path = f"/orders/{order}/items/{item_id}"
    try:
        await ctx.client.json("PATCH", path, params=params, json_body=body)
    except NotFound:
        ctx.state.order_items.pop((ctx.account, item_id), None)
        raise
    return item_id
