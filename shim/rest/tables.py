"""Which DataService tables translate, and for which methods: the registry behind
``table.translated_tables()`` and ``table.judge(method, table)``.

A leaf module (it imports no translation), so the module that translates a table registers it
where its handlers live, at import, with no import cycle::

    from shim.rest.tables import TableSpec, register_table

    register_table(TableSpec("Company", ALL, "approximate", "/companies", "notes ..."))

``table.py`` imports every translation module (through ``dataservice``), so by the time
anything reads the registry, every table spec has registered itself. A test checks that the
registry and the DataService dispatcher agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Fidelity = Literal["exact", "approximate"]
Judgement = Literal["exact", "approximate", "no"]

#: DataService methods whose first argument (after the key) is a table name.
TABLE_METHODS = ("query", "findByField", "count", "load", "add", "update", "delete")
READS = ("query", "findByField", "count", "load")
ALL = TABLE_METHODS


@dataclass(frozen=True)
class TableSpec:
    table: str
    #: The DataService methods that translate on this table (short names, e.g. "query").
    methods: tuple[str, ...]
    #: How faithful the table's fields are; a call's fidelity is the worse of this and the
    #: method's own.
    fidelity: Fidelity
    rest: str
    notes: str = ""


TABLE_SPECS: dict[str, TableSpec] = {}


def register_table(spec: TableSpec) -> TableSpec:
    """Add a translated table; registering one name twice is a programming error."""
    unknown = set(spec.methods) - set(TABLE_METHODS)
    if unknown:
        raise ValueError(f"{spec.table}: not DataService table methods: {sorted(unknown)}")
    if spec.table in TABLE_SPECS and TABLE_SPECS[spec.table] != spec:
        raise ValueError(f"table {spec.table} is registered twice")
    TABLE_SPECS[spec.table] = spec
    return spec


def table_method(method: str) -> str | None:
    """``"query"`` for ``"DataService.query"`` (a method taking a table first), else None."""
    service, _, name = method.partition(".")
    return name if service == "DataService" and name in TABLE_METHODS else None


def worse(a: Judgement, b: Judgement) -> Judgement:
    order: tuple[Judgement, ...] = ("no", "approximate", "exact")
    return a if order.index(a) <= order.index(b) else b


# Today's tables (Contact in contacts.py, tags and categories in tags.py; all dispatched in
# dataservice.py). New tables register next to their own handlers.
register_table(
    TableSpec("Contact", ALL, "approximate", "/contacts", "fields as the contact field map")
)
register_table(TableSpec("ContactGroup", ALL, "exact", "/tags"))
register_table(TableSpec("ContactGroupCategory", ALL, "exact", "/tags/categories"))
register_table(
    TableSpec(
        "ContactGroupAssign",
        READS,
        "approximate",
        "/contacts/{id}/tags, /tags/{id}/contacts",
        "read-only, as in the legacy API; needs an exact ContactId or GroupId",
    )
)
