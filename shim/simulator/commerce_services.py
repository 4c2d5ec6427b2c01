"""The legacy InvoiceService and OrderService methods the simulator answers.

Each runs the shared operations of commerce.py, so REST v2 sees what they did. Answer shapes
(docs/keap.md; where no source shows them, marked unverified):

* ``createBlankOrder`` -> the new *invoice* id (not the order id), ``getOrderId`` maps back.
* ``chargeInvoice`` -> ``{Successful, Code, RefNum, Message}``: a decline is this struct with
  ``Successful`` false and ``Code`` ``DECLINED``, never a fault; nothing owed is ``SKIPPED``.
* ``placeOrder`` -> ``{Successful, Code, RefNum, Message, OrderId, InvoiceId}``, every value a
  string (unverified: the Java service returned a map of strings).
* ``getPayments`` -> the invoice's Payment rows (fields with a value).
"""

from __future__ import annotations

import datetime
from typing import Any

from shim.simulator.commerce import DECLINE_MESSAGE, MERCHANT_ID, stock
from shim.simulator.data import to_datetime
from shim.simulator.faults import not_found
from shim.simulator.query import project
from shim.simulator.services import Context, method
from shim.xmlrpc import Value

#: The Payment fields ``getPayments`` answers with (those with a value).
PAYMENT_FIELDS = ["Id", "PayDate", "PayAmt", "PayType", "ContactId", "PayNote", "InvoiceId"]


def _day(value: datetime.datetime) -> datetime.datetime:
    return value.replace(tzinfo=None, microsecond=0)


@method("InvoiceService.createBlankOrder", "isdii")
def create_blank_order(
    ctx: Context, contact_id: int, description: str, when: Any, lead: int, sale: int
) -> int:
    now = to_datetime(ctx.now)
    contacts = ctx.db.tables["Contact"]
    return ctx.db.commerce.create_order(
        contact_id, description, _day(when), lead, sale, now, contacts
    )


@method("InvoiceService.addOrderItem", "iiifiss")
def add_order_item(
    ctx: Context,
    invoice_id: int,
    product_id: int,
    item_type: int,
    price: float,
    quantity: int,
    description: str,
    notes: str,
) -> bool:
    now = to_datetime(ctx.now)
    ctx.db.commerce.add_item(
        invoice_id, product_id, item_type, float(price), quantity, None, description, notes, now
    )
    return True


@method("InvoiceService.addManualPayment", "ifdssb")
def add_manual_payment(
    ctx: Context, invoice_id: int, amount: float, when: Any, pay_type: str, note: str, skip: bool
) -> bool:
    """Any payment type is accepted (REST v2 accepts only the app's configured ones)."""
    now = to_datetime(ctx.now)
    ctx.db.commerce.add_payment(invoice_id, float(amount), _day(when), pay_type, note, skip, now)
    return True


@method("InvoiceService.chargeInvoice", "isiib")
def charge_invoice(
    ctx: Context, invoice_id: int, notes: str, card_id: int, merchant_id: int, skip: bool
) -> Value:
    return _charge(ctx, invoice_id, notes, card_id, skip, merchant_id)


def _charge(
    ctx: Context, invoice_id: int, notes: str, card_id: int, skip: bool, merchant_id: int = 0
) -> dict[str, Value]:
    """``merchant_id`` 0: the app's merchant account (legacy let a call name another)."""
    code, _, payment_id = ctx.db.commerce.charge(
        invoice_id, notes, card_id, skip, to_datetime(ctx.now), merchant_id or MERCHANT_ID
    )
    if code == "APPROVED":
        return {"Successful": True, "Code": code, "RefNum": f"T{payment_id}", "Message": "Approved"}
    if code == "DECLINED":
        return {"Successful": False, "Code": code, "RefNum": "", "Message": DECLINE_MESSAGE}
    return {"Successful": False, "Code": code, "RefNum": "", "Message": "Nothing is owed"}


@method("InvoiceService.calculateAmountOwed", "i")
def calculate_amount_owed(ctx: Context, invoice_id: int) -> float:
    return ctx.db.commerce.owed(invoice_id)


@method("InvoiceService.getPayments", "i")
def get_payments(ctx: Context, invoice_id: int) -> Value:
    ctx.db.commerce.invoice(invoice_id)
    return [project(row, PAYMENT_FIELDS) for row in ctx.db.commerce.payments_of(invoice_id)]


@method("InvoiceService.deleteInvoice", "i")
def delete_invoice(ctx: Context, invoice_id: int) -> bool:
    ctx.db.commerce.delete_invoice(invoice_id)
    return True


@method("InvoiceService.getOrderId", "i")
def get_order_id(ctx: Context, invoice_id: int) -> int:
    job_id = ctx.db.commerce.invoice(invoice_id)["JobId"]
    assert isinstance(job_id, int)
    return job_id


@method("InvoiceService.addRecurringOrder", "ibiiiii")
def add_recurring_order(
    ctx: Context,
    contact_id: int,
    allow_duplicate: bool,
    plan_id: int,
    merchant_id: int,
    card_id: int,
    affiliate_id: int,
    days_till_charge: int,
) -> int:
    now = to_datetime(ctx.now)
    start = (now + datetime.timedelta(days=days_till_charge)).replace(hour=0, minute=0, second=0)
    return ctx.db.commerce.add_subscription(
        contact_id,
        allow_duplicate,
        plan_id,
        card_id,
        affiliate_id,
        start,
        now,
        ctx.db.tables["Contact"],
        merchant_id,
    )


@method("InvoiceService.createInvoiceForRecurring", "i")
def create_invoice_for_recurring(ctx: Context, recurring_id: int) -> int:
    now = to_datetime(ctx.now)
    return ctx.db.commerce.invoice_subscription(recurring_id, now, ctx.db.tables["Contact"])


@method("InvoiceService.updateJobRecurringNextBillDate", "id")
def update_next_bill_date(ctx: Context, recurring_id: int, when: Any) -> bool:
    ctx.db.commerce.set_next_bill_date(recurring_id, when, to_datetime(ctx.now))
    return True


@method("ProductService.getInventory", "i")
def get_inventory(ctx: Context, product_id: int) -> int:
    row = ctx.db.tables["Product"].get(product_id)
    if row is None:
        raise not_found()
    return stock(row)


@method("InvoiceService.addPaymentPlan", "ibiiiifddii")
def add_payment_plan(
    ctx: Context,
    invoice_id: int,
    auto_charge: bool,
    card_id: int,
    merchant_id: int,
    days_between_retry: int,
    max_retry: int,
    initial_amount: float,
    initial_date: Any,
    start_date: Any,
    payments: int,
    days_between: int,
) -> bool:
    plan = {
        "auto_charge": bool(auto_charge),
        "max_charge_attempts": max_retry,
        "days_between_retries": days_between_retry,
        "initial_payment_amount": float(initial_amount),
        "initial_payment_date": initial_date.strftime("%Y-%m-%d"),
        "plan_start_date": start_date.strftime("%Y-%m-%d"),
        "number_of_payments": payments,
        "days_between_payments": days_between,
    }
    ctx.db.commerce.set_pay_plan(invoice_id, card_id, plan)
    return True


@method("DiscountService.getProductTotalDiscount", "i")
def get_product_total_discount(ctx: Context, discount_id: int) -> Value:
    """Keyed by addProductTotalDiscount's parameters (unverified; Keap documents only the
    sibling getFreeTrial's answer, keyed so), empty values left out."""
    row = ctx.db.commerce.product_discount(discount_id)
    out: dict[str, Value] = {
        "name": row.get("Name"),
        "description": row.get("Description"),
        "applyDiscountToCommission": row.get("ApplyToCommission"),
        "productId": row.get("ProductId"),
        "percentOrAmt": row.get("PercentOrAmt"),
        "amt": row.get("Amt"),
    }
    return {k: v for k, v in out.items() if v is not None and v != ""}


@method("ProductService.deactivateCreditCard", "i")
def deactivate_credit_card(ctx: Context, card_id: int) -> bool:
    ctx.db.commerce.deactivate_card(card_id)
    return True


@method("OrderService.placeOrder", "iiiAAbA", "iiiAAbAii")
def place_order(
    ctx: Context,
    contact_id: int,
    card_id: int,
    pay_plan_id: int,
    product_ids: list[Any],
    plan_ids: list[Any],
    process_specials: bool,
    promo_codes: list[Any],
    lead: int = 0,
    sale: int = 0,
) -> Value:
    """An order with one of each product (at its price), then the card charged for it."""
    now = to_datetime(ctx.now)
    commerce = ctx.db.commerce
    invoice_id = commerce.create_order(
        contact_id, "Order", now, lead, sale, now, ctx.db.tables["Contact"], "Online"
    )
    for product_id in product_ids:
        commerce.add_item(invoice_id, int(product_id), 4, None, 1, None, None, None, now)
    result: dict[str, Value] = {"Successful": True, "Code": "SKIPPED", "RefNum": "", "Message": ""}
    if card_id:
        result = _charge(ctx, invoice_id, "", card_id, False)
    job_id = commerce.invoice(invoice_id)["JobId"]
    out: dict[str, Value] = {
        k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in result.items()
    }
    return {**out, "OrderId": str(job_id), "InvoiceId": str(invoice_id)}
