"""The simulated app's commerce data: products, orders, invoices, payments, subscriptions.

One data set for both protocols. Rows live in the legacy tables of ``Database.tables`` under
their legacy names (``Job`` is an order, ``Invoice`` its invoice, ``OrderItem`` and
``InvoiceItem`` its lines, ``Payment``/``InvoicePayment`` its payments); the XML-RPC
``InvoiceService``/``OrderService`` methods (commerce_services.py) and the REST v2 ``/orders``,
``/products``... resources (rest/orders.py, rest/products.py) both go through the operations
below, so a payment recorded through one is seen by the other.

As in Keap, an order's id (``Job.Id``) and its invoice's id (``Invoice.Id``) are different
numbers: invoice ids start at ``INVOICE_BASE``. Money is a double in legacy rows (dollars);
REST shows it in minor units (``CurrencyValue.amount``) or as a float, per the SDK models.
Invoice totals are recomputed after every change of items or payments.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from shim.simulator.faults import invalid, not_found
from shim.xmlrpc import Value

Row = dict[str, Value]
#: First invoice id (orders start at 1): the two must never be mixed up.
INVOICE_BASE = 501


#: Legacy order item types -> REST ``item_type`` (docs/keap.md#services).
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
#: REST ``item_type`` -> the legacy type a REST-made item shows.
LEGACY_ITEM_TYPES: dict[str, int] = {
    **{name: number for number, name in sorted(ITEM_TYPES.items(), reverse=True)},
    "PRODUCT": 4,
    "OTHER": 3,
    "SERVICE": 3,
    "UPSELL": 5,
    "PROGRAM": 8,
    "FEE": 3,
    "TIP": 3,
    "UNKNOWN": 3,
}
#: Manual payment types configured in the simulated app (REST rejects any other).
MANUAL_TYPES = ("Credit Card (Manual)", "Check", "Cash", "Money Order", "Adjustment")
#: A card whose last four digits are these is declined (like processors' test cards).
DECLINED_LAST4 = "0002"
DECLINE_MESSAGE = "Card declined: insufficient funds"

#: A product row's stock count: not a legacy column (ProductService.getInventory and REST's
#: ``inventory.inventory_count`` read it); a product without one has 0.
INVENTORY = "InventoryCount"


def stock(product: Row) -> int:
    """A product row's stock count (0 when it has none)."""
    count = product.get(INVENTORY)
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


#: An invoice row's payment plan (addPaymentPlan, an order's ``payment_plan``).
PAY_PLAN = "PaymentPlan"
#: The simulated app's one merchant account (a Keap Payments one); charges go through it
#: unless a legacy call names another.
MERCHANT_ID = 1
#: When a CCharge row was charged: not a legacy column (legacy kept no time on a charge);
#: REST's ``transaction_time`` reads it.
CHARGED_AT = "ChargeTime"

#: Seeded rows: (table, id, values).
_SEED: list[tuple[str, int, dict[str, Any]]] = [
    ("ProductCategory", 3, {"CategoryDisplayName": "Books", "CategoryOrder": 1}),
    ("ProductCategory", 5, {"CategoryDisplayName": "Courses", "CategoryOrder": 2}),
    ("ProductCategoryAssign", 1, {"ProductCategoryId": 3, "ProductId": 21}),
    (
        "Product",
        21,
        {"ProductName": "Notebook", "ProductPrice": 12.5, "Sku": "NB-1", "Status": 1}
        | {"ShortDescription": "A notebook", "Taxable": 1, "Shippable": 1, "Weight": 0.5}
        | {INVENTORY: 40},
    ),
    (
        "Product",
        22,
        {"ProductName": "Video course", "ProductPrice": 99.0, "Sku": "VC-1", "Status": 1}
        | {"ShortDescription": "Ten lessons", "Taxable": 0, "Shippable": 0},
    ),
    ("Product", 23, {"ProductName": "Old poster", "ProductPrice": 5.0, "Sku": "OP", "Status": 0}),
    (
        "SubscriptionPlan",
        41,
        {"ProductId": 22, "Cycle": 2, "Frequency": 1, "PlanPrice": 19.99, "Active": 1}
        | {"Prorate": 0, "NumberOfCycles": 0},
    ),
    (
        "Affiliate",
        61,
        {"AffName": "Partner One", "AffCode": "P1", "Status": 1, "NotifyLead": 1, "NotifySale": 0}
        | {"LeadCookieFor": 30},
    ),
    (
        "CreditCard",
        81,
        {"ContactId": 1, "NameOnCard": "Card Holder", "Last4": "1111", "CardType": "Visa"}
        | {"ExpirationMonth": "12", "ExpirationYear": "2030", "Status": 3},
    ),
    (
        "CreditCard",
        82,
        {"ContactId": 1, "NameOnCard": "Card Holder", "Last4": DECLINED_LAST4, "CardType": "Visa"}
        | {"ExpirationMonth": "01", "ExpirationYear": "2031", "Status": 3},
    ),
]
#: Product total discounts (``DiscountService.*ProductTotalDiscount``, REST
#: ``/discounts/products``): no DataService table holds them, so they live apart from
#: ``tables``. ``PercentOrAmt`` 1 is a percentage, 0 an amount (addProductTotalDiscount).
_DISCOUNTS: dict[int, dict[str, Any]] = {
    7: {"Name": "Notebook 10% off", "Description": "Back to school", "ApplyToCommission": 1}
    | {"ProductId": 21, "PercentOrAmt": 1, "Amt": 10.0},
    8: {"Name": "Course $20 off", "Description": None, "ApplyToCommission": 0}
    | {"ProductId": 22, "PercentOrAmt": 0, "Amt": 20.0},
}


def _seeded_discounts() -> dict[int, Row]:
    return {record_id: {"Id": record_id, **values} for record_id, values in _DISCOUNTS.items()}


#: Legacy SubscriptionPlan.Cycle -> REST billing cycle (1 year, 2 month, 3 week, 6 day).
CYCLES = {1: "YEARLY", 2: "MONTHLY", 3: "WEEKLY", 6: "DAILY"}


#: Column defaults of new rows (Keap's MySQL columns: 0/1 flags are NOT NULL DEFAULT 0).
_FLAGS = "Taxable Shippable Status HideInStore IsPackage NeedsDigitalDelivery CountryTaxable"
DEFAULTS: dict[str, dict[str, Value]] = {
    "Product": dict.fromkeys([*_FLAGS.split(), "StateTaxable", "CityTaxable"], 0),
}


def seed(tables: dict[str, dict[int, Row]], next_id: dict[str, int]) -> None:
    for table, record_id, values in _SEED:
        tables[table][record_id] = {"Id": record_id, **DEFAULTS.get(table, {}), **values}
        next_id[table] = max(next_id.get(table, 1), record_id + 1)
    next_id["Invoice"] = max(next_id.get("Invoice", 1), INVOICE_BASE)


def cents(amount: float) -> int:
    """Dollars (a legacy double) in minor units, as REST's ``CurrencyValue.amount``."""
    return round(amount * 100)


def dollars(minor: int) -> float:
    return minor / 100


@dataclass
class Commerce:
    """The operations both protocols run on one app's tables (``Database.tables``)."""

    tables: dict[str, dict[int, Row]]
    next_id: dict[str, int]
    product_discounts: dict[int, Row] = field(default_factory=_seeded_discounts)

    def _new(self, table: str, **values: Value) -> int:
        record_id = self.next_id.get(table, 1)
        self.next_id[table] = record_id + 1
        self.tables[table][record_id] = {"Id": record_id, **values}
        return record_id

    # -- lookups --
    def invoice(self, invoice_id: int) -> Row:
        row = self.tables["Invoice"].get(invoice_id)
        if row is None:
            raise not_found()
        return row

    def invoice_of_job(self, job_id: int) -> Row:
        for row in self.tables["Invoice"].values():
            if row.get("JobId") == job_id:
                return row
        raise not_found()

    def product_discount(self, discount_id: int) -> Row:
        row = self.product_discounts.get(discount_id)
        if row is None:
            raise not_found()
        return row

    def card(self, card_id: int) -> Row:
        row = self.tables["CreditCard"].get(card_id)
        if row is None:
            raise not_found()
        return row

    def items_of(self, job_id: int) -> list[Row]:
        rows = self.tables["OrderItem"].values()
        return sorted((r for r in rows if r.get("OrderId") == job_id), key=_id)

    def payments_of(self, invoice_id: int) -> list[Row]:
        rows = self.tables["Payment"].values()
        return sorted((r for r in rows if r.get("InvoiceId") == invoice_id), key=_id)

    def invoice_payments_of(self, invoice_id: int) -> list[Row]:
        rows = self.tables["InvoicePayment"].values()
        return sorted((r for r in rows if r.get("InvoiceId") == invoice_id), key=_id)

    # -- orders --
    def create_order(
        self,
        contact_id: int,
        title: str,
        when: datetime.datetime,
        lead_affiliate: int | None,
        sale_affiliate: int | None,
        now: datetime.datetime,
        contacts: dict[int, Row],
        order_type: str = "Offline",
    ) -> int:
        """A blank order and its invoice; returns the invoice id."""
        if contact_id not in contacts:
            raise not_found()
        for affiliate in (lead_affiliate, sale_affiliate):
            if affiliate and affiliate not in self.tables["Affiliate"]:
                raise invalid(f"Affiliate {affiliate} does not exist")
        job_id = self._new(
            "Job",
            JobTitle=title or None,
            ContactId=contact_id,
            StartDate=when,
            DateCreated=when,
            OrderType=order_type,
            OrderStatus=0,
            LastUpdated=now,
        )
        return self.invoice_for_job(job_id, now, lead_affiliate, sale_affiliate)

    def invoice_for_job(
        self,
        job_id: int,
        now: datetime.datetime,
        lead_affiliate: int | None = None,
        sale_affiliate: int | None = None,
    ) -> int:
        """The invoice of an order's ``Job`` row: a blank order's, or one added bare
        (``DataService.add('Job')``): every order has one, as every order REST makes does, so
        REST can serve it."""
        job = self.tables["Job"][job_id]
        title = job.get("JobTitle")
        return self._new(
            "Invoice",
            ContactId=job.get("ContactId"),
            JobId=job_id,
            DateCreated=job.get("StartDate") or now,
            InvoiceTotal=0.0,
            TotalPaid=0.0,
            TotalDue=0.0,
            PayStatus=0,
            CreditStatus=0,
            RefundStatus=0,
            PayPlanStatus=0,
            LeadAffiliateId=lead_affiliate or None,
            AffiliateId=sale_affiliate or None,
            Description=title if isinstance(title, str) and title else None,
            InvoiceType=job.get("OrderType") or "Offline",
            Synced=0,
            LastUpdated=now,
        )

    def add_item(
        self,
        invoice_id: int,
        product_id: int | None,
        item_type: int,
        price: float | None,
        quantity: int,
        name: str | None,
        description: str | None,
        notes: str | None,
        now: datetime.datetime,
        plan_id: int | None = None,
        cost: float | None = None,
    ) -> int:
        """One line on the invoice's order; ``price`` None takes the product's price."""
        invoice = self.invoice(invoice_id)
        if item_type not in ITEM_TYPES:
            raise invalid(f"Invalid order item type: {item_type}")
        if quantity < 1:
            raise invalid("Quantity must be at least 1")
        product = None
        if product_id:
            product = self.tables["Product"].get(product_id)
            if product is None:
                raise not_found()
        if product is None and ITEM_TYPES[item_type] in ("PRODUCT", "SUBSCRIPTION"):
            raise invalid("A product item needs a product")
        if price is None:
            price = _money(product.get("ProductPrice")) if product else 0.0
        product_name = (
            str(product["ProductName"]) if product and product.get("ProductName") else None
        )
        item_id = self._new(
            "OrderItem",
            OrderId=invoice["JobId"],
            ProductId=product_id or None,
            SubscriptionPlanId=plan_id,
            ItemName=name or product_name or description or None,
            Qty=quantity,
            CPU=0.0 if cost is None else float(cost),
            PPU=float(price),
            ItemDescription=description or None,
            ItemType=item_type,
            Notes=notes or None,
        )
        self._new(
            "InvoiceItem",
            InvoiceId=invoice_id,
            OrderItemId=item_id,
            InvoiceAmt=round(float(price) * quantity, 2),
            Discount=0.0,
            DateCreated=now,
            Description=description or name or product_name or None,
            CommissionStatus=0,
        )
        self.recompute(invoice_id, now)
        return item_id

    def add_line(self, values: Row, now: datetime.datetime) -> int:
        """``DataService.add('OrderItem', values)`` (values checked and coerced): a line on the
        order ``OrderId`` with the checks of ``add_item``, the item's own first (a known type,
        defaulting to 4 as REST's to PRODUCT; a quantity; a product on a product line), then
        the order. A type 9 line may lack its plan (legacy kept no such rule; REST does)."""
        item_type = _int(values.get("ItemType")) or 4
        quantity = _int(values.get("Qty"))
        product_id = _opt(values.get("ProductId"))
        if item_type not in ITEM_TYPES:
            raise invalid(f"Invalid order item type: {item_type}")
        if quantity < 1:
            raise invalid("Quantity must be at least 1")
        if product_id is None and ITEM_TYPES[item_type] in ("PRODUCT", "SUBSCRIPTION"):
            raise invalid("A product item needs a product")
        invoice = self.invoice_of_job(_int(values.get("OrderId")))
        return self.add_item(
            _id(invoice),
            product_id,
            item_type,
            _price(values.get("PPU")),
            quantity,
            _text(values.get("ItemName")),
            _text(values.get("ItemDescription")),
            _text(values.get("Notes")),
            now,
            plan_id=_opt(values.get("SubscriptionPlanId")),
            cost=_price(values.get("CPU")),
        )

    def update_line(self, item_id: int, values: Row, now: datetime.datetime) -> None:
        """An order item's columns changed (``DataService.update`` and REST's PATCH): its
        invoice line follows, and the totals of its invoice (both, if it moved) are redone."""
        item = self.tables["OrderItem"].get(item_id)
        if item is None:
            raise not_found()
        before = _int(item.get("OrderId"))
        if "OrderId" in values:
            self.invoice_of_job(_int(values["OrderId"]))  # the order it moves to must exist
        item.update(values)
        line = next(
            (r for r in self.tables["InvoiceItem"].values() if r.get("OrderItemId") == item_id),
            None,
        )
        if line is not None:
            invoice = self.invoice_of_job(_int(item.get("OrderId")))
            line["InvoiceId"] = invoice["Id"]
            line["InvoiceAmt"] = round(_money(item.get("PPU")) * _int(item.get("Qty")), 2)
            line["Description"] = item.get("ItemDescription") or item.get("ItemName")
        for job_id in {before, _int(item.get("OrderId"))}:
            for invoice in self.tables["Invoice"].values():
                if invoice.get("JobId") == job_id:
                    self.recompute(_id(invoice), now)

    def recompute(self, invoice_id: int, now: datetime.datetime) -> None:
        invoice = self.invoice(invoice_id)
        job_id = invoice["JobId"]
        assert isinstance(job_id, int)
        total = sum(cents(_money(i.get("PPU"))) * _int(i.get("Qty")) for i in self.items_of(job_id))
        paid = sum(cents(_money(p.get("PayAmt"))) for p in self.payments_of(invoice_id))
        invoice["InvoiceTotal"] = dollars(total)
        invoice["TotalPaid"] = dollars(paid)
        invoice["TotalDue"] = dollars(total - paid)
        invoice["PayStatus"] = 1 if total > 0 and paid >= total else 0
        invoice["LastUpdated"] = now
        self.tables["Job"][job_id]["LastUpdated"] = now

    def owed(self, invoice_id: int) -> float:
        invoice = self.invoice(invoice_id)
        return dollars(
            cents(_money(invoice.get("InvoiceTotal"))) - cents(_money(invoice.get("TotalPaid")))
        )

    def add_payment(
        self,
        invoice_id: int,
        amount: float,
        when: datetime.datetime,
        pay_type: str,
        note: str | None,
        skip_commission: bool,
        now: datetime.datetime,
        status: str = "MANUAL_PAID",
        charge_id: int | None = None,
    ) -> int:
        """A payment against the invoice (Payment + InvoicePayment rows); returns its id."""
        invoice = self.invoice(invoice_id)
        payment_id = self._new(
            "Payment",
            PayDate=when,
            UserId=1,
            PayAmt=float(amount),
            PayType=pay_type,
            ContactId=invoice["ContactId"],
            PayNote=note or None,
            InvoiceId=invoice_id,
            ChargeId=charge_id,
            Synced=0,
            LastUpdated=now,
        )
        self._new(
            "InvoicePayment",
            InvoiceId=invoice_id,
            Amt=float(amount),
            PayDate=when,
            PayStatus=status,
            PaymentId=payment_id,
            SkipCommission=1 if skip_commission else 0,
            LastUpdated=now,
        )
        self.recompute(invoice_id, now)
        return payment_id

    def charge(
        self,
        invoice_id: int,
        note: str | None,
        card_id: int,
        skip: bool,
        now: datetime.datetime,
        merchant_id: int = MERCHANT_ID,
    ) -> tuple[str, float, int | None]:
        """Charge the balance to a card: ("APPROVED", amount, payment id), ("DECLINED", ...) or
        ("SKIPPED", 0, None) when nothing is owed. Unknown invoice or card: RecordNotFound."""
        invoice = self.invoice(invoice_id)
        card = self.card(card_id)
        if card.get("ContactId") != invoice.get("ContactId"):
            raise not_found()  # another contact's card
        balance = self.owed(invoice_id)
        if balance <= 0:
            return "SKIPPED", 0.0, None
        code, payment_id = self.charge_amount(
            invoice_id, balance, card_id, note, skip, now, merchant_id
        )
        return code, balance, payment_id

    def charge_amount(
        self,
        invoice_id: int,
        amount: float,
        card_id: int,
        note: str | None,
        skip: bool,
        now: datetime.datetime,
        merchant_id: int = MERCHANT_ID,
    ) -> tuple[str, int | None]:
        """One charge attempt of ``amount`` (checked by the caller): a CCharge row either way;
        approved, a payment too (its ChargeId names the charge). ("APPROVED", payment id) or
        ("DECLINED", None)."""
        card = self.card(card_id)
        job_id = self.invoice(invoice_id)["JobId"]
        declined = card.get("Last4") == DECLINED_LAST4
        payment_id = None
        if not declined:
            payment_id = self.add_payment(
                invoice_id, amount, now, "Credit Card", note, skip, now, "APPROVED"
            )
        charge_id = self._new(
            "CCharge",
            CCId=card_id,
            PaymentId=payment_id,
            MerchantId=merchant_id,
            OrderNum=str(job_id),
            RefNum=None if payment_id is None else f"T{payment_id}",
            ApprCode=None if payment_id is None else f"AP{payment_id:04d}",
            Amt=float(amount),
            **{CHARGED_AT: now},
        )
        if payment_id is None:
            return "DECLINED", None
        self.tables["Payment"][payment_id]["ChargeId"] = charge_id
        return "APPROVED", payment_id

    def delete_invoice(self, invoice_id: int) -> None:
        invoice = self.invoice(invoice_id)
        job_id = invoice["JobId"]
        assert isinstance(job_id, int)
        for item in self.items_of(job_id):
            del self.tables["OrderItem"][_id(item)]
        for table in ("InvoiceItem", "Payment", "InvoicePayment"):
            rows = self.tables[table]
            for record_id in [k for k, r in rows.items() if r.get("InvoiceId") == invoice_id]:
                del rows[record_id]
        del self.tables["Invoice"][invoice_id]
        self.tables["Job"].pop(job_id, None)

    # -- subscriptions --
    def add_subscription(
        self,
        contact_id: int,
        allow_duplicate: bool,
        plan_id: int,
        card_id: int | None,
        affiliate_id: int | None,
        start: datetime.datetime,
        now: datetime.datetime,
        contacts: dict[int, Row],
        merchant_id: int | None = None,
    ) -> int:
        if contact_id not in contacts:
            raise not_found()
        plan = self.tables["SubscriptionPlan"].get(plan_id)
        if plan is None:
            raise not_found()
        if card_id:
            self.card(card_id)
        if not allow_duplicate:
            for row in self.tables["RecurringOrder"].values():
                same = (
                    row.get("ContactId") == contact_id and row.get("SubscriptionPlanId") == plan_id
                )
                if same and row.get("Status") == "Active":
                    raise invalid("The contact already has this subscription")
        cycle = _int(plan.get("Cycle"))
        return self._new(
            "RecurringOrder",
            ContactId=contact_id,
            ProgramId=plan_id,
            SubscriptionPlanId=plan_id,
            ProductId=plan.get("ProductId"),
            StartDate=start,
            NextBillDate=start,
            BillingCycle=str(cycle),
            Frequency=plan.get("Frequency"),
            BillingAmt=plan.get("PlanPrice"),
            Status="Active",
            AutoCharge=1,
            CC1=card_id or None,
            MerchantAccountId=merchant_id or None,
            AffiliateId=affiliate_id or None,
            Qty=1,
            LastUpdated=now,
        )

    def set_next_bill_date(
        self, recurring_id: int, when: datetime.datetime, now: datetime.datetime
    ) -> None:
        """A subscription's next bill date (the day; a time of day is dropped)."""
        row = self.tables["RecurringOrder"].get(recurring_id)
        if row is None:
            raise not_found()
        row["NextBillDate"] = when.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        row["LastUpdated"] = now

    def set_pay_plan(self, invoice_id: int, card_id: int, plan: dict[str, Any]) -> None:
        """A payment plan on an invoice (kept on the invoice row, ``PAY_PLAN``; not a legacy
        column): its PayPlanStatus becomes 1. The card, when given, must exist."""
        invoice = self.invoice(invoice_id)
        if card_id and card_id not in self.tables["CreditCard"]:
            raise not_found()
        if _int(plan.get("number_of_payments")) < 1:
            raise invalid("The number of payments must be at least 1")
        invoice[PAY_PLAN] = {**plan, "credit_card_id": card_id}
        invoice["PayPlanStatus"] = 1

    def deactivate_card(self, card_id: int) -> None:
        """A card's Status becomes 4 (inactive; legacy: 3 valid, 4 inactive)."""
        row = self.tables["CreditCard"].get(card_id)
        if row is None:
            raise not_found()
        row["Status"] = 4

    def invoice_subscription(
        self, recurring_id: int, now: datetime.datetime, contacts: dict[int, Row]
    ) -> int:
        """An invoice for the subscription's next bill: one SUBSCRIPTION item at its price."""
        row = self.tables["RecurringOrder"].get(recurring_id)
        if row is None:
            raise not_found()
        contact_id = _int(row.get("ContactId"))
        invoice_id = self.create_order(
            contact_id, "Subscription", now, None, _opt(row.get("AffiliateId")), now, contacts
        )
        job = self.tables["Job"][_int(self.invoice(invoice_id)["JobId"])]
        job["JobRecurringId"] = recurring_id
        self.add_item(
            invoice_id,
            _opt(row.get("ProductId")),
            9,
            _money(row.get("BillingAmt")),
            _int(row.get("Qty")) or 1,
            None,
            None,
            None,
            now,
            plan_id=_opt(row.get("SubscriptionPlanId")),
        )
        return invoice_id


def row_of(rows: dict[int, Row], key: Value) -> Row | None:
    """``rows[key]`` for a legacy id value (None for no id or an unknown one)."""
    return rows.get(key) if isinstance(key, int) and not isinstance(key, bool) else None


def _id(row: Row) -> int:
    return _int(row["Id"])


def _int(value: Value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _opt(value: Value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value else None


def _price(value: Value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: Value) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _money(value: Value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
