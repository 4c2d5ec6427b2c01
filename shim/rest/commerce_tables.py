"""The commerce DataService tables over REST v2: one ``TableSpec`` per legacy table.

Legacy types: money is a double of dollars; REST answers it as a ``CurrencyValue`` (``amount``
in minor units) on products, orders and their items, as a float on payments and
subscriptions, and takes a product ``price`` as an int of minor units. Legacy 0/1 flags are
REST booleans. These differences are ``Convert``s on the columns.

Where REST has no record to stand for a legacy row:

* ``Invoice`` is the invoice half of an order (``OrderV2``: ``invoice_id``, totals, status);
  ``Job`` the order half. Loading an invoice lists ``/orders?filter=invoice_id==``.
* ``OrderItem`` and ``InvoiceItem`` are the ``order_items`` of orders: an exact ``OrderId``
  (``InvoiceId``) reads one order, anything else reads orders (bounded by SCAN_LIMIT) and
  filters their items. REST has no invoice item of its own: ``InvoiceItem.Id`` is the order
  item's id.
* ``CreditCard`` is ``/paymentMethods`` (``credit_card_id`` keeps the legacy id): never the
  number; names and the billing address have no REST equivalent.
* ``Payment`` is ``/sales/payments``; it names orders, not invoices, so ``InvoiceId`` is
  missing (InvoiceService.getPayments answers it per invoice).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from shim.errors import NotFound, NoTranslation
from shim.rest import criteria as crit
from shim.rest import legacy, order_items
from shim.rest.contact_map import parse_rest_time
from shim.rest.context import Ctx
from shim.rest.listing import SCAN_LIMIT, Row, prepare, project
from shim.rest.orders import (
    ITEM_TYPES,
    LEGACY_ITEM_TYPES,
    number,
    order_id,
    payment_method,
    remember,
    remember_items,
    rest_time,
)
from shim.rest.spec import Column, Convert, TableSpec, missing, rest_only
from shim.xmlrpc import Value


def _cents_read(raw: Any) -> Value:
    amount = raw.get("amount") if isinstance(raw, dict) else raw
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        return None
    return amount / 100


def _cents_write(value: Value) -> Any:
    return round(float(value) * 100) if isinstance(value, (int, float)) else None


def _float_read(raw: Any) -> Value:
    return float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None


def _flag_write(value: Value) -> Any:
    return None if value is None else bool(value)


def _words(mapping: dict[str, Value]) -> Convert:
    """An enum: REST word <-> legacy value (an unknown word reads as itself)."""
    back = {v: k for k, v in mapping.items()}
    return Convert(lambda raw: mapping.get(str(raw), raw), lambda value: back.get(value, value))


#: A ``CurrencyValue`` (or int of minor units when written) <-> a legacy double.
MONEY = Convert(_cents_read, _cents_write)
#: A float of dollars <-> a legacy double.
FLOAT = Convert(_float_read, lambda value: value)
#: A REST boolean <-> legacy 0/1.
FLAG = Convert(lambda raw: 1 if raw is True else 0, _flag_write)
ORDER_TYPE = _words({"ONLINE": "Online", "OFFLINE": "Offline"})
PAY_STATUS = Convert(lambda raw: 1 if raw == "PAID" else 0, lambda value: None)
#: A subscription's ``billing_cycle`` is YEAR, MONTH, WEEK or DAY (SDK ``Subscription``; a
#: plan's ``cycle_type`` says YEARLY...): written so, read in either spelling.
_CYCLE_NUMBERS = {"YEAR": "1", "MONTH": "2", "WEEK": "3", "DAY": "6"}
_CYCLE_NUMBERS |= {"YEARLY": "1", "MONTHLY": "2", "WEEKLY": "3", "DAILY": "6"}


def _cycle_write(value: Value) -> str:
    word = {"1": "YEAR", "2": "MONTH", "3": "WEEK", "6": "DAY"}.get(str(value))
    if word is None:
        raise NoTranslation(
            f"RecurringOrder.BillingCycle {value!r}: REST v2 bills yearly (1), monthly (2), "
            "weekly (3) or daily (6) only"
        )
    return word


CYCLE = Convert(lambda raw: _CYCLE_NUMBERS.get(str(raw), raw), _cycle_write)


def _active_write(value: Value) -> bool:
    if value not in ("Active", "Inactive"):
        raise NoTranslation(
            f"RecurringOrder.Status {value!r}: REST v2 has only active (Active) or not (Inactive)"
        )
    return value == "Active"


ACTIVE = Convert(lambda raw: "Active" if raw is True else "Inactive", _active_write)
#: A REST date (``YYYY-MM-DD``): a legacy dateTime's day is written, its time of day dropped.
DAY = Convert(
    lambda raw: parse_rest_time(str(raw)),
    lambda value: value.strftime("%Y-%m-%d") if isinstance(value, datetime.datetime) else None,
)
AFFILIATE_STATUS = Convert(lambda raw: 1 if raw == "ACTIVE" else 0, lambda value: None)
CARD_BRAND = Convert(lambda raw: str(raw).title(), lambda value: value)
ITEM_TYPE = Convert(
    lambda raw: LEGACY_ITEM_TYPES.get(str(raw)),
    lambda value: ITEM_TYPES.get(value) if isinstance(value, int) else None,
)
#: An order item's money: read as a ``CurrencyValue``, written as a float of dollars
#: (CreateOrderItemRequest / UpdateOrderItemRequest ``price_per_unit``, ``cost_per_unit``).
ITEM_MONEY = Convert(
    _cents_read, lambda value: float(value) if isinstance(value, (int, float)) else None
)


def flag(prop: str, **kw: Any) -> Column:
    return Column("int", prop, convert=FLAG, **kw)


def ro(type_: Any, prop: str, **kw: Any) -> Column:
    return rest_only(type_, prop, **kw)


def none(type_: Any = "str", note: str = "") -> Column:
    return missing(type_, note)


def exact_id(compiled: list[crit.Criterion], name: str) -> int | None:
    """The id an exact criterion on ``name`` asks for, if any."""
    for c in compiled:
        if c.field == name and c.op == "=" and isinstance(c.raw, int):
            return c.raw
    return None


class LoadByFilter(TableSpec):
    """A spec whose records have no REST item path: ``load`` lists with the Id filter."""

    async def load(self, ctx: Ctx, record_id: int, names: list[str]) -> Value:
        if record_id < 1:
            await self.query(ctx, 1, 0, {}, names, None, True)  # the legacy field checks
            raise NotFound()
        rows = await self.query(ctx, 1, 0, {"Id": record_id}, names, None, True)
        if not isinstance(rows, list) or not rows:
            raise NotFound()
        return rows[0]


class NoLoad(TableSpec):
    """A spec REST lists but cannot read one record of (no item path, no id filter)."""

    loads = False
    #: What the load fault says after the table's name.
    why_no_load: ClassVar[str] = "REST v2 has no read of one"

    async def load(self, ctx: Ctx, record_id: int, names: list[str]) -> Value:
        raise NoTranslation(f"DataService.load on table {self.table}: {self.why_no_load}")


PRODUCT = TableSpec(
    "Product",
    "/products",
    "products",
    {
        "Id": ro("int", "id", filter="product_id", compare=True),
        "ProductName": Column("str", "name", filter="name", wildcard=True),
        "ProductPrice": Column("float", "price", convert=MONEY, note="cents in REST: rounded"),
        "Sku": Column("str", "sku", filter="sku", wildcard=True),
        "ShortDescription": Column("str", "short_description", filter="short_description"),
        "Description": Column("str", "description", filter="description"),
        "Taxable": flag("taxable"),
        "Shippable": flag("shippable"),
        "Weight": Column("float", "weight", convert=FLOAT),
        "Status": flag("active"),
        "HideInStore": flag("storefront_hidden"),
        "IsPackage": flag("is_package"),
        "NeedsDigitalDelivery": flag("needs_digital_delivery"),
        "CountryTaxable": flag("country_taxable"),
        "StateTaxable": flag("state_taxable"),
        "CityTaxable": flag("city_taxable"),
        "TopHTML": Column("str", "top_html"),
        "BottomHTML": Column("str", "bottom_html"),
    },
    orders={"ProductName": "name", "Sku": "sku"},
    notes="REST requires a price and a short description on create: 0 and empty are sent "
    "when a script gives none; flags read back 0 when REST leaves them out (legacy: empty)",
    fidelity="approximate",
    add_defaults={"price": 0, "short_description": ""},
)
PRODUCT_CATEGORY = TableSpec(
    "ProductCategory",
    "/productCategories",
    "product_categories",
    {
        "Id": ro("int", "id", filter="product_category_id", compare=True),
        "CategoryDisplayName": Column("str", "name", filter="name", wildcard=True),
        "CategoryOrder": Column("int", "display_order_index"),
        "ParentId": Column("int", "parent_category_id", text_id=True),
    },
    orders={"Id": "id"},
    writes=frozenset({"add"}),
)
AFFILIATE = TableSpec(
    "Affiliate",
    "/affiliates",
    "affiliates",
    {
        "Id": ro("int", "id"),
        "ContactId": Column("int", "contact_id", filter="contact_id", text_id=True),
        "ParentId": Column("int", "parent_affiliate_id", text_id=True),
        "AffName": Column("str", "name", filter="name", wildcard=True),
        "AffCode": Column("str", "code", filter="code"),
        "Status": Column("int", "status", convert=AFFILIATE_STATUS, note="ACTIVE is 1"),
        "NotifyLead": flag("notify_on_lead"),
        "NotifySale": flag("notify_on_sale"),
        "LeadCookieFor": Column("int", "track_leads_days"),
        "LeadAmt": none("float"),
        "LeadPercent": none("float"),
        "SaleAmt": none("float"),
        "SalePercent": none("float"),
        "PayoutType": none("int"),
    },
    orders={"Id": "id"},
    writes=frozenset(),
    notes="commission amounts live in REST commission programs, not on the affiliate",
    fidelity="approximate",
)
REFERRAL = NoLoad(
    "Referral",
    "/referrals",
    "referrals",
    {
        "Id": ro("int", "id"),
        "ContactId": Column("int", "contact_id", filter="contact_id", compare=True, text_id=True),
        "AffiliateId": Column(
            "int", "referral_partner_id", filter="referral_partner_id", compare=True, text_id=True
        ),
        "DateSet": Column("date", "referral_time"),
        "DateExpires": Column("date", "expiration_time"),
        "IPAddress": Column("str", "ip_address"),
        "Source": Column("str", "source", filter="source", wildcard=True),
        "Info": Column("str", "description", filter="description", wildcard=True),
        "Type": Column("int", "referral_type", text_id=True, note="REST type as a number"),
    },
    orders={"Id": "id"},
    writes=frozenset({"add"}),
    notes="load has no REST equivalent (no single-referral read, no id filter)",
    fidelity="approximate",
)
_CARD_HOLDER = "NameOnCard FirstName LastName Email BillAddress1 BillCity BillState BillZip"
_CARD_HOLDER += " BillCountry"
CREDIT_CARD = LoadByFilter(
    "CreditCard",
    "/paymentMethods",
    "payment_methods",
    {
        "Id": ro("int", "credit_card_id", filter="credit_card_id"),
        "ContactId": Column("int", "contact_id", filter="contact_id", text_id=True),
        "Last4": Column("str", "card_info.last_four"),
        "CardType": Column("str", "card_info.brand", convert=CARD_BRAND, note="REST brand"),
        "ExpirationMonth": Column("str", "card_info.expiration_month"),
        "ExpirationYear": Column("str", "card_info.expiration_year"),
        **{name: none() for name in _CARD_HOLDER.split()},
        "Status": none("int"),
    },
    writes=frozenset(),
    notes="read-only: REST stores cards only through its payment forms; never the number",
    fidelity="approximate",
)


class SubscriptionSpec(TableSpec):
    """RecurringOrder: an update is ``PATCH /subscriptions/{id}``; ``CC1`` (a legacy card) is
    sent as that card's payment method, looked up first. A field the PATCH cannot set passes
    when it repeats the value the subscription has (a script writing back a whole record), and
    is refused naming it otherwise."""

    async def update(self, ctx: Ctx, record_id: int, data: Mapping[str, Value]) -> int:
        self._check_write("update")
        values = legacy.writable(self.table, self.fields, dict(data))
        if record_id < 1:
            raise NotFound()
        cards = {"CC1": values.pop("CC1")} if "CC1" in values else {}
        fixed = [n for n in values if not (self.columns[n].prop and self.columns[n].rest_writable)]
        if fixed:
            current = self.row(await ctx.client.get(self.item_path(record_id)))
            for name in fixed:
                if values[name] == current.get(name):
                    del values[name]
        body = self.body(values)
        for card in cards.values():  # 0 or none: the subscription keeps no payment method
            body["payment_method_id"] = (
                await payment_method(ctx, card, None)
                if isinstance(card, int) and card > 0
                else None
            )
        params = [("update_mask", prop) for prop in body]
        path = self.item_path(record_id)
        await ctx.client.json("PATCH", path, params=params, json_body=body)
        return record_id


_NO_PATCH = "UpdateSubscriptionRequest has no such property"
RECURRING_ORDER = SubscriptionSpec(
    "RecurringOrder",
    "/subscriptions",
    "subscriptions",
    {
        "Id": ro("int", "id", filter="id", compare=True),
        "ContactId": Column("int", "contact_id", filter="contact_id", text_id=True),
        "OriginatingOrderId": none("int"),
        "ProgramId": Column("int", "subscription_plan_id", text_id=True,
                            note="the plan, as SubscriptionPlanId"),
        "SubscriptionPlanId": Column(
            "int", "subscription_plan_id", filter="subscription_plan_id", text_id=True
        ),
        "ProductId": Column("int", "product_id", text_id=True, rest_writable=False,
                            note=_NO_PATCH),
        "StartDate": Column("date", "start_date", rest_writable=False, note=_NO_PATCH),
        "EndDate": Column("date", "end_date", convert=DAY,
                          note="a date; REST refuses one in the past"),
        "LastBillDate": Column("date", "last_bill_date", rest_writable=False, note=_NO_PATCH),
        "NextBillDate": Column("date", "next_bill_date", convert=DAY,
                               note="a date; REST refuses one in the past"),
        "PaidThruDate": none("date"),
        "BillingCycle": Column("str", "billing_cycle", convert=CYCLE,
                               note="1 YEAR, 2 MONTH, 3 WEEK, 6 DAY; others refused"),
        "Frequency": Column("int", "billing_frequency"),
        "BillingAmt": Column("float", "billing_amount", convert=FLOAT),
        "Status": Column("str", "active", convert=ACTIVE,
                         note="Active or Inactive (REST's active flag); others refused"),
        "ReasonStopped": Column("str", "reason_stopped"),
        "AutoCharge": flag("auto_charge"),
        "CC1": none("int", "written as the card's payment method (GET /paymentMethods?filter="
                    "credit_card_id==); never read back: REST names a payment method, not a "
                    "card"),
        "CC2": none("int"),
        "NumDaysBetweenRetry": Column("int", "days_between_retries"),
        "MaxRetry": Column("int", "max_charge_attempts"),
        "MerchantAccountId": Column("int", "merchant_account_id", text_id=True,
                                    rest_writable=False, note=_NO_PATCH),
        "AffiliateId": Column("int", "sale_affiliate_id", text_id=True),
        "PromoCode": Column("str", "promo_code"),
        "Qty": Column("int", "quantity"),
        "LastUpdated": ro("date", "modification_time"),
    },
    item="/subscriptions/{id}",
    orders={"Id": "id"},
    writes=frozenset({"update"}),
    notes="add goes through InvoiceService.addRecurringOrder; update is PATCH /subscriptions/{id} "
    "with the UpdateSubscriptionRequest properties (a field it lacks is refused naming it, "
    "unless it repeats the value the subscription has); REST refuses what legacy stored "
    "blindly: a quantity, frequency or retry below 1, a negative amount, a past date, an "
    "unknown contact, plan, affiliate or card ([InvalidParameter], or [RecordNotFound] for "
    "the card); an id of 0 clears it and reads back empty (legacy: 0)",
    fidelity="approximate",
)  # fmt: skip


class JobSpec(TableSpec):
    """``Job``: an add is ``POST /orders``, which needs an order time and type legacy never
    asked for (keyshim's clock, OFFLINE, as createBlankOrder), and makes the order's invoice
    as well."""

    async def add(self, ctx: Ctx, data: Mapping[str, Value]) -> int:
        self._check_write("add")
        values = legacy.writable(self.table, self.fields, dict(data))
        now = datetime.datetime.fromtimestamp(ctx.clock(), datetime.timezone.utc)
        body = {"order_time": rest_time(now), "order_type": "OFFLINE", **self.body(values)}
        order = await ctx.client.json("POST", self.path, json_body=body)
        record_id = number(order.get("id")) if isinstance(order, dict) else None
        if record_id is None:
            raise NotFound("Keap REST answered without the new order's id")
        invoice_id = number(order.get("invoice_id")) if isinstance(order, dict) else None
        if invoice_id is not None:
            remember(ctx, invoice_id, str(order["id"]))
        return record_id


JOB = JobSpec(
    "Job",
    "/orders",
    "orders",
    {
        "Id": ro("int", "id", filter="id", compare=True),
        "JobTitle": Column("str", "title", filter="title", wildcard=True, write="order_title"),
        "ContactId": Column("int", "contact.id", filter="contact_id", write="contact_id",
                            text_id=True),
        "StartDate": Column("date", "order_time"),
        "DueDate": none("date"),
        "JobNotes": Column("str", "notes"),
        "ProductId": none("int"),
        "JobStatus": none(),
        "DateCreated": ro("date", "order_time"),
        "OrderType": Column("str", "order_type", convert=ORDER_TYPE),
        "OrderStatus": none("int"),
        "JobRecurringId": none("int", "REST names no subscription on an order"),
        "LastUpdated": ro("date", "modification_time"),
    },
    orders={"Id": "id", "DateCreated": "order_time"},
    writes=frozenset({"add", "update"}),
    notes="add is POST /orders: REST requires ContactId and JobTitle, the order time is "
    "StartDate or keyshim's clock, the type OFFLINE unless OrderType says, and REST makes the "
    "order's invoice too; update is PATCH /orders/{id}; DateCreated is the order time (so "
    "it follows StartDate)",
    fidelity="approximate",
)  # fmt: skip
INVOICE = LoadByFilter(
    "Invoice",
    "/orders",
    "orders",
    {
        "Id": ro("int", "invoice_id", filter="invoice_id"),
        "ContactId": ro("int", "contact.id", filter="contact_id"),
        "JobId": ro("int", "id", filter="id", compare=True),
        "DateCreated": ro("date", "order_time"),
        "InvoiceTotal": ro("float", "total", convert=MONEY),
        "TotalPaid": ro("float", "total_paid", convert=MONEY),
        "TotalDue": ro("float", "total_due", convert=MONEY),
        "PayStatus": ro("int", "status", convert=PAY_STATUS, note="PAID is 1"),
        "CreditStatus": none("int"),
        "RefundStatus": none("int"),
        "PayPlanStatus": none("int"),
        "AffiliateId": ro("int", "sales_affiliate_id"),
        "LeadAffiliateId": ro("int", "lead_affiliate_id"),
        "PromoCode": ro("str", "promo_code"),
        "InvoiceType": ro("str", "order_type", convert=ORDER_TYPE),
        "Description": ro("str", "title"),
        "ProductSold": none(),
        "Synced": none("int"),
        "LastUpdated": ro("date", "modification_time"),
    },
    legacy_read_only=True,
    notes="the invoice half of /orders; REST orders by order id, not invoice id",
    fidelity="approximate",
)
PAYMENT = LoadByFilter(
    "Payment",
    "/sales/payments",
    "payments",
    {
        "Id": ro("int", "id", filter="id", compare=True),
        "PayDate": ro("date", "payment_time"),
        "UserId": none("int"),
        "PayAmt": ro("float", "amount", convert=FLOAT),
        "PayType": ro("str", "type"),
        "ContactId": ro("int", "contact_id", filter="contact_id"),
        "PayNote": ro("str", "note"),
        "InvoiceId": none("int", "REST names orders (order_ids), not invoices"),
        "RefundId": none("int"),
        "ChargeId": none("int"),
        "Commission": none("float"),
        "Synced": none("int"),
        "LastUpdated": ro("date", "update_time"),
    },
    orders={"Id": "id"},
    legacy_read_only=True,
    notes="InvoiceId has no REST equivalent here: use InvoiceService.getPayments",
    fidelity="approximate",
)


@dataclass(frozen=True)
class OrderLines(TableSpec):
    """OrderItem / InvoiceItem: the ``order_items`` of ``/orders``, one row per item. Columns
    name properties of an item, plus ``order_id``, ``invoice_id`` and ``line_total``."""

    #: The legacy field naming the order (OrderId) or invoice (InvoiceId) of a row.
    parent: str = "OrderId"

    def lines(self, order: Mapping[str, Any]) -> list[Row]:
        out = []
        for item in order.get("order_items") or []:
            if not isinstance(item, dict):
                continue
            price = item.get("price_per_unit")
            amount = price.get("amount") if isinstance(price, dict) else 0
            quantity = item.get("quantity") if isinstance(item.get("quantity"), int) else 0
            line = {
                **item,
                "order_id": order.get("id"),
                "invoice_id": order.get("invoice_id"),
                "line_total": {"amount": (amount or 0) * (quantity or 0)},
                "text": item.get("description") or item.get("name"),
            }
            out.append(self.row(line))
        return out

    async def _rows(self, ctx: Ctx, compiled: list[crit.Criterion]) -> list[Row]:
        exact = exact_id(compiled, self.parent)
        if exact is not None and self.parent == "OrderId":
            try:
                order = await ctx.client.get(f"/orders/{exact}")
            except NotFound:
                return []
            order = order if isinstance(order, dict) else {}
            remember_items(ctx, order)
            return self.lines(order)
        params: list[tuple[str, str]] = []
        if exact is not None:
            params.append(("filter", f"invoice_id=={exact}"))
        rows: list[Row] = []
        token, seen = "", 0
        while True:
            query = [*params, ("page_size", "1000")] + ([("page_token", token)] if token else [])
            answer = await ctx.client.get("/orders", query)
            orders = answer.get("orders") if isinstance(answer, dict) else None
            for order in orders or []:
                if isinstance(order, dict):
                    remember_items(ctx, order)
                    rows.extend(self.lines(order))
            seen += len(orders or [])
            if seen > SCAN_LIMIT:
                raise NoTranslation(
                    f"{self.table}: this call would read more than {SCAN_LIMIT} orders over "
                    f"REST v2; give an exact {self.parent}"
                )
            token = str(answer.get("next_page_token") or "") if isinstance(answer, dict) else ""
            if not token or not orders:
                return rows

    async def query(
        self,
        ctx: Ctx,
        limit: int,
        page: int,
        criteria: Mapping[str, Value],
        names: list[str],
        order_by: str | None,
        ascending: bool,
    ) -> Value:
        compiled, limit = prepare(self.table, self.fields, limit, page, criteria, names, order_by)
        rows = [r for r in await self._rows(ctx, compiled) if crit.matches(compiled, r)]
        rows.sort(key=self.base_key)
        shown = crit.legacy_page(rows, self.fields, order_by, ascending, limit, page)
        return [project(row, names) for row in shown]

    async def count(self, ctx: Ctx, criteria: Mapping[str, Value]) -> int:
        compiled = crit.compile_query(self.table, self.fields, criteria)
        return sum(1 for r in await self._rows(ctx, compiled) if crit.matches(compiled, r))

    async def load(self, ctx: Ctx, record_id: int, names: list[str]) -> Value:
        raise NoTranslation(
            f"DataService.load on table {self.table}: REST v2 reads items through their order; "
            f"query with an exact {self.parent} instead"
        )


class OrderItemSpec(OrderLines):
    """OrderItem: add, update and load through the item's order (order_items.py)."""

    async def add(self, ctx: Ctx, data: Mapping[str, Value]) -> int:
        self._check_write("add")
        values = legacy.writable(self.table, self.fields, dict(data))
        return await order_items.add(ctx, values, self.body)

    async def update(self, ctx: Ctx, record_id: int, data: Mapping[str, Value]) -> int:
        self._check_write("update")
        values = legacy.writable(self.table, self.fields, dict(data))
        return await order_items.update(ctx, record_id, values, self.body)

    async def load(self, ctx: Ctx, record_id: int, names: list[str]) -> Value:
        """The item's order found as an update finds it, then read whole."""
        legacy.check_fields(self.table, self.fields, names)
        if record_id < 1:
            raise NotFound()
        order = await order_items.order_of_item(ctx, record_id, None)
        answer = await ctx.client.get(f"/orders/{order}")
        for row in self.lines(answer if isinstance(answer, dict) else {}):
            if row.get("Id") == record_id:
                return project(row, names)
        raise NotFound()


ORDER_ITEM = OrderItemSpec(
    "OrderItem",
    "/orders",
    "orders",
    {
        "Id": ro("int", "id"),
        "OrderId": Column("int", "order_id", note="required on add; an item cannot move"),
        "ProductId": Column("int", "product.id", write="product_id", text_id=True),
        "SubscriptionPlanId": Column("int", "subscription_plan.id",
                                     write="subscription_plan_id", text_id=True),
        "ItemName": Column("str", "name"),
        "Qty": Column("int", "quantity", note="at least 1"),
        "CPU": Column("float", "cost_per_unit", convert=ITEM_MONEY,
                      note="read in cents: rounded"),
        "PPU": Column("float", "price_per_unit", convert=ITEM_MONEY,
                      note="read in cents: rounded"),
        "ItemDescription": Column("str", "description"),
        "ItemType": Column("int", "item_type", convert=ITEM_TYPE,
                           note="5 and 8 read as 4 and 3; set on add (default 4), "
                           "an update may only repeat it"),
        "Notes": Column("str", "notes"),
    },
    item="/orders/{OrderId}/items/{id}",
    writes=frozenset({"add", "update"}),
    notes="items of /orders (an exact OrderId reads one order; load finds the item's order as "
    "update does); add is POST "
    "/orders/{OrderId}/items with legacy's item checks (a known ItemType, Qty at least 1, a "
    "product on a product line; a subscription line needs its SubscriptionPlanId), blank texts "
    "left out; update is PATCH /orders/{order}/items/{id}: the order is the one keyshim last "
    "saw the item on, else the OrderId given, else found among the most recently modified "
    f"orders (at most {SCAN_LIMIT}; more: [NoRestTranslation] asking for OrderId); a changed "
    "ItemType and moves to another order are refused, a blank text clears it, and REST "
    "refuses a Qty below 1 ([InvalidParameter]) that legacy stored",
    fidelity="approximate",
)  # fmt: skip
INVOICE_ITEM = OrderLines(
    "InvoiceItem",
    "/orders",
    "orders",
    {
        "Id": ro("int", "id", note="the order item's id: REST has no invoice item"),
        "InvoiceId": ro("int", "invoice_id"),
        "OrderItemId": ro("int", "id"),
        "InvoiceAmt": ro("float", "line_total", convert=MONEY, note="price x quantity"),
        "Discount": ro("float", "discount", convert=MONEY),
        "DateCreated": none("date"),
        "Description": ro("str", "text", note="the item's description, else its name"),
        "CommissionStatus": none("int"),
    },
    item="/orders?filter=invoice_id=={InvoiceId}",
    legacy_read_only=True,
    notes="items of /orders (an exact InvoiceId reads one order)",
    fidelity="approximate",
    parent="InvoiceId",
)


class ProductPlans(OrderLines):
    """SubscriptionPlan: the ``subscription_plans`` of ``/products`` (REST lists plans only per
    product), one row per plan; an exact ProductId reads one product."""

    def lines(self, product: Mapping[str, Any]) -> list[Row]:
        plans = product.get("subscription_plans") or []
        return [
            self.row({**p, "product_id": product.get("id")}) for p in plans if isinstance(p, dict)
        ]

    async def _rows(self, ctx: Ctx, compiled: list[crit.Criterion]) -> list[Row]:
        exact = next(
            (
                c.raw
                for c in compiled
                if c.field == "ProductId" and c.op == "=" and isinstance(c.raw, int)
            ),
            None,
        )
        if exact is not None:
            try:
                product = await ctx.client.get(f"/products/{exact}")
            except NotFound:
                return []
            return self.lines(product if isinstance(product, dict) else {})
        rows: list[Row] = []
        token, seen = "", 0
        while True:
            query = [("page_size", "1000")] + ([("page_token", token)] if token else [])
            answer = await ctx.client.get("/products", query)
            products = answer.get("products") if isinstance(answer, dict) else None
            for product in products or []:
                if isinstance(product, dict):
                    rows.extend(self.lines(product))
            seen += len(products or [])
            if seen > SCAN_LIMIT:
                raise NoTranslation(
                    f"{self.table}: this call would read more than {SCAN_LIMIT} products over "
                    "REST v2; give an exact ProductId"
                )
            token = str(answer.get("next_page_token") or "") if isinstance(answer, dict) else ""
            if not token or not products:
                return rows


#: Legacy SubscriptionPlan.Cycle numbers (1 year, 2 month, 3 week, 6 day).
PLAN_CYCLE = Convert(
    lambda raw: {"YEARLY": 1, "MONTHLY": 2, "WEEKLY": 3, "DAILY": 6}.get(str(raw)),
    lambda v: (
        {1: "YEARLY", 2: "MONTHLY", 3: "WEEKLY", 6: "DAILY"}.get(v) if isinstance(v, int) else None
    ),
)


class PlanSpec(ProductPlans):
    """SubscriptionPlan: an add is ``POST /products/{ProductId}/subscriptions``."""

    async def add(self, ctx: Ctx, data: Mapping[str, Value]) -> int:
        self._check_write("add")
        values = legacy.writable(self.table, self.fields, dict(data))
        product = values.pop("ProductId", None)
        if not isinstance(product, int) or product < 1:
            raise NoTranslation(
                "SubscriptionPlan: REST v2 makes a plan only on a product; give a ProductId"
            )
        body = self.body(values)
        if body.get("cycle_type") is None:
            raise NoTranslation("SubscriptionPlan: REST v2 needs a Cycle of 1, 2, 3 or 6")
        body.setdefault("plan_price", 0)
        plan = await ctx.client.json("POST", f"/products/{product}/subscriptions", json_body=body)
        record_id = number(plan.get("id")) if isinstance(plan, dict) else None
        if record_id is None:
            raise NotFound("Keap REST answered without the new plan's id")
        return record_id


SUBSCRIPTION_PLAN = PlanSpec(
    "SubscriptionPlan",
    "/products",
    "products",
    {
        "Id": ro("int", "id"),
        "ProductId": Column("int", "product_id"),
        "Cycle": Column("int", "billing_cycle", convert=PLAN_CYCLE, write="cycle_type"),
        "Frequency": Column("int", "billing_frequency", write="frequency"),
        "PreAuthorizeAmount": none("float"),
        "Prorate": Column("int", "prorate", convert=FLAG, write="allow_prorating"),
        "Active": Column("int", "active", convert=FLAG),
        "PlanPrice": Column("float", "plan_price", convert=MONEY),
        "NumberOfCycles": Column("int", "number_of_cycles", write="total_cycles"),
    },
    item="/products/{ProductId}",
    writes=frozenset({"add"}),
    notes="plans of /products (an exact ProductId reads one product); add is POST "
    "/products/{ProductId}/subscriptions: REST needs an existing ProductId and a Cycle "
    "(PlanPrice defaults to 0)",
    fidelity="approximate",
    parent="ProductId",
)


class InvoicePayments(OrderLines):
    """InvoicePayment: ``/orders/{id}/payments`` of the invoice's order; REST lists payments
    per order only, so an exact InvoiceId is needed."""

    async def _rows(self, ctx: Ctx, compiled: list[crit.Criterion]) -> list[Row]:
        invoice_id = exact_id(compiled, "InvoiceId")
        if invoice_id is None:
            raise NoTranslation(
                "InvoicePayment: REST v2 lists payments per order only; query with an exact "
                "InvoiceId"
            )
        try:
            order = await order_id(ctx, invoice_id)
        except NotFound:
            return []
        rows: list[Row] = []
        token = ""
        while True:
            query = [("page_size", "1000")] + ([("page_token", token)] if token else [])
            answer = await ctx.client.get(f"/orders/{order}/payments", query)
            items = answer.get("invoice_order_payments") if isinstance(answer, dict) else None
            rows.extend(self.row(item) for item in items or [] if isinstance(item, dict))
            token = str(answer.get("next_page_token") or "") if isinstance(answer, dict) else ""
            if not token or not items:
                return rows


INVOICE_PAYMENT = InvoicePayments(
    "InvoicePayment",
    "/orders",
    "orders",
    {
        "Id": ro("int", "id"),
        "InvoiceId": ro("int", "invoice_id"),
        "Amt": ro("float", "amount", convert=FLOAT),
        "PayDate": ro("date", "pay_time"),
        "PayStatus": ro("str", "pay_status", note="REST's word (MANUAL_PAID, APPROVED...)"),
        "PaymentId": ro("int", "payment_id"),
        "SkipCommission": ro("int", "skip_commission", convert=FLAG),
        "LastUpdated": ro("date", "last_updated_time"),
    },
    item="/orders/{id}/payments",
    legacy_read_only=True,
    notes="needs an exact InvoiceId (REST lists payments per order)",
    fidelity="approximate",
    parent="InvoiceId",
)
