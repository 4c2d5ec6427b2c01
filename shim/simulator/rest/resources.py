"""Flat REST v2 resources over one legacy table each (lead sources, companies, users,
opportunities and their stages), served from a declaration per resource.

Each ``Resource`` names the legacy table whose rows it shows (the XML-RPC side's rows: one
data set behind both APIs), and per REST property (named as in the SDK's models) the legacy
column, the JSON kind, where the property sits when read (``contact.id`` for an opportunity's
``contact_id``) and whether the request models take it. Lists filter on the fields the SDK's
``filter`` documentation lists (anything else is a 400) and order on its ``order_by`` fields;
creates and PATCHes go through the legacy table's checks and coercion, so a value one API
refuses the other refuses too. Unknown request properties are a 400, as for the other
resources.

This is Keap's stand-in, kept apart from the translator's table specs on purpose (see
``shim/rest/criteria.py``): the equivalence tests compare the two.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.data import Row, to_datetime
from shim.simulator.rest.http import (
    Call,
    bad,
    check_keys,
    iso,
    missing,
    no_content,
    parse_date,
    parse_id,
    parse_time,
    row_id,
)
from shim.simulator.rest.query import (
    IDS,
    NUMBER,
    TEXT,
    WILD,
    Rule,
    listing,
    paginate,
    parse_filter,
    parse_order,
    select,
    sort_value,
)

Kind = Literal["str", "id", "int", "float", "time", "date", "bool"]
Handler = Callable[[Call], Answer]
COMPARE = Rule("number", frozenset({"==", ">", "<", ">=", "<="}))


@dataclass(frozen=True)
class Prop:
    """One REST property and its legacy column."""

    column: str
    kind: Kind = "str"
    #: Where it sits in a read answer (dotted), when not at its own name.
    read: str | None = None
    #: The create/update request models take it.
    write: bool = True


@dataclass(frozen=True)
class Resource:
    table: str
    domain: str
    #: The path parameter holding the id.
    param: str
    list_key: str
    props: dict[str, Prop]
    #: filter field -> (rule, legacy column, or "Id").
    filters: dict[str, tuple[Rule, str]] = field(default_factory=dict)
    #: order_by field -> legacy column.
    orders: dict[str, str] = field(default_factory=dict)
    #: Request properties a create must carry.
    required: tuple[str, ...] = ()
    writable: bool = True
    #: Only rows with these column values are this resource's (a note is a ContactAction
    #: row with ObjectType "Note"); a create sets them.
    where: dict[str, Any] = field(default_factory=dict)
    #: A path parameter that scopes the resource to one parent (``contact_id`` of
    #: ``/contacts/{contact_id}/notes``) and the column holding it.
    scope: tuple[str, str] | None = None

    def handlers(self) -> tuple[dict[str, Handler], dict[str, Handler]]:
        """(list path handlers, item path handlers)."""
        collection: dict[str, Handler] = {"GET": lambda call: _list(call, self)}
        item: dict[str, Handler] = {"GET": lambda call: _get(call, self)}
        if self.writable:
            collection["POST"] = lambda call: _create(call, self)
            item["PATCH"] = lambda call: _update(call, self)
            item["DELETE"] = lambda call: _delete(call, self)
        return collection, item


def _mine(call: Call, r: Resource, row: Row) -> bool:
    if any(row.get(column) != value for column, value in r.where.items()):
        return False
    if r.scope is not None and call.params.get(r.scope[0]) is not None:
        return row.get(r.scope[1]) == call.path_id(r.scope[0], "parent")
    return True


def _find(call: Call, r: Resource) -> Row:
    record_id = call.path_id(r.param, r.domain)
    row = call.db.tables[r.table].get(record_id)
    if row is None or not _mine(call, r, row):
        raise missing(r.domain, record_id)
    return call.db.get(r.table, record_id)


def to_json(r: Resource, row: Row) -> dict[str, Any]:
    """A row as the SDK's read model: ids as strings, times ISO-8601, empty values left out."""
    out: dict[str, Any] = {"id": str(row_id(row))}
    for name, prop in r.props.items():
        value = _out(row.get(prop.column), prop.kind)
        if value is None:
            continue
        path = (prop.read or name).split(".")
        target = out
        for part in path[:-1]:
            if part.endswith("[]"):  # a list of one object (a user's email_addresses)
                target = target.setdefault(part[:-2], [{"field": "EMAIL1"}])[0]
            else:
                target = target.setdefault(part, {})
        target[path[-1]] = value
    return out


def _out(value: Any, kind: Kind) -> Any:
    if value is None or value == "":
        return None
    if kind == "id":
        return str(value)
    if kind in ("time", "date"):
        if not isinstance(value, datetime.datetime):
            return None
        return iso(value) if kind == "time" else value.strftime("%Y-%m-%d")
    if kind == "bool":
        return bool(value)
    if kind == "float":
        return float(value) if isinstance(value, (int, float)) else value
    return value


def _in(call: Call, name: str, value: Any, kind: Kind) -> Any:
    """A request value as the legacy column stores it (a wrong JSON type is a 400)."""
    if value is None or value == "":
        return None
    if kind == "id":
        return parse_id(value, name)
    if kind == "time":
        return parse_time(value, name) if isinstance(value, str) else _wrong(name, "a date-time")
    if kind == "date":
        return parse_date(value, name) if isinstance(value, str) else _wrong(name, "a date")
    if kind == "bool":
        return int(value) if isinstance(value, bool) else _wrong(name, "a boolean")
    if kind in ("int", "float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return value if ok and (kind == "float" or isinstance(value, int)) else _wrong(name, kind)
    return value if isinstance(value, str) else _wrong(name, "a string")


def _wrong(name: str, what: str) -> Any:
    raise bad(f"{name} must be {what}", name)


def _list(call: Call, r: Resource) -> Answer:
    if r.scope is not None and call.params.get(r.scope[0]) is not None:
        _parent(call, r)
    rows = [row for row in call.db.rows(r.table) if _mine(call, r, row)]

    def rule(name: str) -> Rule | None:
        found = r.filters.get(name)
        return found[0] if found else None

    def values(row: Row, name: str) -> list[Any]:
        return [row.get(r.filters[name][1])]

    rows = select(rows, parse_filter(call.arg("filter"), rule), values)
    order, descending = parse_order(call.arg("order_by"), r.orders)
    column = r.orders[order] if order else "Id"
    page, token = paginate(
        call, rows, lambda row: [sort_value(row.get(column)), row_id(row)], descending
    )
    return json_answer(200, listing(call, r.list_key, [to_json(r, row) for row in page], token))


def _parent(call: Call, r: Resource) -> int:
    """The scoping parent's id (a contact), which must exist."""
    assert r.scope is not None
    parent = call.path_id(r.scope[0], "contact")
    if parent not in call.db.tables["Contact"]:
        raise missing("contact", parent)
    return parent


def _get(call: Call, r: Resource) -> Answer:
    return json_answer(200, to_json(r, _find(call, r)))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"address": {"line1": x}}`` -> ``{"address.line1": x}`` for nested request objects."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _values(call: Call, r: Resource, data: dict[str, Any], mask: list[str] | None) -> Row:
    writable = {name for name, prop in r.props.items() if prop.write}
    tops = {name.split(".")[0] for name in writable}
    check_keys(data, tops, r.domain)
    if mask is not None:
        check_keys(dict.fromkeys(mask), tops, "update_mask")
    flat = _flatten(data)
    check_keys(flat, writable, r.domain)
    chosen = set(data) if mask is None else set(mask)
    values: Row = {}
    for name in sorted(writable):
        if name.split(".")[0] in chosen:  # a named object is replaced whole
            prop = r.props[name]
            values[prop.column] = _in(call, name, flat.get(name), prop.kind)
    return values


def _create(call: Call, r: Resource) -> Answer:
    data = call.body()
    for name in r.required:
        if data.get(name) is None or data.get(name) == "":
            raise bad(f"{name} is required", r.domain, name)
    values = {**_values(call, r, data, None), **r.where}
    if r.scope is not None:
        values[r.scope[1]] = _parent(call, r)
    record_id = call.db.add(r.table, values, call.now)
    call.store.touch(r.table, record_id, to_datetime(call.now))
    return json_answer(201, to_json(r, call.db.get(r.table, record_id)))


def _update(call: Call, r: Resource) -> Answer:
    record_id = row_id(_find(call, r))
    data = call.body()
    values = _values(call, r, data, call.args("update_mask"))
    for name in r.required:
        if name in data and data[name] in (None, ""):
            raise bad(f"{name} cannot be cleared", r.domain, name)
    call.db.update(r.table, record_id, values, call.now)
    call.store.touch(r.table, record_id, to_datetime(call.now))
    return json_answer(200, to_json(r, call.db.get(r.table, record_id)))


def _delete(call: Call, r: Resource) -> Answer:
    call.db.delete(r.table, row_id(_find(call, r)))
    return no_content()


# --- the resources ---------------------------------------------------------------------------

LEAD_SOURCES = Resource(
    "LeadSource",
    "lead source",
    "lead_source_id",
    "lead_sources",
    {
        "name": Prop("Name"),
        "description": Prop("Description"),
        "vendor": Prop("Vendor"),
        "medium": Prop("Medium"),
        "message": Prop("Message"),
        "status": Prop("Status"),
        "lead_source_category_id": Prop("LeadSourceCategoryId", "id"),
        "start_time": Prop("StartDate", "time"),
        "end_time": Prop("EndDate", "time"),
    },
    filters={
        "id": (COMPARE, "Id"),
        "name": (WILD, "Name"),
        "status": (TEXT, "Status"),
        "lead_source_category_id": (NUMBER, "LeadSourceCategoryId"),
        "vendor": (WILD, "Vendor"),
        "medium": (WILD, "Medium"),
        "message": (WILD, "Message"),
        "description": (WILD, "Description"),
    },
    orders={"name": "Name", "status": "Status", "vendor": "Vendor", "medium": "Medium"},
    required=("name",),
)
#: LeadSourceCategory / CreateUpdateLeadSourceCategoryRequest (name, description).
LEAD_SOURCE_CATEGORIES = Resource(
    "LeadSourceCategory",
    "lead source category",
    "lead_source_category_id",
    "lead_source_categories",
    {"name": Prop("Name"), "description": Prop("Description")},
    filters={"name": (WILD, "Name"), "description": (WILD, "Description")},
    orders={"name": "Name"},
)
COMPANIES = Resource(
    "Company",
    "company",
    "company_id",
    "companies",
    {
        "company_name": Prop("Company"),
        "email_address.email": Prop("Email"),
        "phone_number.number": Prop("Phone1"),
        "phone_number.extension": Prop("Phone1Ext"),
        "phone_number.type": Prop("Phone1Type"),
        "fax_number.number": Prop("Fax1"),
        "fax_number.type": Prop("Fax1Type"),
        "address.line1": Prop("StreetAddress1"),
        "address.line2": Prop("StreetAddress2"),
        "address.locality": Prop("City"),
        "address.region_code": Prop("State"),
        "address.postal_code": Prop("PostalCode"),
        "address.zip_four": Prop("ZipFour1"),
        "address.country_code": Prop("Country"),
        "website": Prop("Website"),
        "owner_id": Prop("OwnerID", "id"),
    },
    filters={
        "company_id": (COMPARE, "Id"),
        "company_name": (TEXT, "Company"),
        "name": (WILD, "Company"),
        "email": (TEXT, "Email"),
        "city": (WILD, "City"),
        "state": (WILD, "State"),
    },
    orders={"name": "Company", "email": "Email"},
    required=("company_name",),
)
USERS = Resource(
    "User",
    "user",
    "user_id",
    "users",
    {
        "given_name": Prop("FirstName"),
        "family_name": Prop("LastName"),
        "middle_name": Prop("MiddleName"),
        "nickname": Prop("Nickname"),
        "suffix": Prop("Suffix"),
        "spouse_name": Prop("SpouseName"),
        "title": Prop("Title"),
        "email": Prop("Email", read="email_addresses[].email"),
        "global_user_id": Prop("GlobalUserId", "id"),
        "partner": Prop("Partner", "bool"),
        "address.locality": Prop("City"),
        "address.region_code": Prop("State"),
        "address.postal_code": Prop("PostalCode"),
        "address.line1": Prop("StreetAddress1"),
        "address.line2": Prop("StreetAddress2"),
    },
    filters={"email": (TEXT, "Email"), "given_name": (TEXT, "FirstName"), "user_ids": (IDS, "Id")},
    orders={"email": "Email"},
    writable=False,
)
STAGES = Resource(
    "Stage",
    "opportunity stage",
    "stage_id",
    "stages",
    {
        "name": Prop("StageName"),
        "order": Prop("StageOrder", "int"),
        "target_number_days": Prop("TargetNumDays", "int"),
        "probability": Prop("Probability", "int"),
    },
    # CreateOpportunityStageRequest: all four are required
    required=("name", "order", "target_number_days", "probability"),
)
OPPORTUNITIES = Resource(
    "Lead",
    "opportunity",
    "opportunity_id",
    "opportunities",
    {
        "opportunity_title": Prop("OpportunityTitle"),
        "contact_id": Prop("ContactID", "id", read="contact.id"),
        "stage_id": Prop("StageID", "id", read="stage.id"),
        "user_id": Prop("UserID", "id", read="user.id"),
        "next_action_time": Prop("NextActionDate", "time"),
        "next_action_notes": Prop("NextActionNotes"),
        "opportunity_notes": Prop("OpportunityNotes"),
        "estimated_close_time": Prop("EstimatedCloseDate", "time"),
        "projected_revenue_low": Prop("ProjectedRevenueLow", "float"),
        "projected_revenue_high": Prop("ProjectedRevenueHigh", "float"),
        "affiliate_id": Prop("AffiliateId", "id"),
    },
    filters={
        "opportunity_id": (COMPARE, "Id"),
        "stage_id": (NUMBER, "StageID"),
        "user_id": (NUMBER, "UserID"),
        "contact_id": (NUMBER, "ContactID"),
        "opportunity_title": (WILD, "OpportunityTitle"),
        "affiliate_id": (NUMBER, "AffiliateId"),
    },
    orders={"opportunity_title": "OpportunityTitle", "next_action_time": "NextActionDate"},
    required=("opportunity_title", "contact_id", "stage_id"),
)

_NOTE = {
    "title": Prop("ActionDescription"),
    "text": Prop("CreationNotes"),
    "type": Prop("ActionType"),
    "contact_id": Prop("ContactId", "id", write=False),
    "user_id": Prop("UserID", "id", read="assigned_to_user.id"),
    "create_time": Prop("DateCreated", "time", write=False),
}
#: Notes: ``/notes`` (list, every contact) and ``/contacts/{id}/notes`` (CRUD, one contact).
NOTES = Resource(
    "ContactAction",
    "note",
    "note_id",
    "notes",
    _NOTE,
    filters={
        "id": (COMPARE, "Id"),
        "ids": (IDS, "Id"),
        "contact_id": (NUMBER, "ContactId"),
        "assigned_to_user_id": (NUMBER, "UserID"),
    },
    required=("user_id",),
    where={"ObjectType": "Note"},
    scope=("contact_id", "ContactId"),
)
TASKS = Resource(
    "ContactAction",
    "task",
    "task_id",
    "tasks",
    {
        "title": Prop("ActionDescription"),
        "description": Prop("CreationNotes"),
        "type": Prop("ActionType"),
        "contact_id": Prop("ContactId", "id"),
        "opportunity_id": Prop("OpportunityId", "id"),
        "assigned_to_user_id": Prop("UserID", "id"),
        "due_time": Prop("ActionDate", "time"),
        "completion_time": Prop("CompletionDate", "time"),
        "create_time": Prop("DateCreated", "time", write=False),
    },
    filters={
        "id": (COMPARE, "Id"),
        "task_ids": (IDS, "Id"),
        "contact_id": (NUMBER, "ContactId"),
        "user_id": (NUMBER, "UserID"),
        "opportunity_id": (NUMBER, "OpportunityId"),
        "title": (WILD, "ActionDescription"),
    },
    orders={"id": "Id", "due_time": "ActionDate"},
    required=("assigned_to_user_id",),
    where={"ObjectType": "Task"},
)
