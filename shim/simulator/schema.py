"""The legacy tables the simulator knows, their fields, and how written values are coerced.

Only the tables keyshim's tests and demo touch are modelled: Contact, ContactGroup (tags),
ContactGroupCategory, ContactGroupAssign (read-only join of contacts and tags), FileBox
(read-only; written through FileService), LeadSource, LeadSourceCategory, Company, User
(read-only), Stage and Lead (opportunities), SocialAccount (a contact's social
accounts). Field names are the legacy ones scripts send.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shim.simulator.commerce_tables import READ_ONLY as COMMERCE_READ_ONLY
from shim.simulator.commerce_tables import TABLE_SPECS as COMMERCE_SPECS
from shim.simulator.faults import KeapFault, invalid
from shim.xmlrpc import Value

FieldType = Literal["int", "str", "date", "float"]


@dataclass(frozen=True)
class FieldSpec:
    type: FieldType
    writable: bool = True


def commerce_fields(spec: str) -> dict[str, FieldSpec]:
    """A commerce_tables.py table: ``Name:t`` (i int, s str, f double, d date; ``-`` read-only)."""
    kinds: dict[str, FieldType] = {"i": "int", "s": "str", "f": "float", "d": "date"}
    fields: dict[str, FieldSpec] = {}
    for item in spec.split():
        name, _, code = item.partition(":")
        fields[name] = FieldSpec(kinds[code[0]], writable=not code.endswith("-"))
    return fields


def _strings(*names: str) -> dict[str, FieldSpec]:
    return {name: FieldSpec("str") for name in names}


_PHONES = {
    f"Phone{n}{suffix}": FieldSpec("str") for n in range(1, 6) for suffix in ("", "Ext", "Type")
}

CONTACT: dict[str, FieldSpec] = {
    "Id": FieldSpec("int", writable=False),
    **_strings("FirstName", "MiddleName", "LastName", "Nickname", "Title", "Suffix"),
    **_strings("Email", "EmailAddress2", "EmailAddress3"),
    **_PHONES,
    **_strings("StreetAddress1", "StreetAddress2", "City", "State", "PostalCode", "Country"),
    **_strings("Address2Street1", "Address2Street2", "City2", "State2", "PostalCode2", "Country2"),
    **_strings("Address3Street1", "Address3Street2", "City3", "State3", "PostalCode3", "Country3"),
    **_strings("ZipFour1", "ZipFour2", "ZipFour3"),
    **_strings("Fax1", "Fax1Type", "Fax2", "Fax2Type"),
    **_strings("Company", "JobTitle", "ContactType", "Leadsource", "Website"),
    **_strings("SpouseName", "ReferralCode", "TimeZone", "Language"),
    **_strings("AssistantName", "AssistantPhone", "BillingInformation"),
    "CompanyID": FieldSpec("int"),
    "OwnerID": FieldSpec("int"),
    "LeadSourceId": FieldSpec("int"),
    "Birthday": FieldSpec("date"),
    "Anniversary": FieldSpec("date"),
    "DateCreated": FieldSpec("date", writable=False),
    "LastUpdated": FieldSpec("date", writable=False),
    "Groups": FieldSpec("str", writable=False),
}

TABLES: dict[str, dict[str, FieldSpec]] = {
    "Contact": CONTACT,
    "ContactGroup": {
        "Id": FieldSpec("int", writable=False),
        "GroupName": FieldSpec("str"),
        "GroupCategoryId": FieldSpec("int"),
        "GroupDescription": FieldSpec("str"),
    },
    "ContactGroupCategory": {
        "Id": FieldSpec("int", writable=False),
        "CategoryName": FieldSpec("str"),
        "CategoryDescription": FieldSpec("str"),
    },
    "ContactGroupAssign": {
        "ContactId": FieldSpec("int"),
        "GroupId": FieldSpec("int"),
        "DateCreated": FieldSpec("date"),
        "ContactGroup": FieldSpec("str"),
        "Contact.Email": FieldSpec("str"),
        "Contact.FirstName": FieldSpec("str"),
        "Contact.LastName": FieldSpec("str"),
    },
    "LeadSource": {
        "Id": FieldSpec("int", writable=False),
        **_strings("Name", "Description", "Vendor", "Medium", "Message", "Status"),
        "StartDate": FieldSpec("date"),
        "EndDate": FieldSpec("date"),
        "CostPerLead": FieldSpec("float"),
        "LeadSourceCategoryId": FieldSpec("int"),
    },
    "LeadSourceCategory": {
        "Id": FieldSpec("int", writable=False),
        **_strings("Name", "Description"),
    },
    "Company": {
        "Id": FieldSpec("int", writable=False),
        **_strings("Company", "Email", "Phone1", "Phone1Ext", "Phone1Type", "Fax1", "Fax1Type"),
        **_strings("StreetAddress1", "StreetAddress2", "City", "State", "PostalCode", "Country"),
        **_strings("ZipFour1", "Website"),
        "OwnerID": FieldSpec("int"),
    },
    "User": {
        "Id": FieldSpec("int", writable=False),
        **_strings("FirstName", "LastName", "MiddleName", "Nickname", "Suffix", "SpouseName"),
        **_strings("Title", "Email", "City", "State", "PostalCode"),
        **_strings("StreetAddress1", "StreetAddress2", "Signature", "HTMLSignature"),
        "GlobalUserId": FieldSpec("int"),
        "Partner": FieldSpec("int"),
    },
    "Stage": {
        "Id": FieldSpec("int", writable=False),
        "StageName": FieldSpec("str"),
        "StageOrder": FieldSpec("int"),
        "TargetNumDays": FieldSpec("int"),
        "Probability": FieldSpec("int"),
    },
    "Lead": {
        "Id": FieldSpec("int", writable=False),
        **_strings("OpportunityTitle", "NextActionNotes", "OpportunityNotes"),
        "ContactID": FieldSpec("int"),
        "StageID": FieldSpec("int"),
        "UserID": FieldSpec("int"),
        "AffiliateId": FieldSpec("int"),
        "NextActionDate": FieldSpec("date"),
        "EstimatedCloseDate": FieldSpec("date"),
        "ProjectedRevenueLow": FieldSpec("float"),
        "ProjectedRevenueHigh": FieldSpec("float"),
    },
    "ContactAction": {
        "Id": FieldSpec("int", writable=False),
        "ContactId": FieldSpec("int"),
        "OpportunityId": FieldSpec("int"),
        "UserID": FieldSpec("int"),
        **_strings("ObjectType", "ActionType", "ActionDescription", "CreationNotes"),
        "ActionDate": FieldSpec("date"),
        "CompletionDate": FieldSpec("date"),
        "DateCreated": FieldSpec("date", writable=False),
    },
    "DataFormField": {
        "Id": FieldSpec("int"),
        "FormId": FieldSpec("int"),
        "GroupId": FieldSpec("int"),
        "DataType": FieldSpec("int"),
        "ListRows": FieldSpec("int"),
        **_strings("Name", "Label", "DefaultValue", "Values"),
    },
    "DataFormGroup": {"Id": FieldSpec("int"), "Name": FieldSpec("str"), "TabId": FieldSpec("int")},
    "DataFormTab": {
        "Id": FieldSpec("int"),
        "TabName": FieldSpec("str"),
        "FormId": FieldSpec("int"),
    },
    # A contact's social accounts; REST v2 shows them as the contact's social_accounts.
    "SocialAccount": {
        "Id": FieldSpec("int", writable=False),
        "ContactId": FieldSpec("int"),
        **_strings("AccountName", "AccountType"),
        "DateCreated": FieldSpec("date", writable=False),
        "LastUpdated": FieldSpec("date", writable=False),
    },
    "FileBox": {
        "Id": FieldSpec("int"),
        "ContactId": FieldSpec("int"),
        "FileName": FieldSpec("str"),
        "Extension": FieldSpec("str"),
        "FileSize": FieldSpec("int"),
        "Public": FieldSpec("int"),
    },
}

TABLES.update({t: commerce_fields(spec) for t, spec in COMMERCE_SPECS.items()})

#: Tables the legacy API only reads (rows come from addToGroup and FileService).
READ_ONLY_TABLES = (
    frozenset(
        {"ContactGroupAssign", "FileBox", "User", "DataFormField", "DataFormGroup", "DataFormTab"}
    )
    | COMMERCE_READ_ONLY
)

_DATE_FORMATS = ("%Y%m%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")


def fields_of(table: str, custom_fields: tuple[str, ...]) -> dict[str, FieldSpec]:
    """A table's fields; Contact also has the seeded custom fields (``_Name``, strings)."""
    fields = TABLES.get(table)
    if fields is None:
        raise KeapFault("NoTableFound", f"No table found: {table}")
    if table == "Contact":
        return {**fields, **{name: FieldSpec("str") for name in custom_fields}}
    return fields


def check_field(table: str, fields: Mapping[str, FieldSpec], name: str) -> FieldSpec:
    spec = fields.get(name)
    if spec is None:
        raise KeapFault("NoFieldFound", f"No field found: {table}.{name}")
    return spec


def is_empty(value: Value) -> bool:
    """Legacy answers leave out fields that are null or empty strings."""
    return value is None or value == ""


def parse_date(text: str) -> datetime.datetime | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    return None


def coerce(table: str, name: str, spec: FieldSpec, value: Value) -> Value:
    """A written value in the field's type; empty values clear the field.

    Keap converts numeric strings for number fields and numbers for text fields, and parses
    date strings; anything else (a struct for a name, a word for a number) is refused.
    """
    if is_empty(value):
        return None
    if spec.type == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif spec.type == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif spec.type == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None)
    elif isinstance(value, str) and (parsed := parse_date(value)) is not None:
        return parsed
    raise invalid(f"Invalid value for {table}.{name}: {value!r}")
