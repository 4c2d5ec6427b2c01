"""A contact's social accounts: legacy table ``SocialAccount`` rows, which REST v2 shows as the
contact's ``social_accounts`` array (SDK model ``SocialAccount``: ``type``, ``name``).

One data set for both protocols: the rows are the truth (they carry the legacy ``Id``,
``DateCreated`` and ``LastUpdated`` that REST has no place for) and REST reads them, in Id
order. A REST write replaces the contact's array whole ("Any item not listed here will be
removed"), so it is matched back onto the rows: an item equal to a row keeps that row (and its
Id); an item of a row's type with another name renames it; the rest are new rows, and rows no
item matched are deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

from shim.simulator.data import Database, Row, to_datetime
from shim.xmlrpc import Value

TABLE = "SocialAccount"
UNSPECIFIED = "SOCIAL_ACCOUNT_TYPE_UNSPECIFIED"
#: Legacy ``AccountType`` -> REST ``type`` (the SDK's enum). Legacy stored free text; a word
#: not listed here reads as UNSPECIFIED through REST.
REST_TYPES: dict[str, str] = {
    "Facebook": "FACEBOOK",
    "LinkedIn": "LINKED_IN",
    "Twitter": "TWITTER",
    "Instagram": "INSTAGRAM",
    "Snapchat": "SNAPCHAT",
    "YouTube": "YOUTUBE",
    "Pinterest": "PINTEREST",
}
LEGACY_TYPES = {rest: legacy for legacy, rest in REST_TYPES.items()}
_FOLDED = {legacy.casefold(): rest for legacy, rest in REST_TYPES.items()}


def rest_type(account_type: Value) -> str:
    """A legacy AccountType as REST's enum (case-insensitive; anything else UNSPECIFIED)."""
    return _FOLDED.get(str(account_type or "").casefold(), UNSPECIFIED)


def rows_of(db: Database, contact_id: int) -> list[Row]:
    rows = db.tables[TABLE].values()
    return sorted((r for r in rows if r.get("ContactId") == contact_id), key=_id)


def accounts(db: Database, contact_id: int) -> list[dict[str, str]]:
    """The contact's ``social_accounts`` as REST answers them."""
    out = []
    for row in rows_of(db, contact_id):
        item = {"type": rest_type(row.get("AccountType"))}
        if row.get("AccountName"):
            item["name"] = str(row["AccountName"])
        out.append(item)
    return out


def replace(db: Database, contact_id: int, items: Sequence[dict[str, str]], now: float) -> None:
    """Make the contact's rows match ``items`` (REST's whole-array write); see the module."""
    rows = rows_of(db, contact_id)
    kept: dict[int, int] = {}  # item index -> row Id
    free = list(rows)
    for exact in (True, False):
        for index, item in enumerate(items):
            if index in kept:
                continue
            for row in free:
                same_type = rest_type(row.get("AccountType")) == item["type"]
                same_name = (row.get("AccountName") or None) == (item.get("name") or None)
                if same_type and (same_name or not exact):
                    kept[index] = _id(row)
                    free.remove(row)
                    break
    when = to_datetime(now)
    for row in free:
        db.tables[TABLE].pop(_id(row), None)
    for index, item in enumerate(items):
        name = item.get("name") or None
        if index in kept:
            row = db.tables[TABLE][kept[index]]
            if (row.get("AccountName") or None) != name:
                row["AccountName"] = name
                row["LastUpdated"] = when
            continue
        values: Row = {"ContactId": contact_id, "AccountName": name}
        values["AccountType"] = LEGACY_TYPES.get(item["type"])
        db.add(TABLE, values, now)


def _id(row: Row) -> int:
    value = row.get("Id")
    return value if isinstance(value, int) else 0
