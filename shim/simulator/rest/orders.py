"""Orders, their items and payments, sales payments, payment methods and subscriptions, as
REST v2 serves them (models from Keap's v2 SDK: ``OrderV2``, ``OrderItem``, ``PaymentResult``,
``InvoiceOrderPayment``, ``Payment``, ``PaymentMethod``, ``Subscription``).

Over the legacy tables (commerce.py): ``Job`` is an order (``id``), ``Invoice`` gives its
``invoice_id``, totals and status. Money: ``CurrencyValue`` (``amount`` in minor units) in
read models, a float of dollars in ``price_per_unit``/``payment_amount`` requests, as the SDK
types them. A declined card answers 400 with the processor's message: how Keap answers a
decline is not documented (docs/keap.md#open-questions, question 6); keyshim turns either
form into legacy's ``{Successful: false}`` struct.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.commerce import (
    DECLINE_MESSAGE,
    ITEM_TYPES,
    LEGACY_ITEM_TYPES,
    MANUAL_TYPES,
    cents,
    row_of,
)
from shim.simulator.data import Row, to_datetime
from shim.simulator.faults import KeapFault
from shim.simulator.rest.http import Call, bad, check_keys, iso, missing, no_content, parse_id
from shim.simulator.rest.http import parse_time as parse_rest_time
from shim.simulator.rest.query import (
    IDS,
    NUMBER,
    SINCE,
    TEXT,
    UNTIL,
    WILD,
    Rule,
    listing,
    paginate,
    parse_filter,
    parse_order,
    select,
    sort_value,
)
from shim.xmlrpc import Value

Record = dict[str, Any]
ID_OPS = Rule("number", frozenset({"==", ">", "<", ">=", "<=", "!="}))
CHOICE_TYPE = Rule("choice", choices=frozenset({"ONLINE", "OFFLINE"}))


def money(amount: object) -> dict[str, Any]:
    """A legacy double as REST's ``CurrencyValue``."""
    value = float(amount) if isinstance(amount, (int, float)) else 0.0
    minor = cents(value)
    sign = "-" if minor < 0 else ""
    return {
        "amount": minor,
        "currency_code": "USD",
        "formatted_amount": f"{sign}${abs(minor) // 100:,}.{abs(minor) % 100:02d}",
    }


def strip(record: Mapping[str, Any]) -> dict[str, Any]:
    """Empty values left out, ids as strings (keys named ``id`` or ``*_id``), times ISO."""
    out: dict[str, Any] = {}
    for name, value in record.items():
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, datetime.datetime):
            value = iso(value)
        elif (name == "id" or name.endswith("_id")) and isinstance(value, int):
            value = str(value)
        out[name] = value
    return out


def paged(
    call: Call,
    records: list[Record],
    rules: dict[str, Rule],
    order_fields: tuple[str, ...],
    values: Callable[[Record, str], list[Any]] | None = None,
) -> tuple[list[Record], str]:
    """Filter, order and page flat records (by id unless ``order_by`` says otherwise)."""
    records = select(records, parse_filter(call.arg("filter"), rules.get), values or value)
    order, descending = parse_order(call.arg("order_by"), order_fields)
    name = order or "id"
    return paginate(call, records, lambda r: [sort_value(r.get(name)), r["id"]], descending)


#: Time filters -> the record field they test (``since_x``/``until_x`` test ``x``).
_TIME_FILTERS = {
    "created_since_": "creation_",
    "created_until_": "creation_",
    "modified_since_": "modification_",
    "modified_until_": "modification_",
    "since_": "",
    "until_": "",
}


def value(record: Record, name: str) -> list[Any]:
    """A record's values for a filter field."""
    for prefix, field in _TIME_FILTERS.items():
        if name.startswith(prefix):
            return [record.get(field + name[len(prefix) :])]
    if name in ("ids", "product_ids"):
        return [record.get("id")]
    if name == "order_ids":
        return [record.get("order_id")]
    return [record.get(name)]


def _int_body(data: Mapping[str, Any], name: str, required: bool = False) -> int | None:
    """An id property: a string of digits (the SDK types ids as strings); "0"/absent: none."""
    raw = data.get(name)
    if raw is None or raw == "" or raw == "0":
        if required:
            raise bad(f"{name} is required", name)
        return None
    return parse_id(raw, name)


def _amount(data: Mapping[str, Any], name: str) -> float:
    raw = data.get(name)
    if not isinstance(raw, (int, float)) or isinstance(raw, bool):
        raise bad(f"{name} must be a number", name)
    return float(raw)


# --- orders ---

ORDER_RULES: dict[str, Rule] = {
    "id": ID_OPS,
    "ids": IDS,
    "contact_id": NUMBER,
    "invoice_id": NUMBER,
    "product_id": NUMBER,
    "paid": Rule("choice", choices=frozenset({"true", "false"})),
    "title": WILD,
    "order_type": CHOICE_TYPE,
    "created_since_time": SINCE,
    "created_until_time": UNTIL,
    "modified_since_time": SINCE,
    "modified_until_time": UNTIL,
}


def order_record(call: Call, job: Row) -> Record:
    """A ``Job`` row and its invoice as an ``OrderV2`` (before ``strip``)."""
    commerce = call.db.commerce
    job_id = job["Id"]
    assert isinstance(job_id, int)
    invoice = commerce.invoice_of_job(job_id)
    contact = row_of(call.db.tables["Contact"], job.get("ContactId")) or {}
    total, paid = invoice.get("InvoiceTotal") or 0.0, invoice.get("TotalPaid") or 0.0
    items = [item_json(call, item) for item in commerce.items_of(job_id)]
    return {
        "id": job_id,
        "title": job.get("JobTitle"),
        "status": "PAID" if invoice.get("PayStatus") == 1 else "DRAFT",
        "total": money(total),
        "contact": strip(
            {
                "id": job.get("ContactId"),
                "email": contact.get("Email"),
                "given_name": contact.get("FirstName"),
                "family_name": contact.get("LastName"),
            }
        ),
        "contact_id": job.get("ContactId"),
        "notes": job.get("JobNotes"),
        "order_type": str(job.get("OrderType") or "Offline").upper(),
        "source_type": "API",
        "creation_time": job.get("DateCreated"),
        "modification_time": job.get("LastUpdated"),
        "order_time": job.get("StartDate") or job.get("DateCreated"),
        "lead_affiliate_id": invoice.get("LeadAffiliateId"),
        "sales_affiliate_id": invoice.get("AffiliateId"),
        "total_paid": money(paid),
        "total_due": money(invoice.get("TotalDue") or 0.0),
        "order_items": items,
        "invoice_id": invoice["Id"],
        "paid": "true" if invoice.get("PayStatus") == 1 else "false",
        "product_id": [i.get("ProductId") for i in commerce.items_of(job_id)],
    }


def order_json(record: Record) -> dict[str, Any]:
    hidden = ("contact_id", "paid", "product_id")
    return strip({k: v for k, v in record.items() if k not in hidden})


def _order_values(record: Record, name: str) -> list[Any]:
    if name == "product_id":
        return list(record["product_id"])
    return value(record, name)


def list_orders(call: Call) -> Answer:
    records = [order_record(call, job) for job in call.db.rows("Job")]
    page, token = paged(
        call, records, ORDER_RULES, ("id", "order_time", "modification_time"), _order_values
    )
    return json_answer(200, listing(call, "orders", [order_json(r) for r in page], token))


def find_order(call: Call) -> Row:
    order_id = call.path_id("order_id", "order")
    job = call.db.tables["Job"].get(order_id)
    if job is None:
        raise missing("order", order_id)
    return job


def get_order(call: Call) -> Answer:
    return json_answer(200, order_json(order_record(call, find_order(call))))


#: UpdateOrderRequest's properties; the simulator applies ``payment_plan`` only.
UPDATE_ORDER_KEYS = frozenset(
    {"notes", "terms", "title", "contact_id", "order_title", "order_time", "order_type"}
    | {"promo_codes", "lead_affiliate_id", "sales_affiliate_id", "shipping_address"}
    | {"custom_fields", "payment_plan", "sent_time", "due_time", "invoice_number"}
)
#: UpdatedPaymentPlan's properties.
PAY_PLAN_KEYS = frozenset(
    {"auto_charge", "max_charge_attempts", "days_between_retries", "payment_method_id"}
    | {"initial_payment_amount", "initial_payment_date", "plan_start_date"}
    | {"number_of_payments", "days_between_payments"}
)


#: UpdateOrderRequest property -> the Job column it sets.
_ORDER_COLUMNS = {
    "order_title": "JobTitle",
    "notes": "JobNotes",
    "order_time": "StartDate",
    "order_type": "OrderType",
}


def update_order(call: Call) -> Answer:
    """PATCH /orders/{id} (UpdateOrderRequest): ``order_title``, ``notes``, ``order_time``,
    ``order_type``, ``contact_id`` and ``payment_plan`` are simulated."""
    job = find_order(call)
    data = call.body()
    check_keys(data, UPDATE_ORDER_KEYS, "order")
    others = sorted(set(data) - set(_ORDER_COLUMNS) - {"payment_plan", "contact_id"})
    if others:
        raise bad(f"The simulator does not update {', '.join(others)}", "order")
    if "order_type" in data and data["order_type"] not in ("ONLINE", "OFFLINE"):
        raise bad("order_type must be ONLINE or OFFLINE", "order_type")
    if "order_title" in data and not str(data["order_title"] or "").strip():
        raise bad("order_title must not be empty", "order_title")
    if "contact_id" in data:
        contact_id = _int_body(data, "contact_id", required=True)
        if contact_id not in call.db.tables["Contact"]:
            raise missing("contact", contact_id)
        job["ContactId"] = contact_id
        invoice = call.db.commerce.invoice_of_job(int(job["Id"]))  # type: ignore[arg-type]
        invoice["ContactId"] = contact_id
    for prop, column in _ORDER_COLUMNS.items():
        if prop not in data:
            continue
        value = data[prop]
        if prop == "order_time":
            value = parse_rest_time(str(value), "order_time")
        elif prop == "order_type":
            value = "Online" if value == "ONLINE" else "Offline"
        job[column] = value
    job["LastUpdated"] = to_datetime(call.now)
    plan = data.get("payment_plan")
    if isinstance(plan, dict):
        check_keys(plan, PAY_PLAN_KEYS, "payment_plan")
        card_id = 0
        wanted = plan.get("payment_method_id")
        if wanted:
            cards = [c for c in call.db.rows("CreditCard") if payment_method_id(c) == wanted]
            if not cards:
                raise missing("payment method", wanted)
            card_id = int(cards[0]["Id"])  # type: ignore[arg-type]
        values = {k: v for k, v in plan.items() if k != "payment_method_id"}
        invoice = call.db.commerce.invoice_of_job(int(job["Id"]))  # type: ignore[arg-type]
        try:
            call.db.commerce.set_pay_plan(int(invoice["Id"]), card_id, values)  # type: ignore[arg-type]
        except KeapFault as fault:
            raise bad(str(fault), "payment_plan") from None
    return get_order(call)


ORDER_KEYS = {"notes", "terms", "title", "contact_id", "order_items", "order_title", "order_time"}
ORDER_KEYS |= {"order_type", "promo_codes", "lead_affiliate_id", "sales_affiliate_id"}
ORDER_KEYS |= {"shipping_address", "custom_fields", "sent_time", "due_time", "invoice_number"}


def create_order(call: Call) -> Answer:
    data = call.body()
    check_keys(data, ORDER_KEYS, "order")
    contact_id = _int_body(data, "contact_id", required=True)
    assert contact_id is not None
    title = data.get("order_title")
    if not isinstance(title, str) or not title.strip():
        raise bad("order_title is required", "order_title")
    order_time = data.get("order_time")
    if not isinstance(order_time, str):
        raise bad("order_time is required", "order_time")
    when = parse_rest_time(order_time, "order_time")
    order_type = data.get("order_type")
    if order_type not in ("ONLINE", "OFFLINE"):
        raise bad("order_type must be ONLINE or OFFLINE", "order_type")
    if data.get("promo_codes"):
        raise bad("Promo code not found", "promo_codes")
    if contact_id not in call.db.tables["Contact"]:
        raise missing("contact", contact_id)  # 404 or 400? unknown; 404 assumed
    now = to_datetime(call.now)
    invoice_id = call.db.commerce.create_order(
        contact_id,
        title,
        when,
        _int_body(data, "lead_affiliate_id"),
        _int_body(data, "sales_affiliate_id"),
        now,
        call.db.tables["Contact"],
        order_type.capitalize(),
    )
    job_id = call.db.commerce.invoice(invoice_id)["JobId"]
    for item in data.get("order_items") or []:
        if not isinstance(item, dict):
            raise bad("order_items must be objects", "order_items")
        _add_item(call, invoice_id, item)
    job = call.db.tables["Job"][job_id]  # type: ignore[index]
    notes = data.get("notes")
    if isinstance(notes, str) and notes:
        job["JobNotes"] = notes
    return json_answer(201, order_json(order_record(call, job)))


def delete_order(call: Call) -> Answer:
    job = find_order(call)
    invoice = call.db.commerce.invoice_of_job(int(job["Id"]))  # type: ignore[arg-type]
    call.db.commerce.delete_invoice(int(invoice["Id"]))  # type: ignore[arg-type]
    return no_content()


# --- order items ---

ITEM_KEYS = {"name", "description", "quantity", "notes", "product_id", "subscription_plan_id"}
ITEM_KEYS |= {"subscription_plan_description", "item_type", "price_per_unit", "cost_per_unit"}
CREATE_TYPES = frozenset(ITEM_TYPES.values()) | {"FEE"}


def item_json(call: Call, item: Row) -> dict[str, Any]:
    product = row_of(call.db.tables["Product"], item.get("ProductId"))
    legacy_type = item.get("ItemType")
    rest_type = ITEM_TYPES.get(legacy_type, "UNKNOWN") if isinstance(legacy_type, int) else None
    if legacy_type == 3:
        rest_type = "SERVICE"
    if legacy_type == 5:
        rest_type = "UPSELL"
    if legacy_type == 8:
        rest_type = "PROGRAM"
    product_json = None
    if product is not None:
        product_json = strip(
            {
                "id": product["Id"],
                "name": product.get("ProductName"),
                "sku": product.get("Sku"),
                "description": product.get("Description"),
                "shippable": product.get("Shippable") == 1,
                "taxable": product.get("Taxable") == 1,
            }
        )
    return strip(
        {
            "id": item["Id"],
            "name": item.get("ItemName"),
            "description": item.get("ItemDescription"),
            "notes": item.get("Notes"),
            "quantity": item.get("Qty"),
            "product": product_json,
            "item_type": rest_type,
            "cost_per_unit": money(item.get("CPU") or 0.0),
            "price_per_unit": money(item.get("PPU") or 0.0),
            "subscription_plan": _plan_ref(call, item.get("SubscriptionPlanId")),
        }
    )


def _plan_ref(call: Call, plan_id: Value) -> dict[str, Any] | None:
    plan = row_of(call.db.tables["SubscriptionPlan"], plan_id)
    return None if plan is None else plan_json(plan)


def _add_item(call: Call, invoice_id: int, data: Mapping[str, Any]) -> int:
    check_keys(data, ITEM_KEYS, "order item")
    quantity = data.get("quantity")
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise bad("quantity must be an integer of at least 1", "quantity")
    item_type = data.get("item_type", "PRODUCT")
    if item_type not in CREATE_TYPES:
        raise bad(f"Invalid item_type: {item_type!r}", "item_type")
    product_id = _int_body(data, "product_id")
    plan_id = _int_body(data, "subscription_plan_id")
    if item_type in ("PRODUCT", "SUBSCRIPTION") and product_id is None:
        raise bad(f"product_id is required for item_type {item_type}", "product_id")
    if item_type == "SUBSCRIPTION" and plan_id is None:
        raise bad("subscription_plan_id is required for item_type SUBSCRIPTION", "item_type")
    if product_id is not None and product_id not in call.db.tables["Product"]:
        raise missing("product", product_id)
    price = None if data.get("price_per_unit") is None else _amount(data, "price_per_unit")
    cost = None if data.get("cost_per_unit") is None else _amount(data, "cost_per_unit")
    texts: dict[str, str | None] = {}
    for key in ("name", "description", "notes"):
        text = data.get(key)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise bad(f"{key} must not be whitespace", key)
        texts[key] = text
    return call.db.commerce.add_item(
        invoice_id,
        product_id,
        LEGACY_ITEM_TYPES[item_type],
        price,
        quantity,
        texts["name"],
        texts["description"],
        texts["notes"],
        to_datetime(call.now),
        plan_id=plan_id,
        cost=cost,
    )


def create_item(call: Call) -> Answer:
    job = find_order(call)
    invoice = call.db.commerce.invoice_of_job(int(job["Id"]))  # type: ignore[arg-type]
    item_id = _add_item(call, int(invoice["Id"]), call.body())  # type: ignore[arg-type]
    return json_answer(201, item_json(call, call.db.tables["OrderItem"][item_id]))


# --- payments ---

PAYMENT_KEYS = {"notes", "payment_method_id", "payment_method_type", "payment_time"}
PAYMENT_KEYS |= {"payment_amount", "apply_to_commissions", "external_source"}
PAYMENT_KEYS |= {"external_source_value", "external_status_value", "external_create_time"}
PAYMENT_KEYS |= {"external_update_time", "external_create_user"}


def card_of_method(call: Call, method_id: str) -> Row | None:
    for card in call.db.tables["CreditCard"].values():
        if payment_method_id(card) == method_id:
            return card
    return None


def payment_method_id(card: Row) -> str:
    """Payment methods have their own ids; ``credit_card_id`` keeps the legacy card id."""
    return f"pm_{card['Id']!s:0>6}"


def create_payment(call: Call) -> Answer:
    job = find_order(call)
    commerce = call.db.commerce
    invoice_id = int(commerce.invoice_of_job(int(job["Id"]))["Id"])  # type: ignore[arg-type]
    data = call.body()
    check_keys(data, PAYMENT_KEYS, "payment")
    amount = _amount(data, "payment_amount")
    apply = data.get("apply_to_commissions")
    if not isinstance(apply, bool):
        raise bad("apply_to_commissions is required", "apply_to_commissions")
    notes = data.get("notes")
    if notes is not None and not isinstance(notes, str):
        raise bad("notes must be a string", "notes")
    now = to_datetime(call.now)
    owed = commerce.owed(invoice_id)
    if cents(amount) > cents(owed):
        raise bad("payment_amount must not exceed the current balance of the order")
    method_id = data.get("payment_method_id")
    if method_id:
        card = card_of_method(call, str(method_id))
        if card is None or card.get("ContactId") != job.get("ContactId"):
            raise bad(f"Payment method {method_id} not found", "payment_method_id")
        if amount <= 0:
            raise bad("payment_amount must be greater than 0 when charging")
        card_id = int(card["Id"])  # type: ignore[arg-type]
        code, charged = commerce.charge_amount(invoice_id, amount, card_id, notes, not apply, now)
        if charged is None:  # the attempt is a (failed) transaction all the same
            raise bad(DECLINE_MESSAGE, "payment", str(method_id))
        payment_id = charged
        status = code.capitalize()
    else:
        pay_type = data.get("payment_method_type")
        if pay_type not in MANUAL_TYPES:
            raise bad(f"Unknown manual payment type: {pay_type!r}", "payment_method_type")
        when_text = data.get("payment_time")
        when = parse_rest_time(when_text, "payment_time") if isinstance(when_text, str) else now
        payment_id = commerce.add_payment(invoice_id, amount, when, pay_type, notes, not apply, now)
        status = "Manual payment recorded"
    body = {
        "id": payment_id,
        "invoice_id": invoice_id,
        "payment_amount": amount,
        "payment_status_message": status,
        "transaction_id": f"T{payment_id}" if method_id else None,
    }
    return json_answer(201, strip(body))


ORDER_PAYMENT_RULES = {"invoice_id": NUMBER, "payment_id": NUMBER, "amount": TEXT}
ORDER_PAYMENT_RULES |= {"pay_status": TEXT, "skip_commission": TEXT}


def list_order_payments(call: Call) -> Answer:
    job = find_order(call)
    commerce = call.db.commerce
    invoice_id = int(commerce.invoice_of_job(int(job["Id"]))["Id"])  # type: ignore[arg-type]
    records = [
        {
            "id": row["Id"],
            "amount": row.get("Amt"),
            "note": (row_of(commerce.tables["Payment"], row.get("PaymentId")) or {}).get("PayNote"),
            "invoice_id": invoice_id,
            "payment_id": row.get("PaymentId"),
            "pay_time": row.get("PayDate"),
            "pay_status": row.get("PayStatus"),
            "last_updated_time": row.get("LastUpdated"),
            "skip_commission": row.get("SkipCommission") == 1,
        }
        for row in commerce.invoice_payments_of(invoice_id)
    ]
    order_fields = ("invoice_id", "payment_id", "amount", "pay_time", "last_updated_time")
    page, token = paged(call, records, ORDER_PAYMENT_RULES, order_fields)
    items = [strip(r) for r in page]
    return json_answer(200, listing(call, "invoice_order_payments", items, token))


SALES_PAYMENT_RULES: dict[str, Rule] = {
    "id": ID_OPS,
    "ids": IDS,
    "order_id": NUMBER,
    "order_ids": IDS,
    "contact_id": NUMBER,
    "since_time": SINCE,
    "until_time": UNTIL,
}


def list_sales_payments(call: Call) -> Answer:
    commerce = call.db.commerce
    records = []
    for row in call.db.rows("Payment"):
        invoice = row_of(commerce.tables["Invoice"], row.get("InvoiceId"))
        job_id = invoice.get("JobId") if invoice else None
        records.append(
            {
                "id": row["Id"],
                "type": row.get("PayType"),
                "amount": row.get("PayAmt"),
                "note": row.get("PayNote"),
                "status": "APPROVED" if row.get("ChargeId") else "MANUAL_PAID",
                "payment_time": row.get("PayDate"),
                "time": row.get("PayDate"),
                "contact_id": row.get("ContactId"),
                "order_id": job_id,
                "order_ids": [str(job_id)] if job_id else [],
                "update_time": row.get("LastUpdated"),
            }
        )
    page, token = paged(call, records, SALES_PAYMENT_RULES, ("id", "payment_time"))
    hidden = ("order_id", "time")
    items = [strip({k: v for k, v in r.items() if k not in hidden}) for r in page]
    return json_answer(200, listing(call, "payments", items, token))


# --- payment methods (legacy CreditCard) ---

METHOD_RULES: dict[str, Rule] = {
    "payment_method_id": TEXT,
    "credit_card_id": NUMBER,
    "contact_id": NUMBER,
    "merchant_account_id": NUMBER,
}


def method_record(card: Row) -> Record:
    return {
        "id": card["Id"],
        "contact_id": card.get("ContactId"),
        "payment_method_id": payment_method_id(card),
        "credit_card_id": card["Id"],
        "merchant_account_type": "KEAP_PAYMENTS",
        "payment_method_type": "CARD",
        "card_info": strip(
            {
                "brand": str(card.get("CardType") or "").upper() or None,
                "card_type": "CREDIT",
                "last_four": card.get("Last4"),
                "expiration_year": card.get("ExpirationYear"),
                "expiration_month": card.get("ExpirationMonth"),
            }
        ),
    }


def _methods(call: Call, records: list[Record], key: str) -> Answer:
    order_fields = ("payment_method_id", "contact_id", "merchant_account_id")
    page, token = paged(call, records, METHOD_RULES, order_fields)
    items = [strip({k: v for k, v in r.items() if k != "id"}) for r in page]
    return json_answer(200, listing(call, key, items, token))


def list_payment_methods(call: Call) -> Answer:
    records = [method_record(card) for card in call.db.rows("CreditCard")]
    return _methods(call, records, "payment_methods")


def contact_payment_methods(call: Call) -> Answer:
    contact_id = call.path_id("contact_id", "contact")
    if contact_id not in call.db.tables["Contact"]:
        raise missing("contact", contact_id)
    cards = [c for c in call.db.rows("CreditCard") if c.get("ContactId") == contact_id]
    return _methods(call, [method_record(c) for c in cards], "records")


def deactivate_payment_method(call: Call) -> Answer:
    """POST /contacts/{contact_id}/paymentMethods/{payment_method_id}:deactivate -> 204."""
    contact_id = call.path_id("contact_id", "contact")
    wanted = call.params["payment_method_id"]
    for card in call.db.rows("CreditCard"):
        if card.get("ContactId") == contact_id and payment_method_id(card) == wanted:
            call.db.commerce.deactivate_card(int(card["Id"]))  # type: ignore[arg-type]
            return no_content()
    raise missing("payment method", wanted)


# --- subscriptions (legacy RecurringOrder) and plans ---

CYCLE_NAMES = {"1": "YEARLY", "2": "MONTHLY", "3": "WEEKLY", "6": "DAILY"}
#: A subscription's ``billing_cycle`` (``Subscription``, ``UpdateSubscriptionRequest``) is named
#: differently from a plan's ``cycle_type``: YEAR, MONTH, WEEK, DAY.
SUBSCRIPTION_CYCLES = {"1": "YEAR", "2": "MONTH", "3": "WEEK", "6": "DAY"}


def plan_json(plan: Row) -> dict[str, Any]:
    return strip(
        {
            "id": plan["Id"],
            "frequency": plan.get("Frequency"),
            "active": plan.get("Active") == 1,
            "subscription_plan_name": None,
            "cycle_type": CYCLE_NAMES.get(str(plan.get("Cycle"))),
            "total_cycles": plan.get("NumberOfCycles") or 0,
            "plan_price": money(plan.get("PlanPrice") or 0.0),
        }
    )


def subscription_record(call: Call, row: Row) -> Record:
    card = row_of(call.db.tables["CreditCard"], row.get("CC1"))
    return {
        "id": row["Id"],
        "quantity": row.get("Qty"),
        "active": row.get("Status") == "Active",
        "status": str(row.get("Status") or "").upper(),
        "contact_id": row.get("ContactId"),
        "product_id": row.get("ProductId"),
        "subscription_plan_id": row.get("SubscriptionPlanId"),
        "billing_amount": row.get("BillingAmt"),
        "auto_charge": row.get("AutoCharge") == 1,
        "max_charge_attempts": row.get("MaxRetry"),
        "days_between_retries": row.get("NumDaysBetweenRetry"),
        "billing_frequency": row.get("Frequency"),
        "billing_cycle": SUBSCRIPTION_CYCLES.get(str(row.get("BillingCycle"))),
        "start_date": _date(row.get("StartDate")),
        "last_bill_date": _date(row.get("LastBillDate")),
        "next_bill_date": _date(row.get("NextBillDate")),
        "end_date": _date(row.get("EndDate")),
        "merchant_account_id": row.get("MerchantAccountId"),
        "payment_method_id": payment_method_id(card) if card else None,
        "sale_affiliate_id": row.get("AffiliateId"),
        "promo_code": row.get("PromoCode"),
        "reason_stopped": row.get("ReasonStopped"),
        "modification_time": row.get("LastUpdated"),
    }


def _date(value: object) -> str | None:
    return value.strftime("%Y-%m-%d") if isinstance(value, datetime.datetime) else None


SUBSCRIPTION_RULES: dict[str, Rule] = {
    "id": ID_OPS,
    "ids": IDS,
    "contact_id": NUMBER,
    "subscription_plan_id": NUMBER,
    "status": TEXT,
}


def list_subscriptions(call: Call) -> Answer:
    records = [subscription_record(call, row) for row in call.db.rows("RecurringOrder")]
    page, token = paged(call, records, SUBSCRIPTION_RULES, ("id", "next_bill_date"))
    items = [strip({k: v for k, v in r.items() if k != "status"}) for r in page]
    return json_answer(200, listing(call, "subscriptions", items, token))


def get_subscription(call: Call) -> Answer:
    record_id = call.path_id("subscription_id", "subscription")
    row = call.db.tables["RecurringOrder"].get(record_id)
    if row is None:
        raise missing("subscription", record_id)
    record = subscription_record(call, row)
    return json_answer(200, strip({k: v for k, v in record.items() if k != "status"}))


SUBSCRIPTION_KEYS = {"quantity", "active", "contact_id", "subscription_plan_id"}
SUBSCRIPTION_KEYS |= {"billing_amount", "auto_charge", "max_charge_attempts"}
SUBSCRIPTION_KEYS |= {"days_between_retries", "start_date", "payment_method_id", "allow_tax"}
SUBSCRIPTION_KEYS |= {"allow_duplicate", "lead_affiliate_id", "sale_affiliate_id"}
SUBSCRIPTION_KEYS |= {"shipping_address", "promo_code", "shipping_option_id", "reason_stopped"}


def create_subscription(call: Call) -> Answer:
    data = call.body()
    check_keys(data, SUBSCRIPTION_KEYS, "subscription")
    contact_id = _int_body(data, "contact_id", required=True)
    plan_id = _int_body(data, "subscription_plan_id", required=True)
    assert contact_id is not None and plan_id is not None
    if contact_id not in call.db.tables["Contact"]:
        raise missing("contact", contact_id)
    if plan_id not in call.db.tables["SubscriptionPlan"]:
        raise missing("subscription plan", plan_id)
    now = to_datetime(call.now)
    start = now.replace(hour=0, minute=0, second=0)
    start_text = data.get("start_date")
    if start_text is not None:
        try:
            start = datetime.datetime.strptime(str(start_text), "%Y-%m-%d")
        except ValueError:
            raise bad("start_date must be YYYY-MM-DD", "start_date") from None
        if start.date() < now.date():
            raise bad("start_date must not be in the past", "start_date")
    card_id = None
    method_id = data.get("payment_method_id")
    if method_id:
        card = card_of_method(call, str(method_id))
        if card is None:
            raise bad(f"Payment method {method_id} not found", "payment_method_id")
        card_id = int(card["Id"])  # type: ignore[arg-type]
    record_id = call.db.commerce.add_subscription(
        contact_id,
        data.get("allow_duplicate") is True,
        plan_id,
        card_id,
        _int_body(data, "sale_affiliate_id"),
        start,
        now,
        call.db.tables["Contact"],
    )
    record = subscription_record(call, call.db.tables["RecurringOrder"][record_id])
    return json_answer(201, strip({k: v for k, v in record.items() if k != "status"}))


def invoice_subscription(call: Call) -> Answer:
    record_id = call.path_id("subscription_id", "subscription")
    if record_id not in call.db.tables["RecurringOrder"]:
        raise missing("subscription", record_id)
    now = to_datetime(call.now)
    invoice_id = call.db.commerce.invoice_subscription(record_id, now, call.db.tables["Contact"])
    job_id = call.db.commerce.invoice(invoice_id)["JobId"]
    job = call.db.tables["Job"][job_id]  # type: ignore[index]
    return json_answer(200, order_json(order_record(call, job)))
