"""Contact endpoints: create (with duplicate check), get, patch, delete, list, merge, model.

Every write goes through ``Database.add``/``update`` for the fields the legacy schema knows,
so REST and XML-RPC share validation, ``DateCreated``/``LastUpdated`` and ids.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from shim.simulator import social
from shim.simulator.asgi import Answer, json_answer
from shim.simulator.data import DUPLICATE_KEYS, Row, to_datetime
from shim.simulator.faults import KeapFault
from shim.simulator.rest.contact_model import (
    ARRAYS,
    OPTIONAL_FIELDS,
    SOCIAL,
    Changes,
    fields_param,
    from_rest,
    to_rest,
)
from shim.simulator.rest.http import (
    Call,
    bad,
    check_keys,
    missing,
    no_content,
    parse_id,
)
from shim.simulator.rest.query import (
    COMPARISONS,
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
from shim.simulator.rest.store import (
    LINK_TYPES,
    add_custom_field,
    custom_fields,
    field_label,
    field_name,
    field_type,
    opt_in,
    relabel_custom_field,
)
from shim.simulator.schema import fields_of

_COLUMNS = {
    "given_name": "FirstName",
    "family_name": "LastName",
    "middle_name": "MiddleName",
    "company_id": "CompanyID",
    "contact_ids": "Id",
    "ids": "Id",
    "contact_id": "Id",
    "start_update_time": "LastUpdated",
    "end_update_time": "LastUpdated",
    "city": "City",
    "state": "State",
    "website": "Website",
    "lead_source_name": "Leadsource",
}
_ADDRESS_PARTS = [("line1", "line1"), ("locality", "locality"), ("region", "region_code")]
_ADDRESS_PARTS += [("postal_code", "postal_code"), ("country_code", "country_code")]
_ADDRESS_FILTERS = {
    f"{slot.lower()}_address_{part}": ARRAYS["addresses"][slot][attr]
    for slot in ("BILLING", "SHIPPING", "OTHER")
    for part, attr in _ADDRESS_PARTS
}
_PHONE_SLOTS = frozenset(ARRAYS["phone_numbers"])
#: docs/keap.md#filters / the SDK's ``list_contacts`` filter documentation.
RULES: dict[str, Rule] = {
    **dict.fromkeys(["email", "given_name", "family_name", "middle_name", "city", "state"], WILD),
    **dict.fromkeys(["website", "lead_source_name"], WILD),
    **dict.fromkeys(_ADDRESS_FILTERS, TEXT),
    "company_id": NUMBER,
    "contact_ids": IDS,
    "ids": IDS,
    "start_update_time": SINCE,
    "end_update_time": UNTIL,
    "phone_number": Rule(wildcard=True, min_prefix=3),
    "phone_fields": Rule("choice", choices=_PHONE_SLOTS),
    "contact_id": Rule("number", ops=COMPARISONS),
}
ORDER = {"id": "Id", "create_time": "DateCreated", "email": "Email", "update_time": "LastUpdated"}


def create(call: Call) -> Answer:
    """201 with the new contact; with ``duplicate_option`` a match is updated instead (200)."""
    data = call.body()
    names = fields_param(call.args("fields"))
    changes = from_rest(call.db, data, list(data))
    if not changes.has_contact_point():
        raise bad("A contact needs at least one email address, phone number or address")
    option = call.arg("duplicate_option")
    existing = None if option is None else _duplicate(call, option, changes)
    contact_id = save(call, existing, changes)
    status = 201 if existing is None else 200
    return json_answer(status, to_rest(call.db, call.db.get("Contact", contact_id), names))


def get(call: Call) -> Answer:
    row = _row(call, call.path_id("contact_id", "contact"))
    return json_answer(200, to_rest(call.db, row, fields_param(call.args("fields"))))


def update(call: Call) -> Answer:
    """PATCH: the ``update_mask`` properties (all sent ones without a mask); arrays replaced."""
    contact_id = call.path_id("contact_id", "contact")
    _row(call, contact_id)
    data = call.body()
    names = fields_param(call.args("fields"))
    mask = call.args("update_mask")
    save(call, contact_id, from_rest(call.db, data, list(data) if mask is None else mask))
    return json_answer(200, to_rest(call.db, call.db.get("Contact", contact_id), names))


def delete(call: Call) -> Answer:
    contact_id = call.path_id("contact_id", "contact")
    _row(call, contact_id)
    call.db.delete("Contact", contact_id)
    return no_content()


def list_contacts(call: Call) -> Answer:
    names = fields_param(call.args("fields"))
    clauses = parse_filter(call.arg("filter"), lambda name: _rule(call, name))
    phone_slots = next((c.operand for c in clauses if c.name == "phone_fields"), None)
    if phone_slots is None and any(c.name == "phone_number" for c in clauses):
        raise bad("phone_number needs phone_fields (e.g. phone_fields==PHONE1,PHONE2)", "filter")
    rows = select(call.db.rows("Contact"), clauses, _values(call, phone_slots or frozenset()))
    order, descending = parse_order(call.arg("order_by"), ORDER)
    column = ORDER[order or "id"]
    page, token = paginate(call, rows, lambda r: [sort_value(r.get(column)), r["Id"]], descending)
    contacts = [to_rest(call.db, row, names) for row in page]
    return json_answer(200, listing(call, "contacts", contacts, token))


def merge(call: Call) -> Answer:
    """Fold the duplicate into the contact: its values fill the contact's empty fields, its
    tags and files move over, then it is deleted (what Keap's merge keeps by default)."""
    data = call.body()
    check_keys(data, {"contact_id", "duplicate_contact_id"}, "merge")
    keep = parse_id(data.get("contact_id"), "contact")
    dup = parse_id(data.get("duplicate_contact_id"), "contact")
    if keep == dup:
        raise bad("A contact cannot be merged with itself", "contact", str(keep))
    _raw(call, keep)
    _raw(call, dup)
    call.db.merge(keep, dup, call.now)
    names = fields_param(call.args("fields"))
    return json_answer(200, to_rest(call.db, call.db.get("Contact", keep), names))


def model(call: Call) -> Answer:
    """The custom fields (all text: the config only names them) and the optional properties."""
    fields = [
        {
            "id": str(cid),
            "label": field_label(call.db, legacy),
            "field_name": field_name(legacy),
            "field_type": field_type(call.db, legacy),
            "record_type": "CONTACT",
            "options": [],
            "group_id": "1",
            "group_name": "Custom Fields",
        }
        for cid, legacy in custom_fields(call.db)
    ]
    return json_answer(200, {"custom_fields": fields, "optional_properties": OPTIONAL_FIELDS})


def create_custom_field(call: Call) -> Answer:
    """``POST /contacts/model/customFields`` (CreateCustomFieldRequest): label and field_type
    required; answers CreateCustomFieldResponse."""
    data = call.body()
    check_keys(data, {"label", "field_type", "group_id", "options", "user_group_id"}, "field")
    label_text, kind = data.get("label"), data.get("field_type")
    if not isinstance(label_text, str) or not label_text.strip():
        raise bad("label is required", "custom field")
    if not isinstance(kind, str) or kind not in FIELD_TYPES:
        raise bad(f"Invalid field_type: {kind!r}", "custom field")
    try:
        field_id = add_custom_field(call.db, label_text, kind)
    except ValueError as exc:
        raise bad(str(exc), "custom field") from None
    return json_answer(201, {"custom_field": _field_json(call, field_id)})


def update_custom_field(call: Call) -> Answer:
    """``PATCH /contacts/model/customFields/{id}`` (group_id required by the SDK model)."""
    field_id = call.path_id("custom_field_id", "custom field")
    data = call.body()
    check_keys(data, {"label", "options", "group_id"}, "custom field")
    if not data.get("group_id"):
        raise bad("group_id is required", "custom field")
    label_text = data.get("label")
    try:
        if isinstance(label_text, str) and label_text.strip():
            relabel_custom_field(call.db, field_id, label_text)
        elif field_id not in dict(custom_fields(call.db)):
            raise KeyError(field_id)
    except KeyError:
        raise missing("custom field", field_id) from None
    return json_answer(200, _field_json(call, field_id))


def _field_json(call: Call, field_id: int) -> dict[str, Any]:
    legacy = dict(custom_fields(call.db))[field_id]
    return {
        "id": str(field_id),
        "label": field_label(call.db, legacy),
        "field_name": field_name(legacy),
        "field_type": field_type(call.db, legacy),
        "record_type": "CONTACT",
        "options": [],
        "group_id": "1",
        "group_name": "Custom Fields",
    }


def link(call: Call) -> Answer:
    """``POST /contacts:link`` (LinkContactsRequest) -> 201 ContactLink."""
    data = call.body()
    check_keys(data, {"contact1_id", "contact2_id", "link_type_id"}, "link")
    first = parse_id(data.get("contact1_id"), "contact")
    second = parse_id(data.get("contact2_id"), "contact")
    link_type = parse_id(data.get("link_type_id"), "link type")
    for contact in (first, second):
        if contact not in call.db.tables["Contact"]:
            raise missing("contact", contact)
    if link_type not in LINK_TYPES:
        raise bad(f"Invalid link type: {link_type}", "link type", str(link_type))
    call.store.links.add((first, second, link_type))
    answer = {"contact1_id": str(first), "contact2_id": str(second),
              "link_type_id": str(link_type), "link_type_name": LINK_TYPES[link_type]}  # fmt: skip
    return json_answer(201, answer)


#: The SDK's CreateCustomFieldRequest.field_type values.
FIELD_TYPES = frozenset(
    {"CURRENCY", "DATE", "DATE_TIME", "DAY_OF_WEEK", "DECIMAL_NUMBER", "DRILLDOWN", "DROPDOWN"}
    | {"EMAIL", "LIST_BOX", "MONTH", "NAME", "PERCENT", "PHONE_NUMBER", "RADIO", "STATE"}
    | {"SOCIAL_SECURITY_NUMBER", "TEXT", "TEXT_AREA", "USER", "USER_LIST_BOX", "WEBSITE"}
    | {"WHOLE_NUMBER", "YEAR", "YES_NO"}
)


def custom_field_groups(call: Call) -> Answer:
    """The contact custom-field groups (``ListCustomFieldGroupsResponse``), from the same rows
    as legacy DataFormGroup."""
    groups = [
        {"id": str(row["Id"]), "name": row["Name"], "order": row["Id"], "tab_id": str(row["TabId"]),
         "record_type": "CONTACT"}
        for row in call.db.rows("DataFormGroup")
    ]  # fmt: skip
    return json_answer(200, {"groups": groups})


def custom_field_tabs(call: Call) -> Answer:
    """The contact custom-field tabs (``ListCustomFieldTabsResponse``), as DataFormTab."""
    tabs = [
        {"id": str(row["Id"]), "name": row["TabName"], "order": row["Id"], "record_type": "CONTACT"}
        for row in call.db.rows("DataFormTab")
        if row.get("FormId") == -1
    ]
    return json_answer(200, {"tabs": tabs})


def save(call: Call, contact_id: int | None, changes: Changes) -> int:
    """Write ``changes``: schema fields through the Database, the rest straight into the row."""
    known = fields_of("Contact", call.config.custom_fields)
    core = {k: v for k, v in changes.values.items() if k in known}
    try:
        if contact_id is None:
            contact_id = call.db.add("Contact", core, call.now)
        else:
            call.db.update("Contact", contact_id, core, call.now)
    except KeapFault as fault:
        raise bad(fault.fault_string, "contact") from None
    row = call.db.tables["Contact"][contact_id]
    for name, value in changes.values.items():
        if name == SOCIAL:
            social.replace(call.db, contact_id, value or [], call.now)  # type: ignore[arg-type]
            continue
        if name in known:
            continue
        if value is None:
            row.pop(name, None)
        else:
            row[name] = value
    for email, reason in changes.opt_ins.items():
        opt_in(call.db, email, reason, to_datetime(call.now))
    return contact_id


def _duplicate(call: Call, option: str, changes: Changes) -> int | None:
    """The first contact matching on ``option``'s fields (case-insensitive), if any."""
    if option not in DUPLICATE_KEYS:
        raise bad(f"duplicate_option must be one of {', '.join(DUPLICATE_KEYS)}", "contact")
    return call.db.find_duplicate(option, changes.values)


def _rule(call: Call, name: str) -> Rule | None:
    """A standard filter field, else a custom field by ``field_name`` (case-insensitive)."""
    if name in RULES:
        return RULES[name]
    custom = {field_name(legacy).casefold() for legacy in call.config.custom_fields}
    return WILD if name.casefold() in custom else None


def _values(call: Call, phone_slots: Collection[str]) -> Callable[[Row, str], list[Any]]:
    custom = {field_name(legacy).casefold(): legacy for legacy in call.config.custom_fields}

    def values(row: Row, name: str) -> list[Any]:
        if name == "email":
            return [row.get(n) for n in ("Email", "EmailAddress2", "EmailAddress3")]
        if name == "phone_number":
            return [row.get(ARRAYS["phone_numbers"][slot]["number"]) for slot in phone_slots]
        if name == "phone_fields":
            return sorted(_PHONE_SLOTS)  # a modifier of phone_number, true for every row
        column = _COLUMNS.get(name) or _ADDRESS_FILTERS.get(name) or custom[name.casefold()]
        return [row.get(column)]

    return values


def _row(call: Call, contact_id: int) -> Row:
    if contact_id not in call.db.tables["Contact"]:
        raise missing("contact", contact_id)
    return call.db.get("Contact", contact_id)


def _raw(call: Call, contact_id: int) -> Row:
    row = call.db.tables["Contact"].get(contact_id)
    if row is None:
        raise missing("contact", contact_id)
    return row
