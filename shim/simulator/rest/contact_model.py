"""The REST v2 Contact (keap-core-v2-sdk ``Contact``, ``CreateUpdateContactRequest``) mapped to
and from the legacy-named Contact row that the XML-RPC simulator reads too
(docs/keap.md#contact-fields).

There is one row per contact. REST properties are views of its legacy fields: ``given_name``
is ``FirstName``, ``email_addresses[field=EMAIL2]`` is ``EmailAddress2``, ``addresses[BILLING]``
is ``StreetAddress1``/``City``/... Fields the XML-RPC schema does not model yet (``Fax1``,
``ZipFour1``, ``Address3Street1``, ``SpouseName``...) are kept in the same row under their
legacy names, so they appear in XML-RPC as soon as ``schema.py`` lists them. Countries and
regions are stored as given: REST sends ISO codes, legacy scripts free text, and the
simulator has no table to convert between them.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from shim.simulator import social
from shim.simulator.data import Database, Row
from shim.simulator.rest.http import (
    bad,
    check_keys,
    iso,
    optional_str,
    parse_date,
    parse_id,
    rest_id,
)
from shim.simulator.rest.store import custom_fields, rest_store
from shim.xmlrpc import Value

#: REST property -> (legacy field, kind, max length). Kinds: str, id (int), date.
SCALARS: dict[str, tuple[str, str, int | None]] = {
    "given_name": ("FirstName", "str", 40),
    "middle_name": ("MiddleName", "str", 100),
    "family_name": ("LastName", "str", 40),
    "prefix": ("Title", "str", None),
    "suffix": ("Suffix", "str", None),
    "preferred_name": ("Nickname", "str", 100),
    "spouse_name": ("SpouseName", "str", 100),
    "job_title": ("JobTitle", "str", 255),
    "website": ("Website", "str", 100),
    "contact_type": ("ContactType", "str", None),
    "referral_code": ("ReferralCode", "str", None),
    "time_zone": ("TimeZone", "str", None),
    "preferred_locale": ("Language", "str", None),
    "source_type": ("SourceType", "str", None),
    "leadsource_id": ("LeadSourceId", "id", None),
    "owner_id": ("OwnerID", "id", None),
    "birth_date": ("Birthday", "date", None),
    "anniversary_date": ("Anniversary", "date", None),
    "assistant_name": ("AssistantName", "str", 20),
    "assistant_phone": ("AssistantPhone", "str", 15),
    "billing_information": ("BillingInformation", "str", 100),
}
READ_ONLY = {
    "id": "Id",
    "create_time": "DateCreated",
    "update_time": "LastUpdated",
    "groups": "Groups",
    "notes": "ContactNotes",
    "account_id": "AccountId",
    "created_by": "CreatedBy",
    "last_updated_by": "LastUpdatedBy",
}
SOURCE_TYPES = frozenset(
    {"SOURCE_TYPE_UNSPECIFIED", "API", "APPOINTMENT", "FORM_API_HOSTED", "FORM_API_INTERNAL"}
    | {"IMPORT", "INTERNAL_FORM", "LANDING_PAGE", "MANUAL", "OTHER", "UNKNOWN", "WEBFORM"}
)
SOCIAL_TYPES = frozenset(
    {"SOCIAL_ACCOUNT_TYPE_UNSPECIFIED", "FACEBOOK", "LINKED_IN", "TWITTER", "INSTAGRAM"}
    | {"SNAPCHAT", "YOUTUBE", "PINTEREST"}
)


def _address(n: int) -> dict[str, str]:
    street = "StreetAddress" if n == 1 else f"Address{n}Street"
    suffix = "" if n == 1 else str(n)
    return {
        "line1": f"{street}1",
        "line2": f"{street}2",
        "locality": f"City{suffix}",
        "region_code": f"State{suffix}",
        "postal_code": f"PostalCode{suffix}",
        "zip_four": f"ZipFour{n}",
        "country_code": f"Country{suffix}",
    }


#: Slot arrays: property -> slot (the item's ``field``) -> item attribute -> legacy field.
ARRAYS: dict[str, dict[str, dict[str, str]]] = {
    "email_addresses": {
        "EMAIL1": {"email": "Email"},
        "EMAIL2": {"email": "EmailAddress2"},
        "EMAIL3": {"email": "EmailAddress3"},
    },
    "phone_numbers": {
        f"PHONE{n}": {"number": f"Phone{n}", "extension": f"Phone{n}Ext", "type": f"Phone{n}Type"}
        for n in range(1, 6)
    },
    "fax_numbers": {f"FAX{n}": {"number": f"Fax{n}", "type": f"Fax{n}Type"} for n in (1, 2)},
    "addresses": {"BILLING": _address(1), "SHIPPING": _address(2), "OTHER": _address(3)},
}
#: The attribute an item cannot go without.
_REQUIRED = {"email_addresses": "email", "phone_numbers": "number", "fax_numbers": "number"}
#: Read-model attributes a client may echo back from a GET (ignored on write).
_ECHOED = frozenset({"is_opt_in", "email_opt_status", "number_e164", "region", "country"})
_ECHOED |= {"zip_code", "opt_in_reason"}
#: The key of a REST write's social accounts in ``Changes.values``: not a Contact column, the
#: contact's SocialAccount rows (shim/simulator/social.py).
SOCIAL = "SocialAccounts"

REQUEST_FIELDS = frozenset(SCALARS) | frozenset(ARRAYS)
REQUEST_FIELDS |= {"company", "custom_fields", "social_accounts", "origin", "utm_parameters"}
AVAILABLE_FIELDS = REQUEST_FIELDS | frozenset(READ_ONLY) | {"tag_ids", "links", "score_value"}
#: Sent when ``fields`` is not given. The SDK does not say which are; the rest (custom fields,
#: notes, groups...) come only when asked for, and ``/contacts/model`` lists them.
DEFAULT_FIELDS = (
    *("id", "given_name", "middle_name", "family_name", "prefix", "suffix", "preferred_name"),
    *("email_addresses", "phone_numbers", "fax_numbers", "addresses", "company", "job_title"),
    *("contact_type", "owner_id", "leadsource_id", "birth_date", "anniversary_date"),
    *("spouse_name", "website", "time_zone", "preferred_locale", "referral_code"),
    *("social_accounts", "source_type", "create_time", "update_time", "tag_ids"),
)
OPTIONAL_FIELDS = sorted(AVAILABLE_FIELDS - set(DEFAULT_FIELDS))


@dataclass
class Changes:
    """A REST write as legacy field values (None clears) plus the addresses to opt in."""

    values: dict[str, Value] = field(default_factory=dict)
    opt_ins: dict[str, str] = field(default_factory=dict)

    def has_contact_point(self) -> bool:
        """At least one email, phone or address: REST refuses a contact without one."""
        legacy = [
            name
            for prop in ("email_addresses", "phone_numbers", "addresses")
            for attrs in ARRAYS[prop].values()
            for name in attrs.values()
        ]
        return any(self.values.get(name) not in (None, "") for name in legacy)


def fields_param(names: list[str] | None) -> Collection[str]:
    if names is None:
        return DEFAULT_FIELDS
    unknown = sorted(set(names) - AVAILABLE_FIELDS)
    if unknown:
        raise bad(f"Invalid fields: {', '.join(unknown)}", "fields", unknown[0])
    return names


def to_rest(db: Database, row: Row, names: Collection[str]) -> dict[str, Any]:
    """The REST Contact for ``row`` with the properties ``names`` (empty values left out)."""
    out: dict[str, Any] = {}
    for name in names:
        value = _read(db, row, name)
        if value is not None:
            out[name] = value
    return out


def _read(db: Database, row: Row, name: str) -> Any:
    if name in SCALARS:
        legacy, kind, _ = SCALARS[name]
        value = row.get(legacy)
        if kind == "date":
            return value.strftime("%Y-%m-%d") if isinstance(value, datetime.datetime) else None
        return rest_id(value)
    if name in READ_ONLY:
        value = row.get(READ_ONLY[name])
        return iso(value) if isinstance(value, datetime.datetime) else rest_id(value)
    if name in ARRAYS:
        return _read_items(db, row, name)
    if name == "company":
        company = {"id": rest_id(row.get("CompanyID")), "company_name": row.get("Company")}
        company = {k: v for k, v in company.items() if v not in (None, "")}
        return company or None
    if name == "tag_ids":
        return [str(t) for t in sorted(db.assignments.get(_int(row["Id"]), {}))]
    if name == "custom_fields":
        return [{"id": str(cid), "content": row.get(legacy)} for cid, legacy in custom_fields(db)]
    if name == "social_accounts":
        return social.accounts(db, _int(row["Id"]))
    return None  # links, origin, score_value, utm_parameters: nothing legacy to show


def _read_items(db: Database, row: Row, prop: str) -> list[dict[str, Any]]:
    items = []
    for slot, attrs in ARRAYS[prop].items():
        item = {attr: row[legacy] for attr, legacy in attrs.items() if row.get(legacy)}
        if not item or (prop in _REQUIRED and _REQUIRED[prop] not in item):
            continue
        if prop == "email_addresses":
            status = rest_store(db).emails.get(str(item["email"]).casefold())
            item["email_opt_status"] = status.status if status else "NON_MARKETABLE"
            item["is_opt_in"] = bool(status and status.opted_in)
        items.append({**item, "field": slot})
    return items


def from_rest(db: Database, data: Mapping[str, Any], names: Collection[str]) -> Changes:
    """Legacy changes for the REST properties ``names``; one absent from ``data`` is cleared.

    Arrays are replaced whole: "Any item not listed here will be removed if it already exists."
    """
    check_keys(data, REQUEST_FIELDS, "contact")
    changes = Changes()
    for name in names:
        if name not in REQUEST_FIELDS:
            raise bad(f"Invalid update_mask field: {name}", "update_mask", name)
        value = data.get(name)
        if name in SCALARS:
            changes.values[SCALARS[name][0]] = _scalar(name, data)
        elif name in ARRAYS:
            _write_items(changes, name, value)
        elif name == "company":
            _write_company(changes, value)
        elif name == "custom_fields":
            _write_custom(db, changes, value)
        elif name == "social_accounts":
            changes.values[SOCIAL] = _social(value)
        # origin and utm_parameters: accepted, but there is no legacy field to keep them in
    return changes


def _scalar(name: str, data: Mapping[str, Any]) -> Value:
    _, kind, limit = SCALARS[name]
    text = optional_str(data, name, limit)
    if text is None:
        return None
    if kind == "id":
        return parse_id(text, name)
    if kind == "date":
        return parse_date(text, name)
    if name == "source_type" and text not in SOURCE_TYPES:
        raise bad(f"Invalid source_type: {text}", "source_type", text)
    return text


def _write_items(changes: Changes, prop: str, items: Any) -> None:
    slots = ARRAYS[prop]
    for attrs in slots.values():
        changes.values.update(dict.fromkeys(attrs.values()))
    if items is None:
        return
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise bad(f"{prop} must be a list of objects", prop)
    explicit = [slot for slot in map(_slot_of, items) if slot is not None]
    for slot in explicit:
        if slot not in slots:
            raise bad(f"Invalid {prop} field: {slot}", prop, slot)
        if explicit.count(slot) > 1:
            raise bad(f"{prop} lists {slot} twice", prop, slot)
    free = iter([s for s in slots if s not in explicit])
    for item in items:
        chosen = _slot_of(item) or next(free, None)
        if chosen is None:
            raise bad(f"{prop} has more items than slots", prop)
        _write_item(changes, prop, chosen, item)


def _slot_of(item: Mapping[str, Any]) -> str | None:
    """The slot an item names; None when it leaves the choice to the server."""
    slot = item.get("field")
    if slot is None or (isinstance(slot, str) and slot.endswith("_UNSPECIFIED")):
        return None
    if not isinstance(slot, str):
        raise bad("field must be a string", "field")
    return slot


def _write_item(changes: Changes, prop: str, slot: str, item: Mapping[str, Any]) -> None:
    attrs = ARRAYS[prop][slot]
    check_keys(item, set(attrs) | {"field"} | _ECHOED, prop)
    values = {attr: optional_str(item, attr, _limit(prop, slot, attr)) for attr in attrs}
    required = _REQUIRED.get(prop)
    if required is not None and values[required] is None:
        raise bad(f"{prop} {slot} needs {required}", prop, slot)
    region = values.get("region_code") or item.get("region")
    if prop == "addresses" and region and not values["country_code"]:
        raise bad(f"addresses {slot}: country_code is required with region_code", prop, slot)
    if prop == "addresses" and not any(values.values()):
        raise bad(f"addresses {slot} is empty", prop, slot)
    for attr, value in values.items():
        changes.values[attrs[attr]] = value
    reason = optional_str(item, "opt_in_reason")
    if prop == "email_addresses" and reason is not None:
        changes.opt_ins[str(values["email"])] = reason


def _limit(prop: str, slot: str, attr: str) -> int | None:
    """Per-slot maximum lengths from the SDK's field descriptions."""
    first = slot in ("EMAIL1", "PHONE1", "PHONE2", "PHONE3", "BILLING")
    if attr == "email":
        return 75 if first else 100
    if prop == "phone_numbers" and attr == "number":
        return 40 if first else 20
    if attr in ("line1", "line2"):
        return 75 if first else 100
    if attr == "locality":
        return 50 if first else 100
    if attr == "postal_code":
        return 20 if slot == "SHIPPING" else 15
    return 10 if attr == "zip_four" else None


def _write_company(changes: Changes, company: Any) -> None:
    if company is None:
        changes.values.update(CompanyID=None, Company=None)
        return
    if not isinstance(company, dict):
        raise bad("company must be an object", "company")
    check_keys(company, {"id", "company_name"}, "company")
    company_id = company.get("id")
    changes.values["CompanyID"] = None if company_id in (None, "") else parse_id(company_id, "id")
    changes.values["Company"] = optional_str(company, "company_name")


def _write_custom(db: Database, changes: Changes, items: Any) -> None:
    by_id = {cid: legacy for cid, legacy in custom_fields(db)}
    changes.values.update(dict.fromkeys(by_id.values()))
    if items is None:
        return
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise bad("custom_fields must be a list of objects", "custom_fields")
    for item in items:
        check_keys(item, {"id", "content"}, "custom_fields")
        legacy = by_id.get(parse_id(item.get("id"), "custom_field"))
        if legacy is None:
            raise bad(f"No custom field with id {item.get('id')}", "custom_field")
        content = item.get("content")
        if isinstance(content, (dict, list)):
            raise bad(f"custom field {item.get('id')}: content must be a scalar", "custom_field")
        text = json.dumps(content) if isinstance(content, bool) else content
        changes.values[legacy] = None if text in (None, "") else str(text)


def _social(items: Any) -> list[Value] | None:
    if items is None:
        return None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise bad("social_accounts must be a list of objects", "social_accounts")
    accounts: list[Value] = []
    for item in items:
        check_keys(item, {"type", "name"}, "social_accounts")
        if item.get("type") not in SOCIAL_TYPES:
            raise bad(f"Invalid social account type: {item.get('type')}", "social_accounts")
        name = optional_str(item, "name", 255)
        accounts.append({"type": item["type"], **({} if name is None else {"name": name})})
    return accounts or None


def _int(value: Value) -> int:
    return value if isinstance(value, int) else 0
