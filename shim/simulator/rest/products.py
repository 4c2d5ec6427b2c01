"""Products, product categories, subscription plans, affiliates and referrals as REST v2
serves them (SDK models ``RestV2Product``, ``ProductCategory``, ``SubscriptionPlan``,
``RestAffiliate``, ``Referral``), over the legacy tables of commerce.py; which products are in
which category (``AssignedProducts``) are the legacy ``ProductCategoryAssign`` rows.

Product prices: ``price`` is an int of minor units in requests (1250 = $12.50) and a
``CurrencyValue`` in answers; legacy ``ProductPrice`` is a double of dollars. Legacy 0/1 flags
(``Status``, ``Taxable``...) are REST booleans.
"""

from __future__ import annotations

from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.commerce import dollars, stock
from shim.simulator.data import Row
from shim.simulator.rest.http import Call, bad, check_keys, missing, no_content, parse_id
from shim.simulator.rest.orders import CYCLE_NAMES, ID_OPS, money, paged, plan_json, strip
from shim.simulator.rest.query import IDS, NUMBER, TEXT, WILD, Rule, listing

#: REST product property -> (legacy column, kind): "str", "bool" (0/1), "float", "price".
PRODUCT_COLUMNS: dict[str, tuple[str, str]] = {
    "name": ("ProductName", "str"),
    "sku": ("Sku", "str"),
    "price": ("ProductPrice", "price"),
    "active": ("Status", "bool"),
    "description": ("Description", "str"),
    "short_description": ("ShortDescription", "str"),
    "shippable": ("Shippable", "bool"),
    "weight": ("Weight", "float"),
    "taxable": ("Taxable", "bool"),
    "storefront_hidden": ("HideInStore", "bool"),
    "country_taxable": ("CountryTaxable", "bool"),
    "state_taxable": ("StateTaxable", "bool"),
    "city_taxable": ("CityTaxable", "bool"),
    "top_html": ("TopHTML", "str"),
    "bottom_html": ("BottomHTML", "str"),
    "is_package": ("IsPackage", "bool"),
    "needs_digital_delivery": ("NeedsDigitalDelivery", "bool"),
}
PRODUCT_RULES: dict[str, Rule] = {
    "name": WILD,
    "sku": WILD,
    "description": WILD,
    "short_description": WILD,
    "product_id": NUMBER,
    "product_ids": IDS,
}


def product_json(call: Call, row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row["Id"]}
    for prop, (column, kind) in PRODUCT_COLUMNS.items():
        value = row.get(column)
        if kind == "price":
            out[prop] = money(value or 0.0)
        elif kind == "bool":
            out[prop] = value == 1
        else:
            out[prop] = value
    plans = [p for p in call.db.rows("SubscriptionPlan") if p.get("ProductId") == row["Id"]]
    out["subscription_plans"] = [plan_detail(p) for p in plans]
    return strip(out)


def plan_detail(plan: Row) -> dict[str, Any]:
    """A plan as embedded in a product (``SubscriptionPlanDetail``)."""
    return strip(
        {
            "id": plan["Id"],
            "active": plan.get("Active") == 1,
            "prorate": plan.get("Prorate") == 1,
            "billing_cycle": CYCLE_NAMES.get(str(plan.get("Cycle"))),
            "billing_frequency": plan.get("Frequency"),
            "number_of_cycles": plan.get("NumberOfCycles"),
            "plan_price": money(plan.get("PlanPrice") or 0.0),
        }
    )


def _record(call: Call, row: Row) -> dict[str, Any]:
    out = product_json(call, row)
    out["id"], out["product_id"] = row["Id"], row["Id"]
    return out


def list_products(call: Call) -> Answer:
    records = [_record(call, row) for row in call.db.rows("Product")]
    page, token = paged(call, records, PRODUCT_RULES, ("name", "sku", "id"))
    items = [{**r, "id": str(r["id"])} for r in page]
    for item in items:
        item.pop("product_id", None)
    return json_answer(200, listing(call, "products", items, token))


def _find_product(call: Call) -> Row:
    product_id = call.path_id("product_id", "product")
    row = call.db.tables["Product"].get(product_id)
    if row is None:
        raise missing("product", product_id)
    return row


def get_product(call: Call) -> Answer:
    """RestV2ProductDetail: the list's fields and ``inventory`` (ProductInventoryDetail; its
    ``inventory_count`` is omitted in list answers)."""
    row = _find_product(call)
    out = product_json(call, row)
    out["inventory"] = {"inventory_count": stock(row)}
    return json_answer(200, out)


def _product_values(data: dict[str, Any], names: list[str]) -> Row:
    check_keys(data, set(PRODUCT_COLUMNS), "product")
    check_keys(dict.fromkeys(names), set(PRODUCT_COLUMNS), "update_mask")
    values: Row = {}
    for prop in names:
        column, kind = PRODUCT_COLUMNS[prop]
        value = data.get(prop)
        if value is None:
            values[column] = None
        elif kind == "price":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise bad("price must be an integer of minor units, at least 0", "price")
            values[column] = dollars(value)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise bad(f"{prop} must be a boolean", prop)
            values[column] = 1 if value else 0
        elif kind == "float":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise bad(f"{prop} must be a number, at least 0", prop)
            values[column] = float(value)
        else:
            if not isinstance(value, str):
                raise bad(f"{prop} must be a string", prop)
            values[column] = value
    return values


def create_product(call: Call) -> Answer:
    data = call.body()
    for required in ("name", "price", "short_description"):
        if required not in data:
            raise bad(f"{required} is required", required)
    if not isinstance(data["name"], str) or not data["name"].strip():
        raise bad("name must not be empty", "name")
    values = _product_values(data, list(data))
    record_id = call.db.add("Product", values, call.now)
    return json_answer(201, product_json(call, call.db.tables["Product"][record_id]))


def update_product(call: Call) -> Answer:
    row = _find_product(call)
    data = call.body()
    mask = call.args("update_mask")
    values = _product_values(data, list(data) if mask is None else mask)
    if "ProductName" in values and not values["ProductName"]:
        raise bad("name must not be empty", "name")
    call.db.update("Product", int(row["Id"]), values, call.now)  # type: ignore[arg-type]
    return json_answer(200, product_json(call, call.db.tables["Product"][row["Id"]]))  # type: ignore[index]


def delete_product(call: Call) -> Answer:
    row = _find_product(call)
    call.db.delete("Product", int(row["Id"]))  # type: ignore[arg-type]
    return no_content()


def product_plans(call: Call) -> Answer:
    row = _find_product(call)
    plans = [p for p in call.db.rows("SubscriptionPlan") if p.get("ProductId") == row["Id"]]
    return json_answer(200, listing(call, "subscriptions", [plan_json(p) for p in plans], ""))


#: CreateSubscriptionPlanRequest's properties.
PLAN_KEYS = {"active", "frequency", "allow_prorating", "cycle_type", "display_order_index"}
PLAN_KEYS |= {"plan_price", "total_cycles"}
_CYCLE_NUMBERS = {name: int(number) for number, name in CYCLE_NAMES.items()}


def _whole(data: dict[str, Any], name: str, default: int, least: int) -> int:
    value = data.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise bad(f"{name} must be an integer of at least {least}", name)
    return value


def create_plan(call: Call) -> Answer:
    """POST /products/{id}/subscriptions (CreateSubscriptionPlanRequest) -> 201 plan;
    ``plan_price`` is in minor units."""
    row = _find_product(call)
    data = call.body()
    check_keys(data, PLAN_KEYS, "subscription plan")
    cycle = _CYCLE_NUMBERS.get(str(data.get("cycle_type")))
    if cycle is None:
        raise bad("cycle_type must be YEARLY, MONTHLY, WEEKLY or DAILY", "cycle_type")
    price = data.get("plan_price")
    if not isinstance(price, (int, float)) or isinstance(price, bool) or price < 0:
        raise bad("plan_price is required and must be 0 or more", "plan_price")
    values: Row = {
        "ProductId": row["Id"],
        "Cycle": cycle,
        "Frequency": _whole(data, "frequency", 1, 1),
        "NumberOfCycles": _whole(data, "total_cycles", 0, 0),
        "PlanPrice": dollars(int(price)),
        "Active": 1 if data.get("active") is True else 0,
        "Prorate": 1 if data.get("allow_prorating") is True else 0,
    }
    record_id = call.db.add("SubscriptionPlan", values, call.now)
    return json_answer(201, plan_json(call.db.tables["SubscriptionPlan"][record_id]))


# --- product categories ---

CATEGORY_RULES: dict[str, Rule] = {
    "product_id": NUMBER,
    "name": WILD,
    "product_category_id": ID_OPS,
}


def category_json(row: Row) -> dict[str, Any]:
    return strip(
        {
            "id": row["Id"],
            "name": row.get("CategoryDisplayName"),
            "display_order_index": row.get("CategoryOrder"),
            "parent_category_id": row.get("ParentId"),
            "product_category_id": row["Id"],
        }
    )


def list_categories(call: Call) -> Answer:
    records = [{**category_json(r), "id": r["Id"]} for r in call.db.rows("ProductCategory")]
    for record in records:
        record["product_category_id"] = record["id"]
    page, token = paged(call, records, CATEGORY_RULES, ("id",))
    items = [
        {k: (str(v) if k == "id" else v) for k, v in r.items() if k != "product_category_id"}
        for r in page
    ]
    return json_answer(200, listing(call, "product_categories", items, token))


def get_category(call: Call) -> Answer:
    category_id = call.path_id("category_id", "product category")
    row = call.db.tables["ProductCategory"].get(category_id)
    if row is None:
        raise missing("product category", category_id)
    out = category_json(row)
    out.pop("product_category_id", None)
    return json_answer(200, out)


def create_category(call: Call) -> Answer:
    data = call.body()
    check_keys(data, {"name", "display_order_index", "parent_category_id"}, "product category")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad("name is required", "name")
    order = data.get("display_order_index")
    if order is not None and (not isinstance(order, int) or isinstance(order, bool)):
        raise bad("display_order_index must be an integer", "display_order_index")
    parent = data.get("parent_category_id")
    values: Row = {"CategoryDisplayName": name, "CategoryOrder": order}
    if parent not in (None, "", "0"):
        if not str(parent).isdigit() or int(str(parent)) not in call.db.tables["ProductCategory"]:
            raise bad(f"Parent category {parent} does not exist", "parent_category_id")
        values["ParentId"] = int(str(parent))
    record_id = call.db.add("ProductCategory", values, call.now)
    out = category_json(call.db.tables["ProductCategory"][record_id])
    out.pop("product_category_id", None)
    return json_answer(201, out)


# --- products in categories (legacy ProductCategoryAssign rows) ---

ASSIGNED_RULES: dict[str, Rule] = {"product_ids": IDS, "product_category_ids": IDS}
ASSIGN = "ProductCategoryAssign"


def _assigned(call: Call) -> dict[int, list[int]]:
    """Category id -> its product ids (assignment row order), for categories with any."""
    by_category: dict[int, list[int]] = {}
    for row in call.db.rows(ASSIGN):
        category, product = row.get("ProductCategoryId"), row.get("ProductId")
        if isinstance(category, int) and isinstance(product, int):
            products = by_category.setdefault(category, [])
            if product not in products:
                products.append(product)
    return by_category


def list_assigned_products(call: Call) -> Answer:
    """GET /productCategories/assignedProducts (``ListAssignedProductsResponse``): one
    ``AssignedProducts`` per category with products; ``product_ids`` selects the categories
    holding any of them (each still listed with all its products)."""
    records = [
        {"id": category, "product_category_id": category, "product_ids": products}
        for category, products in _assigned(call).items()
    ]

    def values(record: dict[str, Any], name: str) -> list[Any]:
        if name == "product_ids":
            return list(record["product_ids"])
        return [record["id"]]

    page, token = paged(call, records, ASSIGNED_RULES, ("product_category_id",), values)
    items = [
        {"product_category_id": str(r["id"]), "product_ids": [str(p) for p in r["product_ids"]]}
        for r in page
    ]
    return json_answer(200, listing(call, "assigned_product_categories", items, token))


def assign_products(call: Call) -> Answer:
    """POST /productCategories/{id}:assignProducts (``AssignProductsRequest``) -> 204: the
    category's products become exactly ``product_ids`` (the rows of products kept stay)."""
    category = call.path_id("category_id", "product category")
    if category not in call.db.tables["ProductCategory"]:
        raise missing("product category", category)
    data = call.body()
    check_keys(data, {"product_ids"}, "assign products")
    raw = data.get("product_ids")
    if not isinstance(raw, list):
        raise bad("product_ids is required and must be a list of ids", "product_ids")
    wanted = list(dict.fromkeys(parse_id(p, "product") for p in raw))
    for product in wanted:
        if product not in call.db.tables["Product"]:
            raise bad(f"Product {product} does not exist", "product_ids", str(product))
    rows = call.db.tables[ASSIGN]
    have = {r["ProductId"]: k for k, r in rows.items() if r.get("ProductCategoryId") == category}
    for held, row_id in have.items():
        if held not in wanted:
            del rows[row_id]
    for product in wanted:
        if product not in have:
            call.db.add(ASSIGN, {"ProductCategoryId": category, "ProductId": product}, call.now)
    return no_content()


# --- affiliates and referrals ---

AFFILIATE_RULES: dict[str, Rule] = {"contact_id": NUMBER, "code": TEXT, "name": WILD}
AFFILIATE_RULES |= {"status": TEXT, "parent_id": NUMBER}


def affiliate_json(row: Row) -> dict[str, Any]:
    return strip(
        {
            "id": row["Id"],
            "code": row.get("AffCode"),
            "name": row.get("AffName"),
            "status": "ACTIVE" if row.get("Status") == 1 else "INACTIVE",
            "contact_id": row.get("ContactId"),
            "parent_affiliate_id": row.get("ParentId"),
            "notify_on_sale": row.get("NotifySale") == 1,
            "notify_on_lead": row.get("NotifyLead") == 1,
            "track_leads_days": row.get("LeadCookieFor"),
        }
    )


def list_affiliates(call: Call) -> Answer:
    records = [
        {**affiliate_json(r), "id": r["Id"], "parent_id": r.get("ParentId")}
        for r in call.db.rows("Affiliate")
    ]
    page, token = paged(call, records, AFFILIATE_RULES, ("id", "name"))
    items = [strip({k: v for k, v in r.items() if k != "parent_id"}) for r in page]
    return json_answer(200, listing(call, "affiliates", items, token))


def get_affiliate(call: Call) -> Answer:
    affiliate_id = call.path_id("id", "affiliate")
    row = call.db.tables["Affiliate"].get(affiliate_id)
    if row is None:
        raise missing("affiliate", affiliate_id)
    return json_answer(200, affiliate_json(row))


REFERRAL_RULES: dict[str, Rule] = {"referral_partner_id": ID_OPS, "contact_id": ID_OPS}
REFERRAL_RULES |= {"source": WILD, "description": WILD}


def referral_json(row: Row) -> dict[str, Any]:
    kind = row.get("Type")
    return strip(
        {
            "id": row["Id"],
            "description": row.get("Info"),
            "source": row.get("Source"),
            "contact_id": row.get("ContactId"),
            "referral_partner_id": row.get("AffiliateId"),
            "referral_time": row.get("DateSet"),
            "expiration_time": row.get("DateExpires"),
            "ip_address": row.get("IPAddress"),
            "referral_type": None if kind is None else str(kind),
        }
    )


def list_referrals(call: Call) -> Answer:
    records = [{**referral_json(r), "id": r["Id"]} for r in call.db.rows("Referral")]
    for record in records:
        for key in ("contact_id", "referral_partner_id"):
            if key in record:
                record[key] = int(record[key])
    page, token = paged(call, records, REFERRAL_RULES, ("id", "referral_time"))
    return json_answer(200, listing(call, "referrals", [strip(r) for r in page], token))


REFERRAL_KEYS = {"description", "source", "contact_id", "referral_partner_id", "referral_time"}
REFERRAL_KEYS |= {"expiration_time", "ip_address", "referral_type"}


def create_referral(call: Call) -> Answer:
    from shim.simulator.rest.http import parse_time

    data = call.body()
    check_keys(data, REFERRAL_KEYS, "referral")
    values: Row = {}
    for prop, column in (("contact_id", "ContactId"), ("referral_partner_id", "AffiliateId")):
        raw = data.get(prop)
        if raw in (None, ""):
            if prop == "contact_id":
                raise bad("contact_id is required", prop)
            continue
        if not isinstance(raw, str) or not raw.isdigit():
            raise bad(f"{prop} must be an id", prop)
        values[column] = int(raw)
    if values["ContactId"] not in call.db.tables["Contact"]:
        raise bad(f"Contact {values['ContactId']!r} does not exist", "contact_id")
    affiliate = values.get("AffiliateId")
    if affiliate is not None and affiliate not in call.db.tables["Affiliate"]:
        raise bad(f"Affiliate {affiliate!r} does not exist", "referral_partner_id")
    for prop, column in (("referral_time", "DateSet"), ("expiration_time", "DateExpires")):
        raw = data.get(prop)
        if isinstance(raw, str) and raw:
            values[column] = parse_time(raw, prop)
    for prop, column in (
        ("description", "Info"),
        ("source", "Source"),
        ("ip_address", "IPAddress"),
    ):
        raw = data.get(prop)
        if raw is not None and not isinstance(raw, str):
            raise bad(f"{prop} must be a string", prop)
        values[column] = raw or None
    kind = data.get("referral_type")
    if kind is not None:
        if not isinstance(kind, str) or not kind.isdigit():
            raise bad("referral_type must be a referral type number", "referral_type")
        values["Type"] = int(kind)
    record_id = call.db.add("Referral", values, call.now)
    return json_answer(201, referral_json(call.db.tables["Referral"][record_id]))
