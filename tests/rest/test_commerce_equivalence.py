"""Equivalence of the commerce translations: InvoiceService, OrderService and the commerce
DataService tables give identical XML-RPC answers (values, types, faults) through route
``xmlrpc`` and route ``rest``. Each case states the type it expects, or the fault."""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shim.serve.runtime import init_files, open_store
from shim.settings import Settings
from shim.store.sqlite import SqliteStore
from tests.support.rest_pair import Fault, Pair, open_pair

pytestmark = pytest.mark.anyio

WHEN = datetime.datetime(2026, 3, 1, 10, 30, 0)
#: Seeded in the simulator: products 21 (12.50), 22 (99.00), plan 41 (of 22), affiliate 61,
#: cards 81 (approves) and 82 (declines), both of contact 1.
NOTEBOOK, COURSE, PLAN, AFFILIATE, CARD, DECLINING = 21, 22, 41, 61, 81, 82


@pytest.fixture
async def pair(settings: Settings, store: SqliteStore) -> AsyncIterator[Pair]:
    async with open_pair(replace(settings), store, {}) as p:
        yield p


async def _customer(pair: Pair) -> int:
    contact = await pair.same("ContactService.add", {"FirstName": "Ada", "Email": "a@ex.com"})
    assert contact == 1
    return int(contact)


NOT_FOUND = Fault(5, "RecordNotFound")
INVALID = Fault(12, "InvalidParameter")


def _line_expect(product: int, item_type: int, quantity: int) -> type | Fault:
    """What ``addOrderItem`` answers for a line on an existing invoice, checked in the order
    the simulated Keap checks it: the quantity, that the product exists, that a product line
    (type 4) names a product. Every item type ``LINE`` draws is a valid one."""
    if quantity < 1:
        return INVALID  # Quantity must be at least 1
    if product == 999:
        return NOT_FOUND  # no such product
    if product == 0 and item_type == 4:
        return INVALID  # A product item needs a product
    return bool


async def test_order_sync_session(pair: Pair) -> None:
    """What an order-sync script does: blank order, items, a manual payment, the balance,
    then the Invoice/OrderItem/Payment tables read back."""
    contact = await _customer(pair)
    invoice = await pair.same("InvoiceService.createBlankOrder", contact, "Web order", WHEN, 0, 0)
    assert isinstance(invoice, int) and invoice == 501  # an invoice id, not the order id
    order = await pair.same("InvoiceService.getOrderId", invoice)
    assert isinstance(order, int) and order == 1
    assert await pair.same("InvoiceService.addOrderItem", invoice, NOTEBOOK, 4, 12.5, 2, "NB", "")
    assert await pair.same("InvoiceService.addOrderItem", invoice, 0, 1, 4.95, 1, "Post", "x")
    assert await pair.same("InvoiceService.addOrderItem", invoice, 0, 2, 2.0, 1, "VAT", "")
    assert await pair.same("InvoiceService.addOrderItem", invoice, COURSE, 4, 99, 1, "", "")
    owed = await pair.same("InvoiceService.calculateAmountOwed", invoice)
    assert isinstance(owed, float) and owed == 130.95
    paid = await pair.same(
        "InvoiceService.addManualPayment", invoice, 30.95, WHEN, "Cash", "", True
    )
    assert paid is True
    owed = await pair.same("InvoiceService.calculateAmountOwed", invoice)
    assert owed == 100.0
    payments = await pair.same("InvoiceService.getPayments", invoice)
    assert [p["PayAmt"] for p in payments] == [30.95]
    assert isinstance(payments[0]["PayDate"], datetime.datetime)
    await _tables(pair, contact, invoice)
    declined = await pair.same("InvoiceService.chargeInvoice", invoice, "n", DECLINING, 0, False)
    assert declined["Successful"] is False and declined["Code"] == "DECLINED"
    approved = await pair.same("InvoiceService.chargeInvoice", invoice, "n", CARD, 0, False)
    assert approved["Successful"] is True and approved["Code"] == "APPROVED"
    assert await pair.same("InvoiceService.calculateAmountOwed", invoice) == 0.0
    skipped = await pair.same("InvoiceService.chargeInvoice", invoice, "", CARD, 0, False)
    assert skipped["Code"] == "SKIPPED"
    assert len(await pair.same("InvoiceService.getPayments", invoice)) == 2
    await _tables(pair, contact, invoice)
    assert await pair.same("InvoiceService.deleteInvoice", invoice) is True
    await pair.same("InvoiceService.getOrderId", invoice, expect=NOT_FOUND)
    await pair.same("InvoiceService.calculateAmountOwed", invoice, expect=NOT_FOUND)
    assert pair.rest_requests() > 20  # the rest route really went through REST v2


INVOICE_FIELDS = ["Id", "ContactId", "JobId", "DateCreated", "InvoiceTotal", "TotalPaid"]
INVOICE_FIELDS += ["TotalDue", "PayStatus", "Description", "InvoiceType"]
JOB_FIELDS = ["Id", "JobTitle", "ContactId", "DateCreated", "OrderType"]
ITEM_FIELDS = ["Id", "OrderId", "ProductId", "ItemName", "Qty", "CPU", "PPU", "ItemType"]
ITEM_FIELDS += ["ItemDescription", "Notes"]
INVOICE_ITEM_FIELDS = ["Id", "InvoiceId", "OrderItemId", "InvoiceAmt", "Description"]
PAYMENT_FIELDS = ["Id", "PayDate", "PayAmt", "PayType", "ContactId", "PayNote"]


async def _tables(pair: Pair, contact: int, invoice: int) -> None:
    """The legacy tables an order sync reads, through DataService: each answer a list of
    structs with int ids, double money and dateTime dates."""
    rows = await pair.same("DataService.query", "Invoice", 10, 0, {"Id": invoice}, INVOICE_FIELDS)
    assert isinstance(rows[0]["InvoiceTotal"], float) and isinstance(rows[0]["JobId"], int)
    assert isinstance(rows[0]["DateCreated"], datetime.datetime)
    await pair.same("DataService.query", "Invoice", 10, 0, {"ContactId": contact}, ["Id"])
    await pair.same("DataService.query", "Invoice", 10, 0, {"PayStatus": 0}, ["Id", "TotalDue"])
    await pair.same("DataService.load", "Invoice", invoice, INVOICE_FIELDS)
    await pair.same("DataService.count", "Invoice", {"ContactId": contact})
    job = rows[0]["JobId"]
    await pair.same("DataService.query", "Job", 10, 0, {}, JOB_FIELDS, "DateCreated", True)
    await pair.same("DataService.load", "Job", job, JOB_FIELDS)
    await pair.same("DataService.query", "Job", 10, 0, {"JobTitle": "Web%"}, JOB_FIELDS)
    items = await pair.same("DataService.query", "OrderItem", 10, 0, {"OrderId": job}, ITEM_FIELDS)
    assert [type(i["PPU"]) for i in items] == [float] * len(items)
    await pair.same("DataService.query", "OrderItem", 10, 0, {"ProductId": NOTEBOOK}, ITEM_FIELDS)
    await pair.same("DataService.query", "OrderItem", 2, 1, {}, ["Id", "PPU"], "PPU", False)
    await pair.same("DataService.count", "OrderItem", {"OrderId": job})
    await pair.same(
        "DataService.query", "InvoiceItem", 10, 0, {"InvoiceId": invoice}, INVOICE_ITEM_FIELDS
    )
    await pair.same("DataService.query", "InvoiceItem", 10, 0, {"InvoiceAmt": "~>~5"}, ["Id"])
    payments = await pair.same(
        "DataService.query", "Payment", 10, 0, {"ContactId": contact}, PAYMENT_FIELDS
    )
    assert all(isinstance(p["PayAmt"], float) for p in payments)
    if payments:
        await pair.same("DataService.load", "Payment", payments[0]["Id"], PAYMENT_FIELDS)
    fields = ["Id", "InvoiceId", "Amt", "PayDate", "PayStatus", "PaymentId", "SkipCommission"]
    rows = await pair.same(
        "DataService.query", "InvoicePayment", 10, 0, {"InvoiceId": invoice}, fields
    )
    assert all(isinstance(r["Amt"], float) for r in rows)
    await pair.same("DataService.count", "InvoicePayment", {"InvoiceId": invoice})


async def test_product_inventory(pair: Pair) -> None:
    assert await pair.same("ProductService.getInventory", NOTEBOOK) == 40
    assert await pair.same("ProductService.getInventory", COURSE) == 0


async def test_add_job(pair: Pair) -> None:
    contact = await _customer(pair)
    job = {"ContactId": contact, "JobTitle": "Repair", "JobNotes": "urgent", "StartDate": WHEN}
    job_id = await pair.same("DataService.add", "Job", job)
    assert isinstance(job_id, int)
    fields = ["Id", "JobTitle", "ContactId", "JobNotes", "StartDate"]
    loaded = await pair.same("DataService.load", "Job", job_id, fields)
    assert loaded["JobTitle"] == "Repair" and loaded["StartDate"] == WHEN
    other = await pair.same("DataService.add", "Job", {"ContactId": contact, "JobTitle": "B"})
    assert other == job_id + 1
    await pair.same("DataService.load", "Job", other, ["Id", "JobTitle", "ContactId"])
    await pair.same("DataService.add", "Job", {"Id": 5}, expect=Fault(8, "NoFieldAccess"))
    later = datetime.datetime(2026, 4, 2, 9, 0, 0)
    change = {"JobTitle": "Repair 2", "JobNotes": "done", "StartDate": later}
    assert await pair.same("DataService.update", "Job", job_id, change) == job_id
    changed = await pair.same("DataService.load", "Job", job_id, fields)
    assert changed["JobTitle"] == "Repair 2" and changed["StartDate"] == later
    assert await pair.same("DataService.update", "Job", other, {"OrderType": "Online"}) == other
    assert (await pair.same("DataService.load", "Job", other, ["OrderType"]))["OrderType"] == (
        "Online"
    )


async def test_add_subscription_plan(pair: Pair) -> None:
    plan = {"ProductId": NOTEBOOK, "Cycle": 3, "Frequency": 2, "PlanPrice": 4.5, "Active": 1,
            "Prorate": 0, "NumberOfCycles": 6}  # fmt: skip
    plan_id = await pair.same("DataService.add", "SubscriptionPlan", plan)
    assert isinstance(plan_id, int)
    fields = ["Id", "ProductId", "Cycle", "Frequency", "PlanPrice", "Active", "NumberOfCycles"]
    rows = await pair.same(
        "DataService.query", "SubscriptionPlan", 10, 0, {"ProductId": NOTEBOOK}, fields
    )
    assert rows == [{k: v for k, v in {**plan, "Id": plan_id}.items() if k in fields}]
    yearly = {"ProductId": COURSE, "Cycle": 1, "PlanPrice": 100.0, "Active": 1}
    assert await pair.same("DataService.add", "SubscriptionPlan", yearly) == plan_id + 1


async def test_order_item_writes(pair: Pair) -> None:
    """DataService add/update/load on OrderItem: lines on an order whose invoice follows;
    an item keyshim never saw (placed by placeOrder) is found among the orders."""
    contact = await _customer(pair)
    invoice = await pair.same("InvoiceService.createBlankOrder", contact, "Items", WHEN, 0, 0)
    order = await pair.same("InvoiceService.getOrderId", invoice)
    line = {"OrderId": order, "ProductId": NOTEBOOK, "ItemType": 4, "Qty": 2, "PPU": 12.5,
            "ItemDescription": "Blue", "Notes": "gift"}  # fmt: skip
    item = await pair.same("DataService.add", "OrderItem", line)
    post = {"OrderId": order, "ItemType": 1, "Qty": 1, "PPU": 4.95, "ItemName": "Post",
            "CPU": 1.5, "Notes": " "}  # fmt: skip
    assert await pair.same("DataService.add", "OrderItem", post) == item + 1
    course = await pair.same(
        "DataService.add", "OrderItem", {"OrderId": order, "ProductId": COURSE, "Qty": 1}
    )
    items = await pair.same(
        "DataService.query", "OrderItem", 10, 0, {"OrderId": order}, ITEM_FIELDS
    )
    assert [(i["ItemType"], i["PPU"]) for i in items] == [(4, 12.5), (1, 4.95), (4, 99.0)]
    assert await pair.same("InvoiceService.calculateAmountOwed", invoice) == 128.95
    change = {"Qty": 3, "PPU": 11.0, "ItemDescription": "Red", "Notes": ""}
    assert await pair.same("DataService.update", "OrderItem", item, change) == item
    loaded = await pair.same("DataService.load", "OrderItem", item, ITEM_FIELDS)
    assert (loaded["Qty"], loaded["PPU"], "Notes" in loaded) == (3, 11.0, False)
    assert await pair.same("InvoiceService.calculateAmountOwed", invoice) == 136.95
    same_order = {"OrderId": order, "ItemName": "NB", "ProductId": COURSE}
    assert await pair.same("DataService.update", "OrderItem", item, same_order) == item
    await pair.same(
        "DataService.query", "InvoiceItem", 10, 0, {"InvoiceId": invoice}, INVOICE_ITEM_FIELDS
    )
    placed = await pair.same("OrderService.placeOrder", contact, 0, 0, [NOTEBOOK], [], False, [])
    unseen = course + 1  # the placed order's one line
    before = pair.sims["rest"].rest_endpoint.routes["GET /orders"]
    assert await pair.same("DataService.update", "OrderItem", unseen, {"Qty": 2}) == unseen
    assert pair.sims["rest"].rest_endpoint.routes["GET /orders"] == before + 1  # found by a scan
    assert await pair.same("InvoiceService.calculateAmountOwed", int(placed["InvoiceId"])) == 25.0
    await pair.same("DataService.load", "OrderItem", unseen, ITEM_FIELDS)
    repeated = {"ItemType": 4, "Qty": 1}  # the type it has: fine
    assert await pair.same("DataService.update", "OrderItem", item, repeated) == item
    for change, why in [({"OrderId": 2}, "move"), ({"ItemType": 3}, "ItemType")]:
        refused = await pair.call("rest", "DataService.update", "OrderItem", item, change)
        assert refused[0] == "fault" and refused[1] == 112 and why in refused[2], refused


@pytest.mark.parametrize(
    ("method", "params", "code", "tag"),
    [
        ("DataService.update", ("OrderItem", 999, {"Qty": 1}), 5, "RecordNotFound"),
        ("DataService.update", ("OrderItem", 0, {"Qty": 1}), 5, "RecordNotFound"),
        ("DataService.load", ("OrderItem", 999, ["Id"]), 5, "RecordNotFound"),
        ("DataService.load", ("OrderItem", 1, ["Nope"]), 10, "NoFieldFound"),
        ("DataService.add", ("OrderItem", {"OrderId": 999, "ProductId": 21, "Qty": 1}), 5,
         "RecordNotFound"),
        ("DataService.add", ("OrderItem", {"ProductId": 21, "Qty": 1}), 5, "RecordNotFound"),
        ("DataService.add", ("OrderItem", {"OrderId": 1, "ProductId": 999, "Qty": 1}), 5,
         "RecordNotFound"),
        ("DataService.add", ("OrderItem", {"OrderId": 1, "ItemType": 99, "Qty": 1}), 12,
         "InvalidParameter"),
        ("DataService.add", ("OrderItem", {"OrderId": 1, "ProductId": 21}), 12,
         "InvalidParameter"),
        ("DataService.add", ("OrderItem", {"OrderId": 1, "Qty": 1}), 12, "InvalidParameter"),
        ("DataService.add", ("OrderItem", {"Qty": 0}), 12, "InvalidParameter"),
        ("DataService.add", ("OrderItem", {"OrderId": 1, "Nope": 1}), 10, "NoFieldFound"),
        ("DataService.add", ("OrderItem", {"Id": 3}), 8, "NoFieldAccess"),
        ("DataService.update", ("OrderItem", 1, {"Nope": 1}), 10, "NoFieldFound"),
        ("DataService.update", ("OrderItem", 1, {"Qty": "x"}), 12, "InvalidParameter"),
    ],
)  # fmt: skip
async def test_order_item_faults(
    pair: Pair, method: str, params: tuple[Any, ...], code: int, tag: str
) -> None:
    contact = await _customer(pair)
    await pair.same("InvoiceService.createBlankOrder", contact, "Order", WHEN, 0, 0)
    await pair.same("InvoiceService.addOrderItem", 501, NOTEBOOK, 4, 12.5, 1, "", "")
    await pair.same(method, *params, expect=Fault(code, tag))


async def test_product_total_discount(pair: Pair) -> None:
    """Seeded in the simulator: discount 7 (10% off product 21), 8 ($20 off product 22)."""
    percent = await pair.same("DiscountService.getProductTotalDiscount", 7)
    assert percent == {"name": "Notebook 10% off", "description": "Back to school",
                       "applyDiscountToCommission": 1, "productId": NOTEBOOK, "percentOrAmt": 1,
                       "amt": 10.0}  # fmt: skip
    amount = await pair.same("DiscountService.getProductTotalDiscount", 8)
    assert (amount["percentOrAmt"], amount["amt"], "description" in amount) == (0, 20.0, False)
    for wrong in (999, 0):
        await pair.same("DiscountService.getProductTotalDiscount", wrong, expect=NOT_FOUND)
    await pair.same("DiscountService.getProductTotalDiscount", "7", expect=INVALID)


#: CCharge.Id is left out: REST transactions have none (never returned through REST).
CHARGE_FIELDS = ["CCId", "PaymentId", "MerchantId", "OrderNum", "RefNum", "ApprCode", "Amt"]


async def test_credit_card_charges(pair: Pair) -> None:
    """CCharge: one row per charge attempt (declined ones too), read from REST's
    transactions; REST filters what it can, keyshim the rest."""
    contact = await _customer(pair)
    invoice = await pair.same("InvoiceService.createBlankOrder", contact, "Cards", WHEN, 0, 0)
    await pair.same("InvoiceService.addOrderItem", invoice, NOTEBOOK, 4, 12.5, 2, "", "")
    await pair.same("InvoiceService.chargeInvoice", invoice, "", DECLINING, 0, False)
    approved = await pair.same("InvoiceService.chargeInvoice", invoice, "", CARD, 0, False)
    await pair.same("OrderService.placeOrder", contact, CARD, 0, [COURSE], [], False, [])
    query = "DataService.query"
    rows = await pair.same(query, "CCharge", 10, 0, {}, CHARGE_FIELDS)
    assert [(r["CCId"], r["Amt"]) for r in rows] == [(DECLINING, 25.0), (CARD, 25.0), (CARD, 99.0)]
    assert "PaymentId" not in rows[0] and rows[1]["RefNum"] == approved["RefNum"]
    assert isinstance(rows[1]["PaymentId"], int) and isinstance(rows[1]["OrderNum"], str)
    order = await pair.same("InvoiceService.getOrderId", invoice)
    assert len(await pair.same(query, "CCharge", 10, 0, {"OrderNum": str(order)}, ["Amt"])) == 2
    await pair.same("DataService.findByField", "CCharge", 10, 0, "MerchantId", 1, CHARGE_FIELDS)
    assert await pair.same(query, "CCharge", 10, 0, {"Amt": "~>~50"}, ["Amt"]) == [{"Amt": 99.0}]
    await pair.same(query, "CCharge", 10, 0, {"Amt": 25.0, "MerchantId": 1}, ["Amt", "CCId"])
    await pair.same(query, "CCharge", 10, 0, {"Amt": "~<>~25"}, ["Amt"])
    await pair.same(query, "CCharge", 10, 0, {"CCId": DECLINING}, CHARGE_FIELDS)
    await pair.same(query, "CCharge", 10, 0, {"RefNum": "T%"}, ["RefNum"])
    await pair.same(query, "CCharge", 1, 1, {}, ["Amt", "CCId"])
    await pair.same(query, "CCharge", 10, 0, {}, ["Amt", "CCId"], "Amt", False)
    assert await pair.same("DataService.count", "CCharge", {"MerchantId": 1}) == 3
    assert await pair.same("DataService.count", "CCharge", {"ApprCode": "~null~"}) == 1
    await pair.same(query, "CCharge", 10, 0, {"Nope": 1}, ["Amt"], expect=Fault(10, "NoFieldFound"))
    await pair.same(query, "CCharge", 10, 0, {}, ["Nope"], expect=Fault(10, "NoFieldFound"))
    await pair.same(query, "CCharge", 10, 0, {"Amt": "x"}, ["Amt"], expect=INVALID)
    await pair.same("DataService.add", "CCharge", {"Amt": 1.0}, expect=Fault(7, "NoTableAccess"))
    for method, params, why in [
        ("DataService.load", ("CCharge", 1, ["Amt"]), "no id"),
        (query, ("CCharge", 10, 0, {"Id": 1}, ["Amt"]), "CCharge.Id"),
    ]:
        answer = await pair.call("rest", method, *params)
        assert answer[0] == "fault" and answer[1] == 112 and why in answer[2], answer


RECURRING_FIELDS = ["Id", "ContactId", "SubscriptionPlanId", "Qty", "BillingAmt", "Status"]
RECURRING_FIELDS += ["NextBillDate", "EndDate", "BillingCycle", "Frequency", "AutoCharge"]
RECURRING_FIELDS += ["MaxRetry", "NumDaysBetweenRetry", "PromoCode", "ReasonStopped"]
RECURRING_FIELDS += ["AffiliateId"]


async def test_update_recurring_order(pair: Pair) -> None:
    contact = await _customer(pair)
    recurring = await pair.same(
        "InvoiceService.addRecurringOrder", contact, False, PLAN, 0, CARD, 0, 0
    )
    change = {"Qty": 2, "BillingAmt": 25.5, "NextBillDate": datetime.datetime(2036, 7, 15),
              "EndDate": datetime.datetime(2037, 1, 1), "BillingCycle": "3", "Frequency": 2,
              "AutoCharge": 0, "MaxRetry": 4, "NumDaysBetweenRetry": 2, "PromoCode": "SPRING",
              "AffiliateId": AFFILIATE, "CC1": DECLINING}  # fmt: skip
    assert await pair.same("DataService.update", "RecurringOrder", recurring, change) == recurring
    row = await pair.same("DataService.load", "RecurringOrder", recurring, RECURRING_FIELDS)
    assert (row["Qty"], row["BillingAmt"], row["BillingCycle"]) == (2, 25.5, "3")
    stop = {"Status": "Inactive", "ReasonStopped": "moved away"}
    assert await pair.same("DataService.update", "RecurringOrder", recurring, stop) == recurring
    rows = await pair.same(
        "DataService.query", "RecurringOrder", 10, 0, {"ContactId": contact}, RECURRING_FIELDS
    )
    assert rows[0]["Status"] == "Inactive" and rows[0]["AffiliateId"] == AFFILIATE
    again = {"Status": "Active", "SubscriptionPlanId": PLAN, "ContactId": contact, "CC1": 0}
    assert await pair.same("DataService.update", "RecurringOrder", recurring, again) == recurring
    fixed = ["StartDate", "ProductId", "LastBillDate", "MerchantAccountId"]
    whole = await pair.same("DataService.load", "RecurringOrder", recurring, fixed)
    whole = {"Qty": 1, "StartDate": whole["StartDate"], "ProductId": whole["ProductId"]}
    assert await pair.same("DataService.update", "RecurringOrder", recurring, whole) == recurring
    later = {"StartDate": datetime.datetime(2036, 1, 1)}
    refused = await pair.call("rest", "DataService.update", "RecurringOrder", recurring, later)
    assert refused[0] == "fault" and refused[1] == 112 and "StartDate" in refused[2], refused
    update = "DataService.update"
    await pair.same(update, "RecurringOrder", 999, {"Qty": 1}, expect=NOT_FOUND)
    await pair.same(
        update, "RecurringOrder", recurring, {"Nope": 1}, expect=Fault(10, "NoFieldFound")
    )
    await pair.same(
        update, "RecurringOrder", recurring, {"Id": 5}, expect=Fault(8, "NoFieldAccess")
    )
    await pair.same(update, "RecurringOrder", recurring, {"Qty": "x"}, expect=INVALID)


async def test_add_payment_plan(pair: Pair) -> None:
    contact = await _customer(pair)
    invoice = await pair.same("InvoiceService.createBlankOrder", contact, "Plan", WHEN, 0, 0)
    await pair.same("InvoiceService.addOrderItem", invoice, COURSE, 4, 99.0, 1, "", "")
    later = datetime.datetime(2036, 4, 1)
    plan = (True, CARD, 0, 2, 3, 33.0, later, later, 3, 30)
    assert await pair.same("InvoiceService.addPaymentPlan", invoice, *plan) is True
    no_card = (False, 0, 0, 1, 1, 0.0, later, later, 2, 14)
    assert await pair.same("InvoiceService.addPaymentPlan", invoice, *no_card) is True
    await pair.same("InvoiceService.addPaymentPlan", 999, *plan, expect=NOT_FOUND)
    unknown_card = (True, 999, 0, 2, 3, 33.0, later, later, 3, 30)
    await pair.same("InvoiceService.addPaymentPlan", invoice, *unknown_card, expect=NOT_FOUND)
    none = (True, CARD, 0, 2, 3, 33.0, later, later, 0, 30)
    await pair.same("InvoiceService.addPaymentPlan", invoice, *none, expect=INVALID)


async def test_deactivate_credit_card(pair: Pair) -> None:
    await _customer(pair)
    assert await pair.same("ProductService.deactivateCreditCard", DECLINING) is True
    rows = await pair.same("DataService.query", "CreditCard", 10, 0, {}, ["Id", "Last4"])
    assert isinstance(rows, list)


async def test_place_order_and_recurring(pair: Pair) -> None:
    contact = await _customer(pair)
    placed = await pair.same(
        "OrderService.placeOrder", contact, CARD, 0, [NOTEBOOK, COURSE], [], False, []
    )
    assert placed["Successful"] == "true" and placed["InvoiceId"] == "501"
    assert all(isinstance(v, str) for v in placed.values())
    unpaid = await pair.same("OrderService.placeOrder", contact, 0, 0, [NOTEBOOK], [], False, [])
    assert unpaid["Code"] == "SKIPPED"
    owed = await pair.same("InvoiceService.calculateAmountOwed", int(unpaid["InvoiceId"]))
    assert owed == 12.5
    declined = await pair.same(
        "OrderService.placeOrder", contact, DECLINING, 0, [COURSE], [], False, [], 0, AFFILIATE
    )
    assert declined["Successful"] == "false" and declined["Code"] == "DECLINED"
    recurring = await pair.same(
        "InvoiceService.addRecurringOrder", contact, False, PLAN, 0, CARD, 0, 0
    )
    assert isinstance(recurring, int)
    duplicate = (contact, False, PLAN, 0, CARD, 0, 0)  # the same plan again, no duplicates
    await pair.same("InvoiceService.addRecurringOrder", *duplicate, expect=INVALID)
    again = await pair.same("InvoiceService.addRecurringOrder", contact, True, PLAN, 0, 0, 0, 0)
    assert isinstance(again, int) and again != recurring
    invoice = await pair.same("InvoiceService.createInvoiceForRecurring", recurring)
    assert isinstance(invoice, int)
    assert await pair.same("InvoiceService.calculateAmountOwed", invoice) == 19.99
    later = datetime.datetime(2036, 7, 15, 9, 45, 0)
    assert await pair.same("InvoiceService.updateJobRecurringNextBillDate", recurring, later)
    row = await pair.same("DataService.load", "RecurringOrder", recurring, ["NextBillDate"])
    assert row["NextBillDate"] == datetime.datetime(2036, 7, 15)
    charged = await pair.same("InvoiceService.chargeInvoice", invoice, "", CARD, 0, True)
    assert charged["Successful"] is True


@pytest.mark.parametrize(
    ("method", "params", "code", "tag"),
    [
        ("InvoiceService.createBlankOrder", (999, "x", WHEN, 0, 0), 5, "RecordNotFound"),
        ("InvoiceService.createBlankOrder", (1, "x", WHEN, 999, 0), 12, "InvalidParameter"),
        ("InvoiceService.createBlankOrder", (1, "x", "2026-03-01", 0, 0), 12, "InvalidParameter"),
        ("InvoiceService.addOrderItem", (999, NOTEBOOK, 4, 1.0, 1, "", ""), 5, "RecordNotFound"),
        ("InvoiceService.addOrderItem", (501, 999, 4, 1.0, 1, "", ""), 5, "RecordNotFound"),
        (
            "InvoiceService.addOrderItem",
            (501, NOTEBOOK, 99, 1.0, 1, "", ""),
            12,
            "InvalidParameter",
        ),
        ("InvoiceService.addOrderItem", (501, NOTEBOOK, 4, 1.0, 0, "", ""), 12, "InvalidParameter"),
        ("InvoiceService.addOrderItem", (501, 0, 4, 1.0, 1, "", ""), 12, "InvalidParameter"),
        ("InvoiceService.addOrderItem", (501, NOTEBOOK, 4, "1", 1, "", ""), 12, "InvalidParameter"),
        (
            "InvoiceService.addManualPayment",
            (999, 1.0, WHEN, "Cash", "", False),
            5,
            "RecordNotFound",
        ),
        ("InvoiceService.chargeInvoice", (999, "", CARD, 0, False), 5, "RecordNotFound"),
        ("InvoiceService.chargeInvoice", (501, "", 999, 0, False), 5, "RecordNotFound"),
        ("InvoiceService.calculateAmountOwed", (999,), 5, "RecordNotFound"),
        ("InvoiceService.getPayments", (999,), 5, "RecordNotFound"),
        ("InvoiceService.deleteInvoice", (999,), 5, "RecordNotFound"),
        ("InvoiceService.getOrderId", (999,), 5, "RecordNotFound"),
        ("InvoiceService.getOrderId", ("501",), 12, "InvalidParameter"),
        ("InvoiceService.addRecurringOrder", (999, False, PLAN, 0, 0, 0, 0), 5, "RecordNotFound"),
        ("InvoiceService.addRecurringOrder", (1, False, 999, 0, 0, 0, 0), 5, "RecordNotFound"),
        ("InvoiceService.addRecurringOrder", (1, False, PLAN, 0, 999, 0, 0), 5, "RecordNotFound"),
        ("InvoiceService.createInvoiceForRecurring", (999,), 5, "RecordNotFound"),
        ("InvoiceService.updateJobRecurringNextBillDate", (999, WHEN), 5, "RecordNotFound"),
        ("ProductService.getInventory", (999,), 5, "RecordNotFound"),
        ("ProductService.deactivateCreditCard", (999,), 5, "RecordNotFound"),
        ("OrderService.placeOrder", (999, 0, 0, [NOTEBOOK], [], False, []), 5, "RecordNotFound"),
    ],
)
async def test_commerce_faults(
    pair: Pair, method: str, params: tuple[Any, ...], code: int, tag: str
) -> None:
    contact = await _customer(pair)
    await pair.same("InvoiceService.createBlankOrder", contact, "Order", WHEN, 0, 0)
    await pair.same(method, *params, expect=Fault(code, tag))


PRODUCT_FIELDS = ["Id", "ProductName", "ProductPrice", "Sku", "ShortDescription", "Status"]


async def test_catalog_tables(pair: Pair) -> None:
    contact = await _customer(pair)
    products = await pair.same("DataService.query", "Product", 10, 0, {}, PRODUCT_FIELDS)
    assert isinstance(products[0]["ProductPrice"], float) and products[0]["ProductPrice"] == 12.5
    await pair.same("DataService.query", "Product", 10, 0, {"ProductName": "Note%"}, ["Id"])
    await pair.same("DataService.query", "Product", 10, 0, {"Status": 1}, ["Id", "Sku"])
    await pair.same("DataService.query", "Product", 1, 1, {}, ["Id"], "ProductName", True)
    await pair.same("DataService.findByField", "Product", 10, 0, "Sku", "VC-1", PRODUCT_FIELDS)
    await pair.same("DataService.load", "Product", NOTEBOOK, [*PRODUCT_FIELDS, "Weight"])
    added = await pair.same("DataService.add", "Product", {"ProductName": "Mug", "ProductPrice": 8})
    assert isinstance(added, int)
    await pair.same("DataService.load", "Product", added, PRODUCT_FIELDS)
    await pair.same("DataService.update", "Product", added, {"ProductPrice": "9.99", "Status": 1})
    await pair.same("DataService.load", "Product", added, PRODUCT_FIELDS)
    assert await pair.same("DataService.delete", "Product", added) is True
    await pair.same("DataService.load", "Product", added, ["Id"], expect=NOT_FOUND)
    category = await pair.same("DataService.add", "ProductCategory", {"CategoryDisplayName": "X"})
    assert isinstance(category, int)
    fields = ["Id", "CategoryDisplayName", "CategoryOrder", "ParentId"]
    await pair.same("DataService.query", "ProductCategory", 10, 0, {}, fields)
    await pair.same("DataService.load", "ProductCategory", category, fields)
    affiliate = ["Id", "AffName", "AffCode", "Status", "NotifyLead", "LeadCookieFor"]
    await pair.same("DataService.query", "Affiliate", 10, 0, {}, affiliate)
    await pair.same("DataService.findByField", "Affiliate", 10, 0, "AffCode", "P1", ["Id"])
    await pair.same("DataService.load", "Affiliate", AFFILIATE, affiliate)
    referral = {"ContactId": contact, "AffiliateId": AFFILIATE, "Source": "web", "IPAddress": "1"}
    assert isinstance(await pair.same("DataService.add", "Referral", referral), int)
    fields = ["Id", "ContactId", "AffiliateId", "Source", "IPAddress", "DateSet"]
    await pair.same("DataService.query", "Referral", 10, 0, {"AffiliateId": AFFILIATE}, fields)
    card = ["Id", "ContactId", "Last4", "CardType", "ExpirationMonth", "ExpirationYear"]
    cards = await pair.same("DataService.query", "CreditCard", 10, 0, {"ContactId": contact}, card)
    assert [c["Last4"] for c in cards] == ["1111", "0002"]
    await pair.same("DataService.load", "CreditCard", CARD, card)
    recurring = await pair.same(
        "InvoiceService.addRecurringOrder", contact, False, PLAN, 0, CARD, 0, 0
    )
    fields = ["Id", "ContactId", "SubscriptionPlanId", "ProductId", "StartDate", "BillingCycle"]
    fields += ["Frequency", "BillingAmt", "Status", "AutoCharge", "Qty"]
    await pair.same("DataService.query", "RecurringOrder", 10, 0, {"ContactId": contact}, fields)
    await pair.same("DataService.load", "RecurringOrder", recurring, fields)
    plan = ["Id", "ProductId", "Cycle", "Frequency", "Prorate", "Active", "PlanPrice"]
    plans = await pair.same("DataService.query", "SubscriptionPlan", 10, 0, {}, plan)
    assert isinstance(plans[0]["PlanPrice"], float) and plans[0]["PlanPrice"] == 19.99
    await pair.same("DataService.query", "SubscriptionPlan", 10, 0, {"ProductId": COURSE}, plan)
    await pair.same("DataService.query", "SubscriptionPlan", 10, 0, {"ProductId": 999}, plan)


@pytest.mark.parametrize(
    ("method", "params", "code", "tag"),
    [
        ("DataService.load", ("Product", 999, ["Id"]), 5, "RecordNotFound"),
        ("DataService.load", ("Product", 21, ["Nope"]), 10, "NoFieldFound"),
        (
            "DataService.query",
            ("Product", 10, 0, {"ProductPrice": "x"}, ["Id"]),
            12,
            "InvalidParameter",
        ),
        ("DataService.update", ("Product", 999, {"Sku": "x"}), 5, "RecordNotFound"),
        ("DataService.add", ("Product", {"Id": 5}), 8, "NoFieldAccess"),
        ("DataService.delete", ("Product", 999), 5, "RecordNotFound"),
        ("DataService.load", ("Invoice", 999, ["Id"]), 5, "RecordNotFound"),
        ("DataService.load", ("Invoice", 501, ["Nope"]), 10, "NoFieldFound"),
        ("DataService.add", ("Invoice", {"ContactId": 1}), 7, "NoTableAccess"),
        ("DataService.delete", ("Payment", 1), 7, "NoTableAccess"),
        ("DataService.load", ("Job", 999, ["Id"]), 5, "RecordNotFound"),
        ("DataService.load", ("CreditCard", 999, ["Id"]), 5, "RecordNotFound"),
        ("DataService.query", ("OrderItem", 10, 0, {"Nope": 1}, ["Id"]), 10, "NoFieldFound"),
        ("DataService.query", ("InvoiceItem", 10, 0, {}, []), 11, "NoFields"),
        (
            "DataService.query",
            ("InvoicePayment", 9, 0, {"InvoiceId": 999}, ["Nope"]),
            10,
            "NoFieldFound",
        ),
    ],
)
async def test_table_faults(
    pair: Pair, method: str, params: tuple[Any, ...], code: int, tag: str
) -> None:
    contact = await _customer(pair)
    await pair.same("InvoiceService.createBlankOrder", contact, "Order", WHEN, 0, 0)
    await pair.same(method, *params, expect=Fault(code, tag))


async def test_rest_refuses_what_it_cannot_do(pair: Pair) -> None:
    """Calls with no REST form get [NoRestTranslation] (112) naming why, and send nothing."""
    contact = await _customer(pair)
    invoice = await pair.same("InvoiceService.createBlankOrder", contact, "Order", WHEN, 0, 0)
    before = pair.rest_requests()
    for method, params, why in [
        ("InvoiceService.addOrderItem", (invoice, 22, 9, 1.0, 1, "", ""), "item type 9"),
        ("InvoiceService.addRecurringOrder", (contact, False, PLAN, 0, 0, 0, 5), "daysTillCharge"),
        ("OrderService.placeOrder", (contact, 0, 0, [], [PLAN], False, []), "subscription plans"),
        ("DataService.add", ("CreditCard", {"ContactId": contact}), "CreditCard"),
        ("DataService.query", ("InvoicePayment", 10, 0, {}, ["Id"]), "exact InvoiceId"),
        ("DataService.add", ("RecurringOrder", {"ContactId": contact}), "RecurringOrder"),
        (
            "DataService.add",
            ("OrderItem", {"OrderId": 1, "ProductId": COURSE, "ItemType": 9, "Qty": 1}),
            "SubscriptionPlanId",
        ),
        ("DataService.update", ("RecurringOrder", 1, {"Status": "Paused"}), "Status"),
        ("DataService.update", ("RecurringOrder", 1, {"BillingCycle": "4"}), "BillingCycle"),
    ]:
        answer = await pair.call("rest", method, *params)
        assert answer[0] == "fault" and answer[1] == 112, answer
        assert answer[2].startswith("[NoRestTranslation]") and why in answer[2], answer
    assert pair.rest_requests() == before


# --- hypothesis: order lines and payments -----------------------------------------------------

LINE = st.tuples(
    st.sampled_from([0, NOTEBOOK, COURSE, 999]),
    st.sampled_from([1, 2, 3, 4, 6, 7, 11]),
    st.one_of(
        st.integers(0, 500), st.floats(0, 500, allow_nan=False).map(lambda f: round(f, 2))
    ),  # cents (docs)
    st.integers(0, 4),
    st.sampled_from(["", "Line", "Two words"]),  # whitespace alone: REST drops it (docs)
)
PAYMENT = st.tuples(st.floats(0.01, 200).map(lambda f: round(f, 2)), st.sampled_from(["Cash"]))


@settings(
    max_examples=int(os.environ.get("REST_EQUIVALENCE_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(lines=st.lists(LINE, min_size=1, max_size=5), payments=st.lists(PAYMENT, max_size=3))
def test_hypothesis_orders(
    tmp_path_factory: pytest.TempPathFactory, lines: list[Any], payments: list[Any]
) -> None:
    asyncio.run(_orders(tmp_path_factory.mktemp("o"), lines, payments))


async def _orders(directory: Path, lines: list[Any], payments: list[Any]) -> None:
    config = Settings.from_env({}, db=str(directory / "keyshim.db"))
    init_files(config)
    store = open_store(config)
    try:
        async with open_pair(config, store, {}) as pair:
            contact = await _customer(pair)
            invoice = await pair.same("InvoiceService.createBlankOrder", contact, "H", WHEN, 0, 0)
            for product, kind, price, quantity, text in lines:
                await pair.same(
                    "InvoiceService.addOrderItem",
                    invoice,
                    product,
                    kind,
                    price,
                    quantity,
                    text,
                    text,
                    expect=_line_expect(product, kind, quantity),
                )
            for amount, kind in payments:
                owed = await pair.same("InvoiceService.calculateAmountOwed", invoice)
                if isinstance(owed, float) and 0 < amount <= owed:
                    await pair.same(
                        "InvoiceService.addManualPayment", invoice, amount, WHEN, kind, "", False
                    )
            await pair.same("InvoiceService.calculateAmountOwed", invoice)
            await pair.same("InvoiceService.getPayments", invoice)
            await _tables(pair, contact, invoice)
            await pair.same("InvoiceService.chargeInvoice", invoice, "", CARD, 0, False)
            await pair.same("DataService.query", "Invoice", 5, 0, {"Id": invoice}, INVOICE_FIELDS)
    finally:
        store.close()
