"""``GET /discounts/products/{discount_id}`` (SDK ``ProductDiscount``) over the product total
discounts ``DiscountService.getProductTotalDiscount`` reads on the XML-RPC side (commerce.py).
No criteria are simulated: ``criteria`` is always empty."""

from __future__ import annotations

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.rest.http import Call, missing
from shim.simulator.rest.orders import strip


def get_product_discount(call: Call) -> Answer:
    discount_id = call.path_id("discount_id", "discount")
    row = call.db.commerce.product_discounts.get(discount_id)
    if row is None:
        raise missing("discount", discount_id)
    body = strip(
        {
            "id": row["Id"],
            "name": row.get("Name"),
            "description": row.get("Description"),
            "apply_to_commissions": row.get("ApplyToCommission") == 1,
            "product_id": row.get("ProductId"),
            "discount_type": "PERCENT" if row.get("PercentOrAmt") == 1 else "AMOUNT",
            "discount_value": row.get("Amt"),
        }
    )
    return json_answer(200, {**body, "criteria": []})
