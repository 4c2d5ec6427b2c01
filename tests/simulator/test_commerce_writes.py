"""The simulator's commerce writes seen from the other protocol, and the REST shapes of the
resources behind OrderItem writes, RecurringOrder updates, CCharge and product discounts (SDK
models ``OrderItem``, ``Subscription``, ``TransactionV2``, ``ProductDiscount``)."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

import pytest

from shim.simulator import SimConfig
from shim.xmlrpc import Fault
from tests.simulator.test_rest_side import Keap, running

pytestmark = pytest.mark.anyio

#: TransactionV2's properties (SDK model).
TRANSACTION_KEYS = {
    "amount", "status", "description", "contact", "order_ids", "contact_id",
    "transaction_method", "transaction_time", "external_reference_id", "external_response_code",
    "error_details", "payment_id", "is_successful", "merchant_account_id",
    "merchant_account_type", "payment_method",
}  # fmt: skip


@pytest.fixture
async def keap() -> AsyncIterator[Keap]:
    async with running(SimConfig()) as k:
        yield k


async def _order(keap: Keap) -> tuple[int, int]:
    """A contact and an order of theirs added through DataService: (contact, order)."""
    contact = await keap.rpc("ContactService.add", {"FirstName": "Ada", "Email": "a@ex.com"})
    job = await keap.rpc("DataService.add", "Job", {"ContactId": contact, "JobTitle": "Repair"})
    return contact, job


async def test_a_job_added_through_dataservice_is_an_order(keap: Keap) -> None:
    _, job = await _order(keap)
    orders = (await keap.ok("GET", "/orders"))["orders"]
    assert [o["id"] for o in orders] == [str(job)]
    assert orders[0]["title"] == "Repair" and "invoice_id" in orders[0]


async def test_order_item_writes_on_one_data_set(keap: Keap) -> None:
    _, job = await _order(keap)
    line = {"OrderId": job, "ProductId": 21, "Qty": 2, "PPU": 12.5, "CPU": 3.0}
    item = await keap.rpc("DataService.add", "OrderItem", line)
    order = await keap.ok("GET", f"/orders/{job}")
    assert order["total"]["amount"] == 2500
    [rest_item] = order["order_items"]
    assert rest_item["id"] == str(item) and rest_item["item_type"] == "PRODUCT"
    assert rest_item["cost_per_unit"]["amount"] == 300
    assert await keap.ok("GET", f"/orders/{job}/items/{item}") == rest_item
    path = f"/orders/{job}/items/{item}"
    patched = await keap.ok("PATCH", path, json={"quantity": 3, "notes": "gift"})
    assert patched["quantity"] == 3 and patched["notes"] == "gift"
    fields = ["Qty", "Notes", "PPU"]
    assert await keap.rpc("DataService.load", "OrderItem", item, fields) == {
        "Qty": 3,
        "Notes": "gift",
        "PPU": 12.5,
    }
    assert (await keap.ok("GET", f"/orders/{job}"))["total"]["amount"] == 3750
    # the mask limits what applies; null clears a text
    masked = {"quantity": 5, "notes": None}
    await keap.ok("PATCH", path, json=masked, params={"update_mask": "notes"})
    assert await keap.rpc("DataService.load", "OrderItem", item, fields) == {"Qty": 3, "PPU": 12.5}
    await keap.error("PATCH", path, 400, json={"item_type": "TAX"})  # not in the request model
    await keap.error("PATCH", path, 400, json={"quantity": 0})
    await keap.error("PATCH", path, 400, json={"name": "  "})
    await keap.error("PATCH", path, 404, json={"product_id": "999"})
    await keap.error("PATCH", f"/orders/{job}/items/999", 404, json={"quantity": 1})
    # an item moved by a legacy update leaves its old order, totals and all
    _, other = await _order(keap)
    await keap.rpc("DataService.update", "OrderItem", item, {"OrderId": other})
    assert (await keap.ok("GET", f"/orders/{job}"))["total"]["amount"] == 0
    await keap.error("GET", path, 404)
    assert (await keap.ok("GET", f"/orders/{other}"))["total"]["amount"] == 3750


async def test_subscription_patch(keap: Keap) -> None:
    contact = await keap.rpc("ContactService.add", {"FirstName": "Ada", "Email": "a@ex.com"})
    recurring = await keap.rpc("InvoiceService.addRecurringOrder", contact, False, 41, 0, 81, 0, 0)
    path = f"/subscriptions/{recurring}"
    assert (await keap.ok("GET", path))["billing_cycle"] == "MONTH"  # not the plan's MONTHLY
    change = {"billing_cycle": "WEEK", "quantity": 2, "active": False, "end_date": "2030-01-01"}
    answer = await keap.ok("PATCH", path, json=change)
    assert (answer["billing_cycle"], answer["quantity"], answer["active"]) == ("WEEK", 2, False)
    row = await keap.rpc(
        "DataService.load", "RecurringOrder", recurring, ["BillingCycle", "Status"]
    )
    assert row == {"BillingCycle": "3", "Status": "Inactive"}
    await keap.ok("PATCH", path, json={"payment_method_id": "pm_000082"})
    assert await keap.rpc("DataService.load", "RecurringOrder", recurring, ["CC1"]) == {"CC1": 82}
    for bad in (
        {"quantity": 0},
        {"billing_cycle": "MONTHLY"},
        {"next_bill_date": "2020-01-01"},
        {"contact_id": "999"},
        {"payment_method_id": "pm_999999"},
        {"shipping_option_id": "1"},  # in the request model, not simulated
        {"nope": 1},
    ):
        await keap.error("PATCH", path, 400, json=bad)
    await keap.error("PATCH", "/subscriptions/999", 404, json={"quantity": 1})


async def test_transactions_are_charge_attempts(keap: Keap) -> None:
    contact = await keap.rpc("ContactService.add", {"FirstName": "Ada", "Email": "a@ex.com"})
    invoice = await keap.rpc("InvoiceService.createBlankOrder", contact, "x", _when(), 0, 0)
    await keap.rpc("InvoiceService.addOrderItem", invoice, 21, 4, 12.5, 2, "", "")
    declined = await keap.rpc("InvoiceService.chargeInvoice", invoice, "", 82, 0, False)
    approved = await keap.rpc("InvoiceService.chargeInvoice", invoice, "", 81, 0, False)
    assert (declined["Successful"], approved["Successful"]) == (False, True)
    listed = (await keap.ok("GET", "/sales/transactions"))["transactions"]
    assert all(set(t) <= TRANSACTION_KEYS for t in listed)
    failed, ok = listed
    assert (failed["status"], failed["is_successful"], "payment_id" in failed) == (
        "FAILED",
        False,
        False,
    )
    assert ok["external_reference_id"] == approved["RefNum"] and ok["amount"] == 25.0
    assert ok["payment_method"]["credit_card_id"] == "81" and ok["order_ids"] == ["1"]
    charges = await keap.rpc("DataService.query", "CCharge", 10, 0, {}, ["Id", "PaymentId"])
    payments = await keap.rpc("DataService.query", "Payment", 10, 0, {}, ["ChargeId"])
    assert payments == [{"ChargeId": charges[1]["Id"]}]  # the payment names its charge
    for flt, count in [
        ("amount>20", 2),
        ("amount!=25", 0),
        ("is_successful==true", 1),
        ("order_id==1;merchant_account_id==1", 2),
        ("status==FAILED", 1),
    ]:
        got = await keap.ok("GET", "/sales/transactions", params={"filter": flt})
        assert len(got["transactions"]) == count, flt
    ordered = await keap.ok("GET", "/sales/transactions", params={"order_by": "amount desc"})
    assert len(ordered["transactions"]) == 2
    await keap.error("GET", "/sales/transactions", 400, params={"filter": "id==1"})
    await keap.error("GET", "/sales/transactions", 400, params={"filter": "amount==x"})
    with pytest.raises(Fault) as info:
        await keap.rpc("DataService.add", "CCharge", {"Amt": 1.0})
    assert info.value.code == 7


async def test_product_discount(keap: Keap) -> None:
    discount = await keap.ok("GET", "/discounts/products/7")
    assert discount == {
        "id": "7", "name": "Notebook 10% off", "description": "Back to school",
        "apply_to_commissions": True, "product_id": "21", "discount_type": "PERCENT",
        "discount_value": 10.0, "criteria": [],
    }  # fmt: skip
    legacy = await keap.rpc("DiscountService.getProductTotalDiscount", 8)
    assert legacy == {
        "name": "Course $20 off", "applyDiscountToCommission": 0, "productId": 22,
        "percentOrAmt": 0, "amt": 20.0,
    }  # fmt: skip
    await keap.error("GET", "/discounts/products/999", 404)


def _when() -> datetime.datetime:
    return datetime.datetime(2026, 3, 1, 10, 30)
