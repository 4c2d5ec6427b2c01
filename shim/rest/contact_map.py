"""Legacy Contact fields and their REST v2 places, both directions (docs/keap.md#contact-fields).

Each legacy field is one ``Mapped``: the REST property that carries it (``given_name``), or a
slot of an array property (``email_addresses`` item with ``field`` ``EMAIL2``, attribute
``email``), or an attribute of ``company``; plus the REST filter and order that can stand in
for it in a query. Fields with no REST equivalent (``Password``, ``Address1Type``...) have
``prop=None``: reading them gives nothing (legacy answers leave empty fields out anyway),
writing or filtering on them is refused with ``[NoRestTranslation]`` rather than dropped.

Custom fields (``_Name``) come from ``GET /contacts/model``: legacy ``_Name`` is REST
``field_name`` ``Name`` (the underscore is the legacy API's marker; docs/keap.md#open-questions, 2).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shim.rest.legacy import FieldSpec, FieldType
from shim.xmlrpc import Value

#: Array properties: slot -> attribute; the request attributes an item may carry; the one
#: attribute an item cannot go without.
ARRAY_ATTRS: dict[str, tuple[str, ...]] = {
    "email_addresses": ("email",),
    "phone_numbers": ("number", "extension", "type"),
    "fax_numbers": ("number", "type"),
    "addresses": (
        "line1", "line2", "locality", "region_code", "postal_code", "zip_four", "country_code",
    ),
}  # fmt: skip
REQUIRED_ATTR = {"email_addresses": "email", "phone_numbers": "number", "fax_numbers": "number"}
#: Read-model attributes that stand in for a missing request attribute on read.
_READ_FALLBACK = {"region_code": "region", "country_code": "country"}


@dataclass(frozen=True)
class Mapped:
    """One legacy Contact field and where it lives in REST v2."""

    legacy: str
    type: FieldType
    #: The REST property to request (``fields=``) and read; None: no REST equivalent.
    prop: str | None
    slot: str | None = None
    attr: str | None = None
    #: Writable in the legacy API.
    writable: bool = True
    #: Writable through REST (legacy-writable fields REST cannot write are refused).
    rest_writable: bool = True
    #: REST filter name, whether it takes a trailing ``*``, and whether its matches are
    #: exactly the legacy ones (False: a superset, re-checked locally).
    filter: str | None = None
    wildcard: bool = False
    exact: bool = True
    note: str = ""

    @property
    def spec(self) -> FieldSpec:
        return FieldSpec(self.type, self.writable)

    def read(self, contact: Mapping[str, Any]) -> Value:
        """This field's legacy value from a REST Contact (None when empty)."""
        if self.prop is None:
            return None
        raw: Any = contact.get(self.prop)
        if self.slot is not None:
            item = next(
                (i for i in raw or [] if isinstance(i, dict) and i.get("field") == self.slot), {}
            )
            raw = item.get(self.attr or "")
            if raw in (None, "") and self.attr in _READ_FALLBACK:
                raw = item.get(_READ_FALLBACK[self.attr])
        elif self.attr is not None:
            raw = raw.get(self.attr) if isinstance(raw, dict) else None
        elif self.prop == "tag_ids":
            ids = sorted(int(t) for t in raw or [] if str(t).isdigit())
            return ",".join(map(str, ids)) or None
        return from_rest(raw, self.type)


def _scalar(legacy: str, type_: FieldType, prop: str, **kw: Any) -> Mapped:
    return Mapped(legacy, type_, prop, **kw)


def _slots() -> list[Mapped]:
    out = [
        Mapped("Email", "str", "email_addresses", "EMAIL1", "email", filter="email",
               wildcard=True, exact=False, note="REST `email` matches all three emails"),
        Mapped("EmailAddress2", "str", "email_addresses", "EMAIL2", "email"),
        Mapped("EmailAddress3", "str", "email_addresses", "EMAIL3", "email"),
    ]  # fmt: skip
    for n in range(1, 6):
        for suffix, attr in (("", "number"), ("Ext", "extension"), ("Type", "type")):
            out.append(Mapped(f"Phone{n}{suffix}", "str", "phone_numbers", f"PHONE{n}", attr))
    for n in (1, 2):
        for suffix, attr in (("", "number"), ("Type", "type")):
            out.append(Mapped(f"Fax{n}{suffix}", "str", "fax_numbers", f"FAX{n}", attr))
    for n, slot in ((1, "BILLING"), (2, "SHIPPING"), (3, "OTHER")):
        street = "StreetAddress" if n == 1 else f"Address{n}Street"
        suffix = "" if n == 1 else str(n)
        parts = [
            (f"{street}1", "line1"), (f"{street}2", "line2"), (f"City{suffix}", "locality"),
            (f"State{suffix}", "region_code"), (f"PostalCode{suffix}", "postal_code"),
            (f"ZipFour{n}", "zip_four"), (f"Country{suffix}", "country_code"),
        ]  # fmt: skip
        for legacy, attr in parts:
            kw: dict[str, Any] = {}
            if legacy in ("City", "State"):
                kw = {"filter": legacy.lower(), "wildcard": True}
            elif attr in ("line1", "postal_code") or (attr == "locality" and n > 1):
                kw = {"filter": f"{slot.lower()}_address_{attr}"}
            out.append(Mapped(legacy, "str", "addresses", slot, attr, **kw))
    return out


_TEXT = {
    "FirstName": ("given_name", "given_name"),
    "MiddleName": ("middle_name", "middle_name"),
    "LastName": ("family_name", "family_name"),
    "Title": ("prefix", None),
    "Suffix": ("suffix", None),
    "Nickname": ("preferred_name", None),
    "SpouseName": ("spouse_name", None),
    "JobTitle": ("job_title", None),
    "Website": ("website", "website"),
    "ContactType": ("contact_type", None),
    "ReferralCode": ("referral_code", None),
    "TimeZone": ("time_zone", None),
    "Language": ("preferred_locale", None),
    "AssistantName": ("assistant_name", None),
    "AssistantPhone": ("assistant_phone", None),
    "BillingInformation": ("billing_information", None),
}

FIELDS: dict[str, Mapped] = {
    m.legacy: m
    for m in [
        Mapped("Id", "int", "id", writable=False, filter="contact_id"),
        *(
            _scalar(legacy, "str", prop, filter=flt, wildcard=flt is not None)
            for legacy, (prop, flt) in _TEXT.items()
        ),
        *_slots(),
        Mapped("Company", "str", "company", attr="company_name"),
        Mapped("CompanyID", "int", "company", attr="id", filter="company_id"),
        _scalar("Birthday", "date", "birth_date", note="REST keeps the date only"),
        _scalar("Anniversary", "date", "anniversary_date", note="REST keeps the date only"),
        _scalar("LeadSourceId", "int", "leadsource_id"),
        _scalar("OwnerID", "int", "owner_id"),
        _scalar("AccountId", "int", "account_id", writable=False),
        _scalar("DateCreated", "date", "create_time", writable=False),
        _scalar("LastUpdated", "date", "update_time", writable=False),
        _scalar("CreatedBy", "int", "created_by", writable=False),
        _scalar("LastUpdatedBy", "int", "last_updated_by", writable=False),
        _scalar("Groups", "str", "tag_ids", writable=False, note="tag ids, comma-separated"),
        _scalar(
            "ContactNotes",
            "str",
            "notes",
            rest_writable=False,
            note="read-only in REST (not in the request model)",
        ),
        Mapped(
            "Leadsource",
            "str",
            None,
            rest_writable=False,
            filter="lead_source_name",
            wildcard=True,
            note="the lead source name: REST filters on it, never returns it",
        ),
        *(
            Mapped(name, "str", None, rest_writable=False, note="no REST v2 equivalent")
            for name in ("Address1Type", "Address2Type", "Address3Type", "Username", "Password")
        ),
        Mapped("Validated", "int", None, rest_writable=False, note="no REST v2 equivalent"),
    ]
}

#: Legacy order fields REST can sort contacts by, and their REST names.
ORDERS = {"Id": "id", "DateCreated": "create_time", "LastUpdated": "update_time", "Email": "email"}


@dataclass(frozen=True)
class CustomField:
    """A contact custom field from ``GET /contacts/model``."""

    id: str
    field_name: str
    field_type: str

    @property
    def legacy(self) -> str:
        return "_" + self.field_name

    @property
    def type(self) -> FieldType:
        kind = self.field_type.upper()
        if kind in ("WHOLENUMBER", "WHOLE_NUMBER", "NUMBER", "YEAR", "MONTH", "DAYOFWEEK"):
            return "int"
        if kind in ("DATE", "DATETIME", "DATE_TIME"):
            return "date"
        return "str"

    @property
    def textual(self) -> bool:
        """Text-like fields take ``==`` with a trailing ``*`` in REST filters."""
        return self.type == "str"

    def read(self, contact: Mapping[str, Any]) -> Value:
        for item in contact.get("custom_fields") or []:
            if isinstance(item, dict) and str(item.get("id")) == self.id:
                return from_rest(item.get("content"), self.type)
        return None


def custom_fields(model: Mapping[str, Any]) -> dict[str, CustomField]:
    """Legacy name -> custom field, from a ``/contacts/model`` answer."""
    out: dict[str, CustomField] = {}
    for item in model.get("custom_fields") or []:
        if isinstance(item, dict) and item.get("id") is not None and item.get("field_name"):
            cf = CustomField(str(item["id"]), str(item["field_name"]), str(item.get("field_type")))
            out[cf.legacy] = cf
    return out


def legacy_fields(custom: Mapping[str, CustomField]) -> dict[str, FieldSpec]:
    """The legacy Contact table as the legacy API saw it: every field, custom ones too."""
    return {
        **{n: m.spec for n, m in FIELDS.items()},
        **{n: FieldSpec(c.type) for n, c in custom.items()},
    }


def rest_props(names: Iterable[str], custom: Mapping[str, CustomField]) -> list[str]:
    """The REST ``fields=`` for reading ``names`` (always ``id``)."""
    props = {"id"}
    for name in names:
        mapped = FIELDS.get(name)
        if mapped is not None and mapped.prop is not None:
            props.add(mapped.prop)
        elif name in custom:
            props.add("custom_fields")
    return sorted(props)


def legacy_row(
    contact: Mapping[str, Any], names: Iterable[str], custom: Mapping[str, CustomField]
) -> dict[str, Value]:
    """The legacy values of ``names`` from a REST Contact (None for empty ones)."""
    row: dict[str, Value] = {}
    for name in names:
        mapped = FIELDS.get(name)
        if mapped is not None:
            row[name] = mapped.read(contact)
        elif name in custom:
            row[name] = custom[name].read(contact)
    return row


def from_rest(raw: Any, type_: FieldType) -> Value:
    """A REST JSON value in the legacy field's XML-RPC type."""
    if raw is None or raw == "" or isinstance(raw, (dict, list)):
        return None
    if type_ == "int":
        text = str(raw).strip()
        return int(text) if text.lstrip("-").isdigit() else None
    if type_ == "date":
        return parse_rest_time(str(raw))
    if isinstance(raw, bool):
        return "1" if raw else "0"
    return str(raw)


def parse_rest_time(text: str) -> datetime.datetime | None:
    """An ISO-8601 REST time (``...Z`` or an offset) or date as a naive UTC datetime, whole
    seconds, as the legacy API returned dates (its zone is unconfirmed: docs/keap.md#open-questions,
    1)."""
    try:
        if "T" not in text:
            return datetime.datetime.strptime(text[:10], "%Y-%m-%d")
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def to_rest(value: Value, type_: FieldType, prop: str | None) -> Any:
    """A coerced legacy value as REST JSON: ids and numbers as strings, dates as REST dates."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if prop in ("birth_date", "anniversary_date"):
            return value.strftime("%Y-%m-%d")
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return str(value)
