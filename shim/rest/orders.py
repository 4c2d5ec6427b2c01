"""InvoiceService and OrderService through REST v2 ``/orders``, ``/subscriptions``...

Legacy speaks in *invoice* ids; REST in *order* ids, a different number (``OrderV2.id`` vs
``OrderV2.invoice_id``). An invoice id is resolved with ``GET /orders?filter=invoice_id==N``
and the answer cached per account (``RestState.orders``), so a script adding five items to
one invoice costs one lookup, not five. A cached order that has gone answers 404, which is
the legacy ``[RecordNotFound]`` too.

Money: legacy doubles are dollars; REST ``CurrencyValue.amount`` is minor units (cents) and
request ``price_per_unit``/``payment_amount`` are floats of dollars (SDK models). Amounts are
read back as ``amount / 100``, exact for two decimals.

Checks legacy made before touching anything (an unknown item type, a quantity below 1, a
product item without a product) are made here with legacy's wording, so a bad call costs no
REST request. Credit card ids are legacy ``CreditCard.Id``: REST charges a *payment method*,
found by ``GET /paymentMethods?filter=credit_card_id==N;contact_id==C``.
"""

from __future__ import annotations

import datetime
from typing import Any

from shim.errors import InvalidParameter, NotFound
from shim.rest.context import Ctx
from shim.xmlrpc import Value

#: Legacy order item types -> REST ``item_type`` (docs/keap.md#services). 5 (upsell) and 8
#: (program) have no create type of their own: they read back as 4 and 3.
ITEM_TYPES: dict[int, str] = {
    1: "SHIPPING",
    2: "TAX",
    3: "OTHER",
    4: "PRODUCT",
    5: "PRODUCT",
    6: "FINANCE_CHARGE",
    7: "DISCOUNT",
    8: "OTHER",
    9: "SUBSCRIPTION",
    10: "DISCOUNT_FREE_TRIAL",
    11: "DISCOUNT_ORDER_TOTAL",
    12: "DISCOUNT_PRODUCT",
    13: "DISCOUNT_PRODUCT_CATEGORY",
    14: "DISCOUNT_SHIPPING",
}
#: REST item types -> the legacy number (SERVICE, UPSELL, PROGRAM are read-only REST types).
LEGACY_ITEM_TYPES: dict[str, int] = {
    **{name: n for n, name in sorted(ITEM_TYPES.items(), reverse=True)},
    **{"PRODUCT": 4, "OTHER": 3, "SERVICE": 3, "UPSELL": 5, "PROGRAM": 8, "FEE": 3, "TIP": 3},
}
#: The title ``placeOrder`` gives its orders (legacy named them so; unverified).
PLACED_TITLE = "Order"
#: ``Code`` of chargeInvoice/placeOrder results.
APPROVED, DECLINED, SKIPPED = "APPROVED", "DECLINED", "SKIPPED"
NOTHING_OWED = "Nothing is owed"
#: Most invoice -> order pairs kept (all accounts together).
CACHE_SIZE = 100_000
_UTC = datetime.timezone.utc


def rest_time(value: datetime.datetime) -> str:
    """A legacy (naive, UTC) dateTime as REST's ISO-8601 time."""
    return value.replace(tzinfo=None, microsecond=0).isoformat() + ".000Z"


def parse_time(text: Any) -> datetime.datetime | None:
    """REST's ISO-8601 time as a legacy naive UTC dateTime (whole seconds)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def dollars(currency: Any) -> float:
    """A ``CurrencyValue`` (minor units) as a legacy double."""
    amount = currency.get("amount") if isinstance(currency, dict) else None
    return amount / 100 if isinstance(amount, int) and not isinstance(amount, bool) else 0.0


def minor(currency: Any) -> int:
    amount = currency.get("amount") if isinstance(currency, dict) else None
    return amount if isinstance(amount, int) and not isinstance(amount, bool) else 0


def number(value: Any) -> int | None:
    """A REST id (a string of digits) as a legacy int."""
    text = "" if value is None else str(value)
    return int(text) if text.isdigit() else None


# --- invoice -> order ------------------------------------------------------------------


async def order_id(ctx: Ctx, invoice_id: int) -> str:
    """The REST order id of a legacy invoice id (cached); unknown: ``[RecordNotFound]``."""
    key = (ctx.account, invoice_id)
    cached = ctx.state.orders.get(key)
    if cached is not None:
        return cached
    order = await _find_order(ctx, invoice_id)
    return str(order["id"])


async def _find_order(ctx: Ctx, invoice_id: int) -> dict[str, Any]:
    if invoice_id < 1:
        raise NotFound()
    params = [("filter", f"invoice_id=={invoice_id}"), ("page_size", "1")]
    answer = await ctx.client.get("/orders", params)
    orders = answer.get("orders") if isinstance(answer, dict) else None
    found = [o for o in orders or [] if isinstance(o, dict) and o.get("id")]
    if not found or number(found[0].get("invoice_id")) != invoice_id:
        raise NotFound()
    remember(ctx, invoice_id, str(found[0]["id"]))
    return found[0]


def remember(ctx: Ctx, invoice_id: int, rest_order_id: str) -> None:
    """Cache invoice -> order (ids never change in Keap); the oldest go past CACHE_SIZE."""
    cache = ctx.state.orders
    cache[(ctx.account, invoice_id)] = rest_order_id
    while len(cache) > CACHE_SIZE:
        del cache[next(iter(cache))]


def remember_items(ctx: Ctx, order: dict[str, Any]) -> None:
    """Cache item -> order for every item of a REST order (an ``OrderV2``)."""
    order_id = order.get("id")
    if order_id is None:
        return
    for item in order.get("order_items") or []:
        if isinstance(item, dict):
            remember_item(ctx, item.get("id"), str(order_id))


def remember_item(ctx: Ctx, item_id: Any, order_id: str) -> None:
    """Cache order item -> order (order_items.py: REST writes an item through its order; an
    item never moves and its id is never reused); the oldest go past CACHE_SIZE."""
    found = number(item_id)
    if found is None:
        return
    cache = ctx.state.order_items
    cache[(ctx.account, found)] = order_id
    while len(cache) > CACHE_SIZE:
        del cache[next(iter(cache))]


async def load_order(ctx: Ctx, invoice_id: int) -> dict[str, Any]:
    """The whole order of an invoice: one request when the order id is cached."""
    cached = ctx.state.orders.get((ctx.account, invoice_id))
    if cached is None:
        return await _find_order(ctx, invoice_id)
    try:
        order = await ctx.client.get(f"/orders/{cached}")
    except NotFound:
        ctx.state.orders.pop((ctx.account, invoice_id), None)
        raise
    return order if isinstance(order, dict) else {}


async def payment_method(ctx: Ctx, card_id: int, contact_id: Any) -> str:
    """The REST payment method of a legacy credit card of this contact, else RecordNotFound."""
    if card_id < 1:
        raise NotFound()
    clauses = f"credit_card_id=={card_id}"
    if contact_id:
        clauses += f";contact_id=={contact_id}"
    answer = await ctx.client.get("/paymentMethods", [("filter", clauses)])
    methods = answer.get("payment_methods") if isinstance(answer, dict) else None
    for method in methods or []:
        if isinstance(method, dict) and method.get("payment_method_id"):
            return str(method["payment_method_id"])
    raise NotFound()


def _contact_of(order: dict[str, Any]) -> Any:
    contact = order.get("contact")
    return contact.get("id") if isinstance(contact, dict) else None


# --- InvoiceService ----------------------------------------------------------------------


async def create_blank_order(
    ctx: Ctx,
    contact_id: int,
    description: str,
    when: datetime.datetime,
    lead_affiliate: int,
    sale_affiliate: int,
) -> int:
    if contact_id < 1:
        raise NotFound()
    body: dict[str, Any] = {
        "contact_id": str(contact_id),
        "order_title": description,
        "order_time": rest_time(when),
        "order_type": "OFFLINE",
    }
    if lead_affiliate > 0:
        body["lead_affiliate_id"] = str(lead_affiliate)
    if sale_affiliate > 0:
        body["sales_affiliate_id"] = str(sale_affiliate)
    order = await ctx.client.json("POST", "/orders", json_body=body)
    invoice_id = number(order.get("invoice_id")) if isinstance(order, dict) else None
    if invoice_id is None:
        raise InvalidParameter("Keap created the order but sent no invoice id")
    remember(ctx, invoice_id, str(order["id"]))
    return invoice_id


def check_item(item_type: int, quantity: int, product_id: int) -> str:
    """Legacy's own checks of an order item; returns the REST item type."""
    rest_type = ITEM_TYPES.get(item_type)
    if rest_type is None:
        raise InvalidParameter(f"Invalid order item type: {item_type}")
    if quantity < 1:
        raise InvalidParameter("Quantity must be at least 1")
    if product_id < 1 and rest_type in ("PRODUCT", "SUBSCRIPTION"):
        raise InvalidParameter("A product item needs a product")
    return rest_type


def item_covered(args: list[Any]) -> bool:
    """Subscription items (type 9) need a plan id, which legacy addOrderItem never had."""
    return not (len(args) > 2 and args[2] == 9)


def item_why_not(args: list[Any]) -> str:
    return (
        " for item type 9 (a subscription item needs a plan id)" if not item_covered(args) else ""
    )


async def add_order_item(
    ctx: Ctx,
    invoice_id: int,
    product_id: int,
    item_type: int,
    price: float,
    quantity: int,
    description: str,
    notes: str,
) -> bool:
    rest_order = await order_id(ctx, invoice_id)
    rest_type = check_item(item_type, quantity, product_id)
    body: dict[str, Any] = {
        "quantity": quantity,
        "item_type": rest_type,
        "price_per_unit": float(price),
    }
    if product_id > 0:
        body["product_id"] = str(product_id)
    if description.strip():
        body["description"] = description
    if notes.strip():
        body["notes"] = notes
    item = await ctx.client.json("POST", f"/orders/{rest_order}/items", json_body=body)
    if isinstance(item, dict):
        remember_item(ctx, item.get("id"), rest_order)
    return True


async def add_manual_payment(
    ctx: Ctx,
    invoice_id: int,
    amount: float,
    when: datetime.datetime,
    pay_type: str,
    description: str,
    bypass_commissions: bool,
) -> bool:
    rest_order = await order_id(ctx, invoice_id)
    body: dict[str, Any] = {
        "payment_amount": float(amount),
        "payment_time": rest_time(when),
        "payment_method_type": pay_type,
        "apply_to_commissions": not bypass_commissions,
    }
    if description:
        body["notes"] = description
    await ctx.client.json("POST", f"/orders/{rest_order}/payments", json_body=body)
    return True


async def charge(
    ctx: Ctx, order: dict[str, Any], notes: str, card_id: int, bypass: bool
) -> dict[str, Value]:
    """Charge an order's balance to a legacy card; a decline is a result, never a fault."""
    method = await payment_method(ctx, card_id, _contact_of(order))
    balance = minor(order.get("total")) - minor(order.get("total_paid"))
    if balance <= 0:
        return {"Successful": False, "Code": SKIPPED, "RefNum": "", "Message": NOTHING_OWED}
    body: dict[str, Any] = {
        "payment_amount": balance / 100,
        "payment_method_id": method,
        "apply_to_commissions": not bypass,
    }
    if notes:
        body["notes"] = notes
    try:
        result = await ctx.client.json("POST", f"/orders/{order['id']}/payments", json_body=body)
    except InvalidParameter as refused:  # how Keap answers a decline is unknown: 4xx assumed
        return {"Successful": False, "Code": DECLINED, "RefNum": "", "Message": refused.message}
    result = result if isinstance(result, dict) else {}
    message = str(result.get("payment_status_message") or "")
    if any(word in message.lower() for word in ("declin", "fail", "error")):
        return {"Successful": False, "Code": DECLINED, "RefNum": "", "Message": message}
    reference = str(result.get("transaction_id") or "")
    return {"Successful": True, "Code": APPROVED, "RefNum": reference, "Message": message}


async def charge_invoice(
    ctx: Ctx, invoice_id: int, notes: str, card_id: int, merchant_id: int, bypass: bool
) -> Value:
    """``merchant_id`` cannot be chosen through REST: the payment method's merchant is used."""
    order = await load_order(ctx, invoice_id)
    return await charge(ctx, order, notes, card_id, bypass)


async def calculate_amount_owed(ctx: Ctx, invoice_id: int) -> float:
    order = await load_order(ctx, invoice_id)
    return (minor(order.get("total")) - minor(order.get("total_paid"))) / 100


async def get_payments(ctx: Ctx, invoice_id: int) -> Value:
    """The invoice's payments as legacy Payment rows, from ``/sales/payments`` (which carries
    the payment type the order's own payment list lacks)."""
    rest_order = await order_id(ctx, invoice_id)
    rows: list[tuple[int, dict[str, Value]]] = []
    token = ""
    while True:
        params = [("filter", f"order_id=={rest_order}"), ("page_size", "1000")]
        if token:
            params.append(("page_token", token))
        answer = await ctx.client.get("/sales/payments", params)
        items = answer.get("payments") if isinstance(answer, dict) else None
        for item in items or []:
            if isinstance(item, dict) and number(item.get("id")) is not None:
                rows.append((number(item["id"]) or 0, _payment_row(item, invoice_id)))
        token = str(answer.get("next_page_token") or "") if isinstance(answer, dict) else ""
        if not token or not items:
            break
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])]


def _payment_row(item: dict[str, Any], invoice_id: int) -> dict[str, Value]:
    amount = item.get("amount")
    row: dict[str, Value] = {
        "Id": number(item.get("id")),
        "PayDate": parse_time(item.get("payment_time")),
        "PayAmt": float(amount) if isinstance(amount, (int, float)) else None,
        "PayType": item.get("type"),
        "ContactId": number(item.get("contact_id")),
        "PayNote": item.get("note"),
        "InvoiceId": invoice_id,
    }
    return {k: v for k, v in row.items() if v is not None and v != ""}


async def delete_invoice(ctx: Ctx, invoice_id: int) -> bool:
    rest_order = await order_id(ctx, invoice_id)
    try:
        await ctx.client.json("DELETE", f"/orders/{rest_order}")
    finally:
        ctx.state.orders.pop((ctx.account, invoice_id), None)
    return True


async def get_order_id(ctx: Ctx, invoice_id: int) -> int:
    found = number(await order_id(ctx, invoice_id))
    if found is None:
        raise NotFound()
    return found


async def add_recurring_order(
    ctx: Ctx,
    contact_id: int,
    allow_duplicate: bool,
    plan_id: int,
    merchant_id: int,
    card_id: int,
    affiliate_id: int,
    days_till_charge: int,
) -> int:
    """``POST /subscriptions``; the first bill is Keap's today (``daysTillCharge`` 0 only)."""
    if contact_id < 1 or plan_id < 1:
        raise NotFound()
    body: dict[str, Any] = {
        "contact_id": str(contact_id),
        "subscription_plan_id": str(plan_id),
        "allow_duplicate": allow_duplicate,
    }
    if card_id > 0:
        body["payment_method_id"] = await payment_method(ctx, card_id, contact_id)
    if affiliate_id > 0:
        body["sale_affiliate_id"] = str(affiliate_id)
    answer = await ctx.client.json("POST", "/subscriptions", json_body=body)
    found = number(answer.get("id")) if isinstance(answer, dict) else None
    if found is None:
        raise InvalidParameter("Keap created the subscription but sent no id")
    return found


def recurring_covered(args: list[Any]) -> bool:
    """A first bill later than today needs keyshim's clock to agree with Keap's: refused."""
    return len(args) == 7 and args[6] == 0


def recurring_why_not(args: list[Any]) -> str:
    if len(args) != 7:
        return " in its 10-argument form (quantity, price, tax)"
    return " with daysTillCharge other than 0" if not recurring_covered(args) else ""


async def create_invoice_for_recurring(ctx: Ctx, recurring_id: int) -> int:
    if recurring_id < 1:
        raise NotFound()
    order = await ctx.client.json("POST", f"/subscriptions/{recurring_id}:invoice")
    invoice_id = number(order.get("invoice_id")) if isinstance(order, dict) else None
    if invoice_id is None:
        raise InvalidParameter("Keap created the invoice but sent no invoice id")
    remember(ctx, invoice_id, str(order["id"]))
    return invoice_id


async def update_next_bill_date(ctx: Ctx, recurring_id: int, when: Any) -> bool:
    """``InvoiceService.updateJobRecurringNextBillDate`` -> ``PATCH /subscriptions/{id}``
    with ``next_bill_date`` (a date: the time of day is dropped, as legacy did)."""
    if recurring_id < 1:
        raise NotFound()
    if not isinstance(when, datetime.datetime):
        raise InvalidParameter("nextBillDate must be a date")
    body = {"next_bill_date": when.strftime("%Y-%m-%d")}
    await ctx.client.json("PATCH", f"/subscriptions/{recurring_id}", json_body=body)
    return True


async def get_inventory(ctx: Ctx, product_id: int) -> int:
    """``ProductService.getInventory`` -> ``GET /products/{id}``: ``inventory.inventory_count``
    (absent: 0, as legacy answered for a product never stocked)."""
    if product_id < 1:
        raise NotFound()
    product = await ctx.client.json("GET", f"/products/{product_id}")
    inventory = product.get("inventory") if isinstance(product, dict) else None
    count = inventory.get("inventory_count") if isinstance(inventory, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


async def add_payment_plan(
    ctx: Ctx,
    invoice_id: int,
    auto_charge: bool,
    card_id: int,
    merchant_id: int,
    days_between_retry: int,
    max_retry: int,
    initial_amount: float,
    initial_date: datetime.datetime,
    start_date: datetime.datetime,
    payments: int,
    days_between: int,
) -> bool:
    """``InvoiceService.addPaymentPlan`` -> ``PATCH /orders/{id}`` with ``payment_plan``
    (UpdatedPaymentPlan); the card becomes its payment method. ``merchant_id`` cannot be
    chosen through REST (the payment method's merchant is used)."""
    order = await load_order(ctx, invoice_id)
    plan: dict[str, Any] = {
        "auto_charge": bool(auto_charge),
        "max_charge_attempts": max_retry,
        "days_between_retries": days_between_retry,
        "initial_payment_amount": float(initial_amount),
        "initial_payment_date": initial_date.strftime("%Y-%m-%d"),
        "plan_start_date": start_date.strftime("%Y-%m-%d"),
        "number_of_payments": payments,
        "days_between_payments": days_between,
    }
    if card_id:
        plan["payment_method_id"] = await payment_method(ctx, card_id, _contact_of(order))
    body = {"payment_plan": plan}
    path = f"/orders/{order['id']}"
    await ctx.client.json("PATCH", path, params=[("update_mask", "payment_plan")], json_body=body)
    return True


async def deactivate_credit_card(ctx: Ctx, card_id: int) -> bool:
    """``ProductService.deactivateCreditCard`` -> ``GET /paymentMethods?filter=
    credit_card_id==`` (for its contact and payment method id), then ``POST /contacts/{c}/
    paymentMethods/{pm}:deactivate``."""
    if card_id < 1:
        raise NotFound()
    answer = await ctx.client.get("/paymentMethods", [("filter", f"credit_card_id=={card_id}")])
    methods = answer.get("payment_methods") if isinstance(answer, dict) else None
    for method in methods or []:
        if (
            isinstance(method, dict)
            and method.get("payment_method_id")
            and method.get("contact_id")
        ):
            path = (
                f"/contacts/{method['contact_id']}/paymentMethods/"
                f"{method['payment_method_id']}:deactivate"
            )
            await ctx.client.json("POST", path)
            return True
    raise NotFound()


# --- OrderService.placeOrder -------------------------------------------------------------


def place_covered(args: list[Any]) -> bool:
    """Products only: pay plans, subscription plans and promo codes are not translated."""
    return len(args) >= 7 and args[2] == 0 and not args[4] and not args[6]


def place_why_not(args: list[Any]) -> str:
    if place_covered(args) or len(args) < 7:
        return ""
    given = {"a pay plan": args[2], "subscription plans": args[4], "promo codes": args[6]}
    parts = [name for name, value in given.items() if value]
    return " with " + " or ".join(parts)


async def place_order(
    ctx: Ctx,
    contact_id: int,
    card_id: int,
    pay_plan_id: int,
    product_ids: list[Any],
    plan_ids: list[Any],
    process_specials: bool,
    promo_codes: list[Any],
    lead_affiliate: int = 0,
    sale_affiliate: int = 0,
) -> Value:
    """Create the order with one of each product at its price, then charge the card."""
    if contact_id < 1:
        raise NotFound()
    items = []
    for product in product_ids:
        if not isinstance(product, (int, str)) or not str(product).isdigit():
            raise InvalidParameter(f"Invalid product id: {product!r}")
        items.append({"quantity": 1, "product_id": str(product), "item_type": "PRODUCT"})
    body: dict[str, Any] = {
        "contact_id": str(contact_id),
        "order_title": PLACED_TITLE,
        "order_time": rest_time(
            datetime.datetime.fromtimestamp(ctx.clock(), datetime.timezone.utc)
        ),
        "order_type": "ONLINE",
        "order_items": items,
    }
    if lead_affiliate > 0:
        body["lead_affiliate_id"] = str(lead_affiliate)
    if sale_affiliate > 0:
        body["sales_affiliate_id"] = str(sale_affiliate)
    order = await ctx.client.json("POST", "/orders", json_body=body)
    order = order if isinstance(order, dict) else {}
    invoice_id = number(order.get("invoice_id"))
    if invoice_id is not None:
        remember(ctx, invoice_id, str(order.get("id")))
    result: dict[str, Value] = {"Successful": True, "Code": SKIPPED, "RefNum": "", "Message": ""}
    if card_id:
        result = await charge(ctx, order, "", card_id, False)
    out: dict[str, Value] = {
        k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in result.items()
    }
    return {**out, "OrderId": str(order.get("id") or ""), "InvoiceId": str(invoice_id or "")}
