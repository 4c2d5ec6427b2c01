"""The DataService table SocialAccount over REST v2: a contact's ``social_accounts`` array
(SDK model ``SocialAccount``: ``type``, ``name``).

REST keeps the accounts on the contact, not as records: reading needs the contact (an exact
``ContactId`` or ``Id`` criterion; REST cannot list accounts across contacts), and every write
is ``PATCH /contacts/{id}?update_mask=social_accounts`` with the whole array ("any item not
listed here will be removed"): read, change, write back, under the contact's lock (the one
ContactService.update takes), then read again and retry if another client's write replaced
it meanwhile (REST has no ETag: a change landing inside that round trip can still be lost).

Legacy ``Id``: REST items have none, so keyshim's is a stand-in computed from where the
account is, ``ContactId * 100 + 10 * type code + rank`` (type codes: ``CODES``; rank: 0 for
the contact's first account of that type, 1 for the second...). Contact 7's Facebook account
is 710, its LinkedIn one 720. It is the same on every call while the contact's accounts of
that type stay as they are, and it names the account for ``load``/``update``/``delete``; it
is not the number Keap's legacy API gave the row, and changing an account's type changes its
Id. ``DateCreated`` and ``LastUpdated`` have no REST equivalent.

``AccountType``: legacy stored text (Facebook, LinkedIn, Twitter...); REST an enum. The words
of ``TYPES`` map both ways (written case-insensitively); any other word is refused on write,
and an empty one is REST's ``SOCIAL_ACCOUNT_TYPE_UNSPECIFIED`` (read back as empty).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shim.errors import NotFound, NoTranslation
from shim.rest import criteria as crit
from shim.rest import legacy
from shim.rest.commerce_tables import exact_id
from shim.rest.context import Ctx
from shim.rest.listing import Row, prepare, project
from shim.rest.spec import Column, TableSpec, missing
from shim.xmlrpc import Value

log = logging.getLogger("shim.rest")

TABLE = "SocialAccount"
UNSPECIFIED = "SOCIAL_ACCOUNT_TYPE_UNSPECIFIED"
#: Legacy AccountType -> REST ``type``.
TYPES: dict[str, str] = {
    "Facebook": "FACEBOOK",
    "LinkedIn": "LINKED_IN",
    "Twitter": "TWITTER",
    "Instagram": "INSTAGRAM",
    "Snapchat": "SNAPCHAT",
    "YouTube": "YOUTUBE",
    "Pinterest": "PINTEREST",
}
_WORDS = {rest: word for word, rest in TYPES.items()}
_FOLDED = {word.casefold(): rest for word, rest in TYPES.items()}
#: REST type -> the digit it gives the stand-in Id.
CODES: dict[str, int] = {UNSPECIFIED: 0, **{rest: n for n, rest in enumerate(TYPES.values(), 1)}}
_TYPE_OF_CODE = {code: rest for rest, code in CODES.items()}
#: Accounts of one type a contact can hold here: the stand-in Id has one digit for the rank.
PER_TYPE = 10
Item = dict[str, str]


def legacy_id(contact_id: int, rest_type: str, rank: int) -> int:
    return contact_id * 100 + CODES[rest_type] * 10 + rank


def place(record_id: int) -> tuple[int, str, int] | None:
    """(contact id, REST type, rank) a stand-in Id names, or None."""
    contact_id, rest = divmod(record_id, 100)
    code, rank = divmod(rest, 10)
    rest_type = _TYPE_OF_CODE.get(code)
    return (contact_id, rest_type, rank) if contact_id > 0 and rest_type is not None else None


def _rest_type(value: Value) -> str:
    """A written AccountType as REST's type; a word REST has none for is refused."""
    if value is None or value == "":
        return UNSPECIFIED
    found = _FOLDED.get(str(value).casefold())
    if found is None:
        raise NoTranslation(
            f"{TABLE}.AccountType {value!r} has no REST v2 equivalent (REST knows "
            f"{', '.join(TYPES)})"
        )
    return found


def _items(contact: Any) -> list[Item]:
    """A contact's social accounts as REST items (type and name only)."""
    raw = contact.get("social_accounts") if isinstance(contact, dict) else None
    items: list[Item] = []
    for item in raw or []:
        if isinstance(item, dict):
            kind = str(item.get("type") or UNSPECIFIED)
            name = item.get("name")
            items.append({"type": kind, **({"name": str(name)} if name else {})})
    return items


def _kind(item: Item) -> str:
    """An item's type as keyshim tells them apart (a type newer than the SDK: UNSPECIFIED;
    the item itself keeps it, so a write sends it back unchanged)."""
    return item["type"] if item["type"] in CODES else UNSPECIFIED


def _rank(items: list[Item], index: int) -> int:
    """How many accounts of the same type come before item ``index``."""
    kind = _kind(items[index])
    return sum(1 for item in items[:index] if _kind(item) == kind)


def _index(items: list[Item], rest_type: str, rank: int) -> int:
    """Where the ``rank``-th account of ``rest_type`` is; NotFound when there is none."""
    seen = 0
    for index, item in enumerate(items):
        if _kind(item) == rest_type:
            if seen == rank:
                return index
            seen += 1
    raise NotFound()


def rows(contact_id: int, items: list[Item]) -> list[Row]:
    """The legacy rows of a contact's accounts."""
    out: list[Row] = []
    for index, item in enumerate(items):
        kind, rank = _kind(item), _rank(items, index)
        if rank > 9:
            raise NoTranslation(
                f"{TABLE}: contact {contact_id} has more than ten {kind} accounts, more than "
                "keyshim's stand-in Id can tell apart"
            )
        out.append(
            {
                "Id": legacy_id(contact_id, kind, rank),
                "ContactId": contact_id,
                "AccountName": item.get("name"),
                "AccountType": _WORDS.get(kind),
            }
        )
    return out


@dataclass(frozen=True)
class SocialTable(TableSpec):
    """SocialAccount; see the module docstring."""

    async def _read(self, ctx: Ctx, contact_id: int) -> list[Item]:
        if contact_id < 1:
            raise NotFound()
        params = [("fields", "id,social_accounts")]
        return _items(await ctx.client.get(f"/contacts/{contact_id}", params))

    async def _matching(self, ctx: Ctx, compiled: list[crit.Criterion]) -> list[Row]:
        for c in compiled:
            if self.columns[c.field].prop is None and c.field != "Id":
                raise NoTranslation(f"{TABLE}.{c.field}: REST v2 has no such value to filter on")
        contact_id = exact_id(compiled, "ContactId")
        record_id = exact_id(compiled, "Id")
        if contact_id is None and record_id is not None:
            named = place(record_id)
            contact_id = named[0] if named is not None else 0
        if contact_id is None:
            raise NoTranslation(
                f"{TABLE} over REST v2 needs an exact ContactId or Id criterion (REST keeps "
                "social accounts on each contact and cannot list them across contacts)"
            )
        try:
            found = rows(contact_id, await self._read(ctx, contact_id))
        except NotFound:
            return []  # an unknown contact has no accounts
        return [row for row in found if crit.matches(compiled, row)]

    async def query(
        self,
        ctx: Ctx,
        limit: int,
        page: int,
        criteria: Mapping[str, Value],
        names: list[str],
        order_by: str | None,
        ascending: bool,
    ) -> Value:
        compiled, limit = prepare(self.table, self.fields, limit, page, criteria, names, order_by)
        if order_by is not None and self.columns[order_by].prop is None and order_by != "Id":
            raise NoTranslation(f"{TABLE}.{order_by}: REST v2 has no such value to order by")
        found = await self._matching(ctx, compiled)  # the array's order (legacy: by Id)
        shown = crit.legacy_page(found, self.fields, order_by, ascending, limit, page)
        return [project(row, names) for row in shown]

    async def count(self, ctx: Ctx, criteria: Mapping[str, Value]) -> int:
        compiled = crit.compile_query(self.table, self.fields, criteria)
        return len(await self._matching(ctx, compiled))

    async def load(self, ctx: Ctx, record_id: int, names: list[str]) -> Value:
        legacy.check_fields(self.table, self.fields, names)
        named = place(record_id)
        if named is None:
            raise NotFound()
        try:
            found = rows(named[0], await self._read(ctx, named[0]))
        except NotFound:
            raise NotFound() from None
        row = next((r for r in found if r["Id"] == record_id), None)
        if row is None:
            raise NotFound()
        return project(row, names)

    async def add(self, ctx: Ctx, data: Mapping[str, Value]) -> int:
        values = legacy.writable(self.table, self.fields, dict(data))
        contact_id = values.get("ContactId")
        if not isinstance(contact_id, int) or contact_id < 1:
            raise NoTranslation(
                f"{TABLE}: REST v2 keeps social accounts on a contact; give a ContactId"
            )
        item = _item(_rest_type(values.get("AccountType")), values.get("AccountName"))

        def added(items: list[Item]) -> list[Item]:
            return _room_for(contact_id, [*items, item], len(items))

        written = await self._change(ctx, contact_id, added)
        return legacy_id(contact_id, _kind(item), _rank(written, len(written) - 1))

    async def update(self, ctx: Ctx, record_id: int, data: Mapping[str, Value]) -> int:
        values = legacy.writable(self.table, self.fields, dict(data))
        named = place(record_id)
        if named is None:
            raise NotFound()
        contact_id, rest_type, rank = named
        moved = values.get("ContactId", contact_id)
        if moved is not None and moved != contact_id:
            raise NoTranslation(
                f"{TABLE}: moving an account to another contact has no REST v2 translation "
                "(delete it and add it to the other contact)"
            )

        def changed(items: list[Item]) -> list[Item]:
            index = _index(items, rest_type, rank)
            was = items[index]
            kind = _rest_type(values["AccountType"]) if "AccountType" in values else was["type"]
            name = values["AccountName"] if "AccountName" in values else was.get("name")
            return _room_for(
                contact_id, [*items[:index], _item(kind, name), *items[index + 1 :]], index
            )

        await self._change(ctx, contact_id, changed)
        return record_id

    async def delete(self, ctx: Ctx, record_id: int) -> bool:
        named = place(record_id)
        if named is None:
            raise NotFound()
        contact_id, rest_type, rank = named

        def without(items: list[Item]) -> list[Item]:
            index = _index(items, rest_type, rank)
            return [*items[:index], *items[index + 1 :]]

        await self._change(ctx, contact_id, without)
        return True

    async def _change(
        self, ctx: Ctx, contact_id: int, change: Callable[[list[Item]], list[Item]]
    ) -> list[Item]:
        """Read the contact's accounts, ``change`` them, write the array whole; returns what
        was written.

        Written once, never retried: a change applied again on top of another client's
        (an add, a delete by rank) would not be the same change. keyshim's own writers are
        excluded by the lock; another client's change inside the round trip can be lost
        (REST has no ETag), which the re-read logs."""
        path = f"/contacts/{contact_id}"
        params = [("update_mask", "social_accounts"), ("fields", "id,social_accounts")]
        async with ctx.lock(f"rest-contact:{ctx.account}:{contact_id}"):
            new = change(await self._read(ctx, contact_id))
            await ctx.client.json("PATCH", path, params=params, json_body={"social_accounts": new})
            if await self._read(ctx, contact_id) != new:
                log.warning(
                    "social accounts of contact %s of %s changed while keyshim wrote them: "
                    "another client wrote them in the same moment",
                    contact_id,
                    ctx.account,
                )
        return new


def _room_for(contact_id: int, items: list[Item], index: int) -> list[Item]:
    """``items`` if item ``index`` gets a stand-in Id of its own, else refused before
    anything is written (an 11th account of a type would take another type's Id)."""
    if _rank(items, index) >= PER_TYPE:
        raise NoTranslation(
            f"{TABLE}: contact {contact_id} already has {PER_TYPE} "
            f"{_WORDS.get(_kind(items[index]), 'untyped')} "
            "accounts, as many as keyshim's stand-in Ids can name"
        )
    return items


def _item(rest_type: str, name: Value) -> Item:
    return {"type": rest_type, **({"name": str(name)} if name not in (None, "") else {})}


_TYPE_NOTE = ", ".join(f"{word} {rest}" for word, rest in TYPES.items())
SOCIAL_ACCOUNT = SocialTable(
    TABLE,
    "/contacts/{ContactId}",
    "social_accounts",
    {
        "Id": Column("int", None, writable=False,
                     note="stand-in: ContactId * 100 + 10 * type code (none 0, "
                     + ", ".join(f"{w} {n}" for w, n in zip(TYPES, range(1, 8), strict=True))
                     + ") + rank among the contact's accounts of that type"),
        "ContactId": Column("int", "id", note="the contact holding the array"),
        "AccountName": Column("str", "social_accounts.name"),
        "AccountType": Column("str", "social_accounts.type",
                              note=f"{_TYPE_NOTE}; others refused; empty is UNSPECIFIED"),
        "DateCreated": missing("date", writable=False),
        "LastUpdated": missing("date", writable=False),
    },
    item="/contacts/{ContactId}?update_mask=social_accounts",
    notes="the contact's social_accounts array: reads need an exact ContactId or Id; writes "
    "read, change and PATCH the whole array under the contact's lock; Id is a stand-in "
    "(ContactId * 100 + 10 * type code + rank), not legacy's row id, and changes with the "
    "type; rows come in the array's order; DateCreated and LastUpdated have no REST "
    "equivalent",
    fidelity="approximate",
)  # fmt: skip
