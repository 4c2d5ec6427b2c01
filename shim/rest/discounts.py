"""``DiscountService.getProductTotalDiscount`` over ``GET /discounts/products/{id}`` (SDK
``ProductDiscount``).

Legacy answered a struct of the discount. Its keys are unverified: Keap's reference shows the
answer of the sibling ``getFreeTrial``, keyed by the parameter names of ``addFreeTrial``, so this
answer is keyed by ``addProductTotalDiscount``'s: ``name``, ``description``,
``applyDiscountToCommission`` (0/1), ``productId``, ``percentOrAmt`` (1 percent, 0 amount, as
that method documents) and ``amt``, typed as that method takes them (int flags and ids, a
double amount). Empty values are left out, as legacy structs leave them. REST's ``criteria``
(promo codes, date ranges, quantities) have no place in it.
"""

from __future__ import annotations

from typing import Any

from shim.errors import NotFound
from shim.rest.context import Ctx
from shim.rest.orders import number
from shim.xmlrpc import Value

#: ProductDiscount ``discount_type`` -> legacy ``percentOrAmt``.
PERCENT_OR_AMOUNT = {"PERCENT": 1, "AMOUNT": 0}


async def get_product_total_discount(ctx: Ctx, discount_id: int) -> Value:
    if discount_id < 1:
        raise NotFound()
    found = await ctx.client.get(f"/discounts/products/{discount_id}")
    return product_discount(found if isinstance(found, dict) else {})


def product_discount(discount: dict[str, Any]) -> dict[str, Value]:
    """A ``ProductDiscount`` as the legacy struct (see the module docstring)."""
    value = discount.get("discount_value")
    apply = discount.get("apply_to_commissions")
    out: dict[str, Value] = {
        "name": discount.get("name"),
        "description": discount.get("description"),
        "applyDiscountToCommission": None if apply is None else int(apply is True),
        "productId": number(discount.get("product_id")),
        "percentOrAmt": PERCENT_OR_AMOUNT.get(str(discount.get("discount_type"))),
        "amt": float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else None,
    }
    return {k: v for k, v in out.items() if v is not None and v != ""}
