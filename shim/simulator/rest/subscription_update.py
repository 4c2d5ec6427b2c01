"""``PATCH /subscriptions/{id}`` (SDK ``UpdateSubscriptionRequest``) over the ``RecurringOrder``
rows that ``DataService.update('RecurringOrder', ...)`` writes on the XML-RPC side.

Each property REST lets a client patch sets one legacy column (``SUBSCRIPTION_COLUMNS``), after
the checks the SDK's field descriptions state: quantities, retries and the frequency at least
1, the amount at least 0, dates not in the past, ids that exist. ``update_mask`` limits which
sent properties apply (absent: all of them), as on every Keap v2 PATCH. Properties with no
legacy column (``lead_affiliate_id``, ``shipping_address``, ``shipping_option_id``,
``allow_tax``, ``custom_fields``) are refused as not simulated rather than silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shim.simulator.asgi import Answer
from shim.simulator.data import Row, to_datetime
from shim.simulator.rest.http import Call, bad, check_keys, missing, parse_date, parse_id
from shim.simulator.rest.orders import SUBSCRIPTION_CYCLES, card_of_method, get_subscription

#: UpdateSubscriptionRequest's properties.
UPDATE_SUBSCRIPTION_KEYS = frozenset(
    {"quantity", "active", "contact_id", "subscription_plan_id", "billing_amount"}
    | {"auto_charge", "max_charge_attempts", "days_between_retries", "billing_frequency"}
    | {"billing_cycle", "next_bill_date", "end_date", "payment_method_id", "allow_tax"}
    | {"lead_affiliate_id", "sale_affiliate_id", "shipping_address", "promo_code"}
    | {"shipping_option_id", "reason_stopped", "custom_fields"}
)
_CYCLE_NUMBERS = {name: number for number, name in SUBSCRIPTION_CYCLES.items()}
Reader = Callable[[Call, str, Any], dict[str, Any]]


def _whole(least: int, column: str) -> Reader:
    def read(call: Call, prop: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise bad(f"{prop} must be an integer of at least {least}", prop)
        return {column: value}

    return read


def _flag(column: str, words: tuple[Any, Any]) -> Reader:
    def read(call: Call, prop: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, bool):
            raise bad(f"{prop} must be a boolean", prop)
        return {column: words[1] if value else words[0]}

    return read


def _text(column: str) -> Reader:
    def read(call: Call, prop: str, value: Any) -> dict[str, Any]:
        if value is not None and not isinstance(value, str):
            raise bad(f"{prop} must be a string", prop)
        return {column: value or None}

    return read


def _date(column: str, clearable: bool) -> Reader:
    def read(call: Call, prop: str, value: Any) -> dict[str, Any]:
        if value is None and clearable:
            return {column: None}
        if not isinstance(value, str):
            raise bad(f"{prop} must be a date (YYYY-MM-DD)", prop)
        when = parse_date(value, prop)
        if when.date() < to_datetime(call.now).date():
            raise bad(f"{prop} must not be in the past", prop)
        return {column: when}

    return read


def _amount(call: Call, prop: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise bad(f"{prop} must be a number of at least 0", prop)
    return {"BillingAmt": float(value)}


def _cycle(call: Call, prop: str, value: Any) -> dict[str, Any]:
    number = _CYCLE_NUMBERS.get(value) if isinstance(value, str) else None
    if number is None:
        raise bad("billing_cycle must be YEAR, MONTH, WEEK or DAY", prop)
    return {"BillingCycle": number}


def _contact(call: Call, prop: str, value: Any) -> dict[str, Any]:
    contact_id = parse_id(value, "contact")
    if contact_id not in call.db.tables["Contact"]:
        raise bad(f"Contact {contact_id} does not exist", prop)
    return {"ContactId": contact_id}


def _plan(call: Call, prop: str, value: Any) -> dict[str, Any]:
    plan_id = parse_id(value, "subscription plan")
    if plan_id not in call.db.tables["SubscriptionPlan"]:
        raise bad(f"Subscription plan {plan_id} does not exist", prop)
    return {"SubscriptionPlanId": plan_id, "ProgramId": plan_id}


def _affiliate(call: Call, prop: str, value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {"AffiliateId": None}
    affiliate_id = parse_id(value, "affiliate")
    if affiliate_id not in call.db.tables["Affiliate"]:
        raise bad(f"Affiliate {affiliate_id} does not exist", prop)
    return {"AffiliateId": affiliate_id}


def _method(call: Call, prop: str, value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {"CC1": None}
    card = card_of_method(call, str(value))
    if card is None:
        raise bad(f"Payment method {value} not found", prop)
    return {"CC1": card["Id"]}


#: UpdateSubscriptionRequest property -> what it sets on the RecurringOrder row.
SUBSCRIPTION_COLUMNS: dict[str, Reader] = {
    "quantity": _whole(1, "Qty"),
    "active": _flag("Status", ("Inactive", "Active")),
    "contact_id": _contact,
    "subscription_plan_id": _plan,
    "billing_amount": _amount,
    "auto_charge": _flag("AutoCharge", (0, 1)),
    "max_charge_attempts": _whole(1, "MaxRetry"),
    "days_between_retries": _whole(1, "NumDaysBetweenRetry"),
    "billing_frequency": _whole(1, "Frequency"),
    "billing_cycle": _cycle,
    "next_bill_date": _date("NextBillDate", clearable=False),
    "end_date": _date("EndDate", clearable=True),
    "payment_method_id": _method,
    "sale_affiliate_id": _affiliate,
    "promo_code": _text("PromoCode"),
    "reason_stopped": _text("ReasonStopped"),
}


def update_subscription(call: Call) -> Answer:
    """PATCH /subscriptions/{id} -> 200 ``Subscription``; nothing is written unless every
    property passes."""
    record_id = call.path_id("subscription_id", "subscription")
    row: Row | None = call.db.tables["RecurringOrder"].get(record_id)
    if row is None:
        raise missing("subscription", record_id)
    data = call.body()
    check_keys(data, UPDATE_SUBSCRIPTION_KEYS, "subscription")
    mask = call.args("update_mask")
    names = list(data) if mask is None else [n for m in mask for n in m.split(",") if n]
    check_keys(dict.fromkeys(names), UPDATE_SUBSCRIPTION_KEYS, "update_mask")
    others = sorted(set(names) - set(SUBSCRIPTION_COLUMNS))
    if others:
        raise bad(f"The simulator does not update {', '.join(others)}", "subscription")
    values: dict[str, Any] = {}
    for prop in names:
        values |= SUBSCRIPTION_COLUMNS[prop](call, prop, data.get(prop))
    row.update(values)
    row["LastUpdated"] = to_datetime(call.now)
    return get_subscription(call)
