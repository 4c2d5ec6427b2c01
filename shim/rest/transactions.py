"""``CCharge`` (legacy credit-card charge records) over ``GET /sales/transactions``.

Read-only, as in the legacy API. A REST transaction (``TransactionV2``) carries most of a
charge: ``payment_id`` (PaymentId), ``merchant_account_id`` (MerchantId), the first of
``order_ids`` (OrderNum), ``external_reference_id`` (RefNum), ``external_response_code``
(ApprCode: the processor's response code, unverified to be legacy's approval code),
``amount`` (Amt) and ``payment_method.credit_card_id`` (CCId).

It has **no id**: ``CCharge.Id`` is never returned, a criterion on it is refused, and so is
``load`` (there is no record to name). Rows come in transaction time order, which is the order
legacy ids were given in. REST filters ``merchant_account_id``, ``order_id`` and ``amount``
(with comparisons); keyshim re-checks OrderNum and Amt on what comes back (a transaction
against several orders matches ``order_id`` for any of them; amounts compare as legacy
doubles), and filters the other fields itself within ``listing.SCAN_LIMIT`` records.
"""

from __future__ import annotations

from typing import Any

from shim.rest import criteria as crit
from shim.rest.commerce_tables import FLOAT, NoLoad, ro
from shim.rest.listing import Filter
from shim.rest.spec import Convert, missing
from shim.xmlrpc import Value

#: Legacy comparison -> REST ``amount`` operator (``amount`` also takes ``!=``).
_AMOUNT_OPS = {"=": "==", "~<>~": "!=", "~>~": ">", "~<~": "<", "~>=~": ">=", "~<=~": "<="}


def _first_order(raw: Any) -> Value:
    """``order_ids`` -> OrderNum: the first order, as legacy's text."""
    return str(raw[0]) if isinstance(raw, list) and raw else None


class Transactions(NoLoad):
    """CCharge: filters that need more than a column says, and no ``load``."""

    why_no_load = (
        "REST v2 transactions have no id to read one by; query by OrderNum, MerchantId or Amt "
        "instead"
    )

    @property
    def rest(self) -> str:
        return self.path

    def filter(self, c: crit.Criterion) -> Filter | None:
        if c.field == "OrderNum":
            digits = isinstance(c.operand, str) and c.operand.isdigit() and c.op == "="
            return Filter(f"order_id=={c.operand}", exact=False) if digits else None
        if c.field == "Amt":
            op = _AMOUNT_OPS.get(c.op)
            number = c.raw
            if op is None or not isinstance(number, (int, float)) or isinstance(number, bool):
                return None
            return Filter(f"amount{op}{float(number)!r}", exact=False)
        return super().filter(c)

    def order(self, name: str, ascending: bool) -> str | None:
        """Legacy Id order is the order charges were made in: REST's transaction time."""
        if name == "Id":
            return f"transaction_time {'asc' if ascending else 'desc'}"
        return super().order(name, ascending)


CCHARGE = Transactions(
    "CCharge",
    "/sales/transactions",
    "transactions",
    {
        "Id": missing("int", "REST v2 transactions have no id: never returned", writable=False),
        "CCId": ro("int", "payment_method.credit_card_id"),
        "PaymentId": ro("int", "payment_id"),
        "MerchantId": ro("int", "merchant_account_id", filter="merchant_account_id"),
        "OrderNum": ro("str", "order_ids", convert=Convert(_first_order, lambda value: None),
                       filter="order_id", exact=False,
                       note="the first of order_ids (an order id, as text; unverified that "
                       "legacy wrote the order's id)"),
        "RefNum": ro("str", "external_reference_id"),
        "ApprCode": ro("str", "external_response_code",
                       note="the processor's response code (unverified)"),
        "Amt": ro("float", "amount", convert=FLOAT, filter="amount", compare=True, exact=False),
    },
    orders={"Id": "transaction_time"},
    legacy_read_only=True,
    notes="read-only; REST transactions have no id: Id is never returned, load is refused, "
    "rows come in transaction time order",
    fidelity="approximate",
)  # fmt: skip
