"""``GET /sales/transactions`` (SDK ``ListTransactions`` of ``TransactionV2``): one transaction
per card charge attempt, read from the legacy ``CCharge`` rows that ``chargeInvoice``,
``placeOrder`` and REST's own card payments write (commerce.py, ``Commerce.charge_amount``).

A transaction has no id of its own in the SDK model; the row's Id only orders ties. A declined
attempt is ``FAILED`` with the processor's message in ``error_details``. Filters and orders are
the ones the SDK's ``list_transactions`` lists.
"""

from __future__ import annotations

from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.commerce import CHARGED_AT, DECLINE_MESSAGE, row_of
from shim.simulator.data import Row
from shim.simulator.rest.http import Call
from shim.simulator.rest.orders import method_record, paged, strip
from shim.simulator.rest.query import AMOUNT, NUMBER, SINCE, TEXT, UNTIL, Rule, listing

TRANSACTION_RULES: dict[str, Rule] = {
    "amount": AMOUNT,
    "order_id": NUMBER,
    "contact_id": NUMBER,
    "since_time": SINCE,
    "until_time": UNTIL,
    "merchant_account_id": NUMBER,
    "merchant_account_type": TEXT,
    "status": TEXT,
    "transaction_method": TEXT,
    "is_successful": Rule("choice", choices=frozenset({"true", "false"})),
}
#: Fields only the filters read (``time`` is what ``since_time``/``until_time`` test).
_HIDDEN = ("id", "order_id", "time")


def transaction_record(call: Call, row: Row) -> dict[str, Any]:
    """A CCharge row as a ``TransactionV2`` (before ``strip``), with the filter-only fields."""
    card = row_of(call.db.tables["CreditCard"], row.get("CCId")) or {}
    contact_id = card.get("ContactId")
    contact = row_of(call.db.tables["Contact"], contact_id) or {}
    approved = row.get("PaymentId") is not None
    order = str(row.get("OrderNum") or "")
    return {
        "id": row["Id"],
        "amount": row.get("Amt"),
        "status": "APPROVED" if approved else "FAILED",
        "is_successful": approved,
        "contact": strip(
            {
                "id": contact_id,
                "email": contact.get("Email"),
                "given_name": contact.get("FirstName"),
                "family_name": contact.get("LastName"),
            }
        ),
        "contact_id": contact_id,
        "order_ids": [order] if order else [],
        "order_id": int(order) if order.isdigit() else None,
        "transaction_method": "CAPTURE",
        "transaction_time": row.get(CHARGED_AT),
        "time": row.get(CHARGED_AT),
        "external_reference_id": row.get("RefNum"),
        "external_response_code": row.get("ApprCode"),
        "error_details": None if approved else DECLINE_MESSAGE,
        "payment_id": row.get("PaymentId"),
        "merchant_account_id": row.get("MerchantId"),
        "merchant_account_type": "KEAP_PAY",
        "payment_method": strip({k: v for k, v in method_record(card).items() if k != "id"})
        if card
        else None,
    }


def _value(record: dict[str, Any], name: str) -> list[Any]:
    if name in ("since_time", "until_time"):
        return [record.get("time")]
    if name == "is_successful":
        return ["true" if record.get("is_successful") else "false"]
    return [record.get(name)]


def list_transactions(call: Call) -> Answer:
    records = [transaction_record(call, row) for row in call.db.rows("CCharge")]
    fields = ("amount", "transaction_time", "contact_id")
    page, token = paged(call, records, TRANSACTION_RULES, fields, _value)
    items = [strip({k: v for k, v in r.items() if k not in _HIDDEN}) for r in page]
    return json_answer(200, listing(call, "transactions", items, token))
