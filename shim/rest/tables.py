"""The registry of translated DataService tables: legacy table name -> its ``Table``.

One line per table. A flat table is a ``spec.TableSpec`` written next to its REST resource's
other translations; Contact and ContactGroupAssign implement ``spec.Table`` by hand.
"""

from __future__ import annotations

from shim.rest import contacts, opportunities, people, tags
from shim.rest.spec import Table, TableSpec

TABLES: dict[str, Table] = {
    "Contact": contacts.CONTACT_TABLE,
    "ContactGroup": tags.TAGS,
    "ContactGroupCategory": tags.CATEGORIES,
    "ContactGroupAssign": tags.ASSIGN_TABLE,
    "User": people.USER,
    "Company": people.COMPANY,
    "LeadSource": people.LEAD_SOURCE,
    "Lead": opportunities.LEAD,
    "Stage": opportunities.STAGE,
}


def specs() -> list[TableSpec]:
    """The tables declared by a ``TableSpec`` (for the docs and the spec tests)."""
    return [t for t in TABLES.values() if isinstance(t, TableSpec)]
