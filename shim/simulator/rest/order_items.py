"""One order item as REST v2 serves it: ``GET`` and ``PATCH /orders/{order_id}/items/
{order_item_id}`` (SDK ``OrderItem``, ``UpdateOrderItemRequest``), over the ``OrderItem`` rows
``DataService.update('OrderItem', ...)`` changes on the XML-RPC side (``Commerce.update_line``:
the invoice line and totals follow either way).

An item is found under its order only: an item id on another order is a 404, as a nested
resource is. UpdateOrderItemRequest has no ``item_type`` (an item keeps its type) and no order
(an item cannot move). Its checks are the SDK's field descriptions: texts not whitespace (null
clears), a quantity of at least 1, ids that exist, money as numbers; ``update_mask`` limits the
properties applied (absent: every one sent).
"""

from __future__ import annotations

from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.data import Row, to_datetime
from shim.simulator.rest.http import Call, bad, check_keys, missing, parse_id
from shim.simulator.rest.orders import find_order, item_json

#: UpdateOrderItemRequest's properties -> the OrderItem column each sets.
UPDATE_ITEM_COLUMNS = {
    "name": "ItemName",
    "description": "ItemDescription",
    "notes": "Notes",
    "quantity": "Qty",
    "product_id": "ProductId",
    "subscription_plan_id": "SubscriptionPlanId",
    "price_per_unit": "PPU",
    "cost_per_unit": "CPU",
}
#: Properties the simulator accepts but does not keep (no legacy column).
_IGNORED = frozenset({"subscription_plan_description"})


def _find_item(call: Call) -> Row:
    job = find_order(call)
    item_id = call.path_id("order_item_id", "order item")
    item = call.db.tables["OrderItem"].get(item_id)
    if item is None or item.get("OrderId") != job["Id"]:
        raise missing("order item", item_id)
    return item


def get_item(call: Call) -> Answer:
    return json_answer(200, item_json(call, _find_item(call)))


def _value(call: Call, prop: str, value: Any) -> Any:
    if prop in ("name", "description", "notes"):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise bad(f"{prop} must not be whitespace", prop)
        return value
    if prop == "quantity":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad("quantity must be an integer of at least 1", prop)
        return value
    if prop in ("price_per_unit", "cost_per_unit"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise bad(f"{prop} must be a number", prop)
        return float(value)
    if value is None or value == "":
        return None
    table = "Product" if prop == "product_id" else "SubscriptionPlan"
    found = parse_id(value, prop.removesuffix("_id"))
    if found not in call.db.tables[table]:
        raise missing(prop.removesuffix("_id").replace("_", " "), found)
    return found


def update_item(call: Call) -> Answer:
    """PATCH -> 200 ``OrderItem``; nothing is written unless every property passes."""
    item = _find_item(call)
    data = call.body()
    allowed = frozenset(UPDATE_ITEM_COLUMNS) | _IGNORED
    check_keys(data, allowed, "order item")
    mask = call.args("update_mask")
    names = list(data) if mask is None else [n for m in mask for n in m.split(",") if n]
    check_keys(dict.fromkeys(names), allowed, "update_mask")
    values: Row = {}
    for prop in names:
        if prop in UPDATE_ITEM_COLUMNS:
            values[UPDATE_ITEM_COLUMNS[prop]] = _value(call, prop, data.get(prop))
    item_id = int(item["Id"])  # type: ignore[arg-type]
    call.db.commerce.update_line(item_id, values, to_datetime(call.now))
    return json_answer(200, item_json(call, call.db.tables["OrderItem"][item_id]))
