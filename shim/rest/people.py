"""The people and sources tables: ``User`` (read-only, as in the legacy API), ``Company``
and ``LeadSource``, each a ``spec.TableSpec`` over its REST v2 resource (SDK models
``User``, ``Company``, ``LeadSource``)."""

from __future__ import annotations

from shim.errors import NotFound
from shim.rest.context import Ctx
from shim.rest.spec import Column, TableSpec, missing, rest_only

_ADDRESS = "a write to part of an address, phone, fax or email is read, merged and written "
_ADDRESS += "back (REST replaces the object whole): another client's change in between is lost"

USER = TableSpec(
    "User",
    "/users",
    "users",
    {
        "Id": rest_only("int", "id", filter="user_ids"),
        "FirstName": rest_only("str", "given_name", filter="given_name"),
        "LastName": rest_only("str", "family_name"),
        "MiddleName": rest_only("str", "middle_name"),
        "Nickname": rest_only("str", "nickname"),
        "Suffix": rest_only("str", "suffix"),
        "SpouseName": rest_only("str", "spouse_name"),
        "Title": rest_only("str", "title"),
        "Email": rest_only("str", "email_addresses.email", filter="email",
                           note="the first of the user's email addresses"),
        "GlobalUserId": rest_only("int", "global_user_id"),
        "Partner": rest_only("int", "partner", note="REST boolean as 1/0"),
        "StreetAddress1": rest_only("str", "address.line1"),
        "StreetAddress2": rest_only("str", "address.line2"),
        "City": rest_only("str", "address.locality"),
        "State": rest_only("str", "address.region_code"),
        "PostalCode": rest_only("str", "address.postal_code"),
        "Signature": missing("str", writable=False),
        "HTMLSignature": missing("str", writable=False),
    },
    legacy_read_only=True,
    writes=frozenset(),
    fidelity="approximate",
    notes="read-only (as in the legacy API); inactive users and partners are not listed "
    "(REST lists them only on request); Email is the first email address",
)  # fmt: skip

COMPANY = TableSpec(
    "Company",
    "/companies",
    "companies",
    {
        "Id": rest_only("int", "id", filter="company_id", compare=True),
        "Company": Column("str", "company_name", filter="name", wildcard=True),
        "Email": Column("str", "email_address.email", filter="email"),
        "Phone1": Column("str", "phone_number.number"),
        "Phone1Ext": Column("str", "phone_number.extension"),
        "Phone1Type": Column("str", "phone_number.type"),
        "Fax1": Column("str", "fax_number.number"),
        "Fax1Type": Column("str", "fax_number.type"),
        "StreetAddress1": Column("str", "address.line1"),
        "StreetAddress2": Column("str", "address.line2"),
        "City": Column("str", "address.locality", filter="city", wildcard=True),
        "State": Column("str", "address.region_code", filter="state", wildcard=True),
        "PostalCode": Column("str", "address.postal_code"),
        "ZipFour1": Column("str", "address.zip_four"),
        "Country": Column("str", "address.country_code",
                          note="sent as given (REST wants an ISO alpha-3 code)"),
        "Website": Column("str", "website"),
        "OwnerID": Column("int", "owner_id", text_id=True),
    },
    fidelity="approximate",
    notes=_ADDRESS + "; Country/State go as given (REST wants ISO codes)",
)  # fmt: skip

LEAD_SOURCE = TableSpec(
    "LeadSource",
    "/leadSources",
    "lead_sources",
    {
        "Id": rest_only("int", "id", filter="id", compare=True),
        "Name": Column("str", "name", filter="name", wildcard=True),
        "Description": Column("str", "description", filter="description", wildcard=True),
        "Vendor": Column("str", "vendor", filter="vendor", wildcard=True),
        "Medium": Column("str", "medium", filter="medium", wildcard=True),
        "Message": Column("str", "message", filter="message", wildcard=True),
        "Status": Column("str", "status", filter="status"),
        "LeadSourceCategoryId": Column("int", "lead_source_category_id", text_id=True,
                                       filter="lead_source_category_id"),
        "StartDate": Column("date", "start_time"),
        "EndDate": Column("date", "end_time"),
        "CostPerLead": missing("float", "no REST v2 equivalent (expenses are their own "
                               "resource, /leadSources/{id}/expenses)"),
    },
    fidelity="approximate",
    notes="CostPerLead has no REST v2 equivalent",
)  # fmt: skip

LEAD_SOURCE_CATEGORY = TableSpec(
    "LeadSourceCategory",
    "/leadSourceCategories",
    "lead_source_categories",
    {
        "Id": rest_only("int", "id"),
        "Name": Column("str", "name", filter="name", wildcard=True),
        "Description": Column("str", "description", filter="description", wildcard=True),
    },
    orders={"Name": "name"},
)


async def link_contacts(ctx: Ctx, first: int, second: int, link_type: int) -> bool:
    """``ContactService.linkContacts`` -> ``POST /contacts:link`` (201 ContactLink)."""
    if first < 1 or second < 1:
        raise NotFound()
    body = {"contact1_id": str(first), "contact2_id": str(second), "link_type_id": str(link_type)}
    await ctx.client.json("POST", "/contacts:link", json_body=body)
    return True
