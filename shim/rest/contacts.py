"""ContactService and the Contact table (``DataService``) over ``/contacts``.

Every legacy check (field names, read-only fields, value coercion, argument types) runs
before the first REST request, with the legacy fault. Writes:

* ``add``: one ``POST /contacts`` (``?duplicate_option=`` for ``addWithDupCheck``).
* ``update`` of plain fields: one ``PATCH`` with ``update_mask``.
* ``update`` touching an array (emails, phones, faxes, addresses), custom fields, or half of
  ``company``: REST replaces those whole, so keyshim reads them, merges the legacy change
  and writes them back, under a store lock on the contact (so keyshim's own concurrent
  calls, in any process sharing the store, never overwrite each other), then reads them once
  more: if what it wrote is no longer there, someone overwrote it in between, and it retries
  (``RMW_ATTEMPTS``). What is NOT guaranteed: a change another client (Keap's UI, another
  integration) makes between keyshim's read and its write is overwritten. REST v2 has no
  ETag or If-Match, so that window (one round trip) cannot be closed.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from shim.errors import DatabaseError, InvalidParameter, NotFound
from shim.rest import criteria as crit
from shim.rest import legacy
from shim.rest.contact_map import (
    FIELDS,
    ORDERS,
    CustomField,
    legacy_fields,
    legacy_row,
    rest_props,
)
from shim.rest.contact_write import Write
from shim.rest.context import Ctx
from shim.rest.listing import SCAN_LIMIT, Filter, Row, count, project, run_query, scan
from shim.xmlrpc import Value

log = logging.getLogger("shim.rest")

TABLE = "Contact"
EMAILS = ("Email", "EmailAddress2", "EmailAddress3")
#: Read-merge-write attempts of one update before keyshim gives up with [DatabaseError].
RMW_ATTEMPTS = 3
_COMPARISONS = {"=": "==", "~>~": ">", "~<~": "<", "~>=~": ">=", "~<=~": "<="}


async def custom_for(ctx: Ctx, names: Iterable[str]) -> dict[str, CustomField]:
    """The custom-field model, fetched only when a ``_Name`` is involved."""
    names = list(names)
    if any(name.startswith("_") for name in names):
        return await ctx.custom(names)
    cached = ctx.state.models.get(ctx.account)
    return cached[1] if cached is not None else {}


def expressible(value: object) -> bool:
    """Whether a text value can go into a REST filter as it is (``;`` separates clauses, ``*``
    is a wildcard, and REST trims values)."""
    return (
        isinstance(value, str)
        and value != ""
        and value == value.strip()
        and ";" not in value
        and "*" not in value
    )


class ContactSource:
    """``/contacts`` as a listing ``Source`` (see listing.py) for the legacy Contact table."""

    table = TABLE
    path = "/contacts"
    items = "contacts"

    def __init__(self, custom: dict[str, CustomField], names: Iterable[str]) -> None:
        self.custom = custom
        self.fields = legacy_fields(custom)
        self.names = list(dict.fromkeys(["Id", *names]))

    def filter(self, c: crit.Criterion) -> Filter | None:
        if c.field == "Id":
            if c.op == "like" and c.raw == "%":
                return Filter("", True)  # every contact has an Id
            op = _COMPARISONS.get(c.op)
            return Filter(f"contact_id{op}{c.operand}", True) if op else None
        if c.field == "LastUpdated" and isinstance(c.operand, datetime.datetime):
            return _update_time(c.op, c.operand)
        mapped = FIELDS.get(c.field)
        cf = self.custom.get(c.field)
        if mapped is not None and mapped.filter:
            name, wildcard, exact = mapped.filter, mapped.wildcard, mapped.exact
            number = mapped.type == "int"
        elif cf is not None and cf.textual:
            name, wildcard, exact, number = cf.field_name, True, True, False
        else:
            return None
        if number:
            ok = c.op == "=" and isinstance(c.operand, int)
            return Filter(f"{name}=={c.operand}", exact) if ok else None
        if c.op == "=" and isinstance(c.raw, str) and expressible(c.raw):
            return Filter(f"{name}=={c.raw}", exact)
        prefix = c.prefix
        if wildcard and prefix is not None and expressible(prefix):
            return Filter(f"{name}=={prefix}*", exact)
        return None

    def order(self, field: str, ascending: bool) -> str | None:
        rest = ORDERS.get(field)
        if rest is None or (not ascending and field != "Id"):
            return None  # legacy breaks ties by Id ascending either way; REST does not
        return f"{rest} {'asc' if ascending else 'desc'}"

    def want(self, names: Iterable[str]) -> list[str]:
        self.names = list(dict.fromkeys([*self.names, *names]))
        return rest_props(self.names, self.custom)

    def readable(self, name: str) -> bool:
        mapped = FIELDS.get(name)
        return name in self.custom or (mapped is not None and mapped.prop is not None)

    def row(self, item: dict[str, Any]) -> Row:
        return legacy_row(item, self.names, self.custom)

    def base_key(self, row: Row) -> Any:
        return row.get("Id") or 0


def _update_time(op: str, moment: datetime.datetime) -> Filter | None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if op == "=":
        return Filter(f"start_update_time=={text};end_update_time=={text}", True)
    if op in ("~>=~", "~>~"):
        return Filter(f"start_update_time=={text}", op == "~>=~")
    if op in ("~<=~", "~<~"):
        return Filter(f"end_update_time=={text}", op == "~<=~")
    return None


# --- reading -----------------------------------------------------------------------------


async def load(ctx: Ctx, contact_id: int, names: list[str]) -> Value:
    custom = await custom_for(ctx, names)
    legacy.check_fields(TABLE, legacy_fields(custom), names)
    contact = await _get(ctx, contact_id, rest_props(names, custom))
    return project(legacy_row(contact, names, custom), names)


async def find_by_email(ctx: Ctx, email: str, names: list[str]) -> Value:
    """Exact, case-insensitive match on any of the three emails (REST's ``email`` filter is
    a prefix/wildcard match on the same three, so its answer is re-checked)."""
    custom = await custom_for(ctx, names)
    legacy.check_fields(TABLE, legacy_fields(custom), names)
    source = ContactSource(custom, [*names, *EMAILS])
    params = [("fields", ",".join(source.want([]))), ("order_by", "id asc")]
    if expressible(email):
        params.append(("filter", f"email=={email}"))
    rows = await scan(ctx.client, source, params, SCAN_LIMIT, "an email REST cannot filter on")
    wanted = email.casefold()
    return [
        project(row, names)
        for row in rows
        if any(str(row.get(n) or "").casefold() == wanted for n in EMAILS)
    ]


async def query(
    ctx: Ctx,
    limit: int,
    page: int,
    criteria: Mapping[str, Value],
    names: list[str],
    order_by: str | None,
    ascending: bool,
) -> Value:
    custom = await custom_for(ctx, [*names, *criteria, *([order_by] if order_by else [])])
    source = ContactSource(custom, names)
    return await run_query(ctx, source, limit, page, criteria, names, order_by, ascending)


async def count_rows(ctx: Ctx, criteria: Mapping[str, Value]) -> int:
    custom = await custom_for(ctx, criteria)
    compiled = crit.compile_query(TABLE, legacy_fields(custom), criteria)
    return await count(ctx.client, ContactSource(custom, []), compiled)


async def _get(ctx: Ctx, contact_id: int, props: list[str]) -> dict[str, Any]:
    if contact_id < 1:
        raise NotFound()
    contact = await ctx.client.get(f"/contacts/{contact_id}", [("fields", ",".join(props))])
    return contact if isinstance(contact, dict) else {}


def contact_id_of(answer: Any) -> int:
    text = str(answer.get("id", "")) if isinstance(answer, dict) else ""
    if not text.isdigit():
        raise DatabaseError("Keap REST answered without the contact's id")
    return int(text)


# --- writing -----------------------------------------------------------------------------


async def _checked(ctx: Ctx, data: Mapping[str, Value]) -> Write:
    custom = await custom_for(ctx, data)
    values = legacy.writable(TABLE, legacy_fields(custom), dict(data))
    return Write.build(values, custom)


async def add(ctx: Ctx, data: Mapping[str, Value], duplicate_option: str | None = None) -> int:
    write = await _checked(ctx, data)
    params = [("fields", "id")]
    if duplicate_option is not None:
        params.append(("duplicate_option", duplicate_option))
    answer = await ctx.client.json(
        "POST", "/contacts", params=params, json_body=write.create_body()
    )
    return contact_id_of(answer)


#: ``addWithDupCheck``'s ``dupCheckType`` -> the legacy fields that must match.
DUPLICATE_KEYS = {
    "Email": ("Email",),
    "EmailAndName": ("Email", "FirstName", "LastName"),
    "EmailAndNameAndCompany": ("Email", "FirstName", "LastName", "Company"),
}


async def add_with_dup_check(ctx: Ctx, data: Mapping[str, Value], dup_check_type: str) -> int:
    """Legacy updates only the fields sent when a contact matches; REST's ``duplicate_option``
    would replace the match's whole email, phone and address lists. So the match is found here
    (first by id, case-insensitive, none without an Email) and updated like ``update`` does.
    Another client creating the same contact between the lookup and the add is not excluded.
    """
    keys = DUPLICATE_KEYS.get(dup_check_type)
    if keys is None:
        raise InvalidParameter(f"dupCheckType must be one of {', '.join(DUPLICATE_KEYS)}")
    await _checked(ctx, data)  # the same faults as add, before anything is looked up
    email = data.get("Email")
    if email:
        wanted = [_fold(data.get(k)) for k in keys]
        found = await find_by_email(ctx, str(email), ["Id", *keys])
        rows = found if isinstance(found, list) else []
        matches = [r for r in rows if isinstance(r, dict) and [_fold(r.get(k)) for k in keys]
                   == wanted]  # fmt: skip
        if matches:
            return await update(ctx, min(int(str(r["Id"])) for r in matches), data)
    return await add(ctx, data)


def _fold(value: object) -> str:
    return "" if value is None else str(value).casefold()


async def update(ctx: Ctx, contact_id: int, data: Mapping[str, Value]) -> int:
    write = await _checked(ctx, data)
    path = f"/contacts/{contact_id}"
    if contact_id < 1:
        raise NotFound()
    if not write.mask():
        await _get(ctx, contact_id, ["id"])  # legacy: RecordNotFound for an unknown id
        return contact_id
    props = write.merged_props
    if not props:
        params = [*(("update_mask", m) for m in write.mask()), ("fields", "id")]
        await ctx.client.json("PATCH", path, params=params, json_body=write.patch_body({}))
        return contact_id
    fields = ",".join(["id", *props])
    async with ctx.lock(f"rest-contact:{ctx.account}:{contact_id}"):
        for attempt in range(1, RMW_ATTEMPTS + 1):
            current = await _get(ctx, contact_id, ["id", *props])
            params = [*(("update_mask", m) for m in write.mask()), ("fields", fields)]
            stored = await ctx.client.json(
                "PATCH", path, params=params, json_body=write.patch_body(current)
            )
            check = await _get(ctx, contact_id, ["id", *props])
            if write.touched(check) == write.touched(stored if isinstance(stored, dict) else {}):
                return contact_id
            log.warning(
                "contact %s of %s changed while keyshim updated it (attempt %d); retrying",
                contact_id,
                ctx.account,
                attempt,
            )
    raise DatabaseError(
        f"Contact {contact_id} kept changing while keyshim updated it through REST v2 "
        f"({RMW_ATTEMPTS} attempts); the last write may have been overwritten"
    )


async def delete(ctx: Ctx, contact_id: int) -> bool:
    if contact_id < 1:
        raise NotFound()
    await ctx.client.json("DELETE", f"/contacts/{contact_id}")
    return True


async def merge(ctx: Ctx, contact_id: int, duplicate_id: int) -> bool:
    if contact_id < 1 or duplicate_id < 1:
        raise NotFound()
    body = {"contact_id": str(contact_id), "duplicate_contact_id": str(duplicate_id)}
    await ctx.client.json("POST", "/contacts:merge", params=[("fields", "id")], json_body=body)
    return True


async def add_to_group(ctx: Ctx, contact_id: int, tag_id: int) -> bool:
    """``applyTags`` answers per contact; the value set is not published (§8.4)."""
    if contact_id < 1 or tag_id < 1:
        raise NotFound()
    body = {"contact_ids": [str(contact_id)]}
    answer = await ctx.client.json("POST", f"/tags/{tag_id}/contacts:applyTags", json_body=body)
    results = answer.get("results") if isinstance(answer, dict) else None
    outcome = str((results or {}).get(str(contact_id), "SUCCESS")).upper()
    if "NOT_EXIST" in outcome or "NOT_FOUND" in outcome:
        raise NotFound()
    return outcome != "FAILED"


async def remove_from_group(ctx: Ctx, contact_id: int, tag_id: int) -> bool:
    """REST skips unknown contacts silently; legacy said RecordNotFound, so look first."""
    await _get(ctx, contact_id, ["id"])
    if tag_id < 1:
        raise NotFound()
    body = {"contact_ids": [str(contact_id)]}
    await ctx.client.json("POST", f"/tags/{tag_id}/contacts:removeTags", json_body=body)
    return True


class ContactTable:
    """The Contact table for DataService (see spec.Table): ContactService's rules."""

    table = TABLE

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
        return await query(ctx, limit, page, criteria, names, order_by, ascending)

    async def count(self, ctx: Ctx, criteria: Mapping[str, Value]) -> int:
        return await count_rows(ctx, criteria)

    async def load(self, ctx: Ctx, record_id: int, names: list[str]) -> Value:
        return await load(ctx, record_id, names)

    async def add(self, ctx: Ctx, data: Mapping[str, Value]) -> int:
        return await add(ctx, data)

    async def update(self, ctx: Ctx, record_id: int, data: Mapping[str, Value]) -> int:
        return await update(ctx, record_id, data)

    async def delete(self, ctx: Ctx, record_id: int) -> bool:
        return await delete(ctx, record_id)


CONTACT_TABLE = ContactTable()
