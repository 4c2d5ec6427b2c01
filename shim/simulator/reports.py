"""Saved searches (REST v2: "reports"), run over the simulated app's live data.

Both protocols read the same definitions and rows: the legacy ``SearchService`` methods
(search_services.py) and REST's ``/reporting/reports`` (rest/reports.py). A saved search has
an id, a name, the users who may run it (none listed: every user, REST's ``ALL_USERS``), and
columns (name, label); running it gives one row per record, each column's value as text (a
report cell is what the Keap UI shows, and REST's ``ReportEntryValue.value`` is a string).
Legacy answered in pages of 1000 rows, numbered from 0.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from shim.simulator.data import Database, Row
from shim.simulator.faults import KeapFault, invalid, not_found

#: Rows per legacy page (getSavedSearchResults*), and REST's largest ``page_size``.
LEGACY_PAGE = 1000
#: When the seeded saved searches were made (REST ``created_time``/``updated_time``).
CREATED = datetime.datetime(2025, 6, 1, 9, 0, 0)


@dataclass(frozen=True)
class SavedSearch:
    id: int
    name: str
    #: User ids who may run it; empty: every user.
    users: tuple[int, ...]
    #: (column name, label), in the report's order.
    columns: tuple[tuple[str, str], ...]
    #: The report's records, in its order.
    source: Callable[[Database], list[Row]]

    def allows(self, user_id: int) -> bool:
        return not self.users or user_id in self.users


_CONTACT_COLUMNS = (
    ("Id", "Contact Id"),
    ("FirstName", "First Name"),
    ("LastName", "Last Name"),
    ("Email", "Email"),
    ("City", "City"),
)
#: The seeded tag "Customer" (data.py).
CUSTOMER_TAG = 104


def _contacts(db: Database) -> list[Row]:
    return db.rows("Contact")


def _customers(db: Database) -> list[Row]:
    return [row for row in db.rows("Contact") if CUSTOMER_TAG in db.assignments.get(_id(row), {})]


SAVED_SEARCHES: dict[int, SavedSearch] = {
    s.id: s
    for s in (
        SavedSearch(31, "All contacts", (), _CONTACT_COLUMNS, _contacts),
        SavedSearch(33, "Customers", (1,), (*_CONTACT_COLUMNS[:4], ("Groups", "Tags")), _customers),
    )
}


def find(search_id: int) -> SavedSearch:
    found = SAVED_SEARCHES.get(search_id)
    if found is None:
        raise not_found()
    return found


def for_user(search_id: int, user_id: int) -> SavedSearch:
    """The saved search ``user_id`` may run; another user's is not found for them
    (Keap's legacy answer here is unverified)."""
    found = find(search_id)
    if not found.allows(user_id):
        raise not_found()
    return found


def columns(search: SavedSearch, names: list[str] | None) -> list[str]:
    """The columns asked for (all of them for None), each checked against the report."""
    known = [name for name, _ in search.columns]
    if names is None:
        return known
    if not names:
        raise KeapFault("NoFields", "No fields were requested")
    for name in names:
        if name not in known:
            raise invalid(f"No column {name} in saved search {search.id}")
    return list(dict.fromkeys(names))


def run(db: Database, search: SavedSearch, names: list[str]) -> list[dict[str, str]]:
    """Every row of the report, the columns ``names`` with a value, as text."""
    out = []
    for record in search.source(db):
        row = {}
        for name in names:
            value = record.get(name)
            if value is not None and value != "":
                row[name] = _text(value)
        out.append(row)
    return out


def _text(value: object) -> str:
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _id(row: Row) -> int:
    value = row.get("Id")
    return value if isinstance(value, int) else 0
