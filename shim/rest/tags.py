"""Tags: ContactGroup (``/tags``), ContactGroupCategory (``/tags/categories``) and the
read-only join ContactGroupAssign (``/contacts/{id}/tags``, ``/tags/{id}/contacts``).

Tag tables are small, so queries on them read the whole (REST-filtered) list and order and
page it locally: REST cannot order tags by id, the legacy default. ContactGroupAssign needs an
exact ContactId or GroupId: without one, REST would have to list every tag's contacts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shim.errors import NotFound, NoTranslation
from shim.rest import criteria as crit
from shim.rest import legacy
from shim.rest.contact_map import FIELDS as CONTACT_FIELDS
from shim.rest.contact_map import parse_rest_time, rest_props
from shim.rest.context import Ctx
from shim.rest.legacy import FieldSpec
from shim.rest.listing import SCAN_LIMIT, Filter, Row, prepare, project, scan
from shim.rest.spec import Column, TableSpec, int_id, read_only, rest_only
from shim.xmlrpc import Value

ASSIGN = "ContactGroupAssign"
_JOIN = {
    "Contact.Email": "email",
    "Contact.FirstName": "given_name",
    "Contact.LastName": "family_name",
}
ASSIGN_FIELDS: dict[str, FieldSpec] = {
    "ContactId": FieldSpec("int"),
    "GroupId": FieldSpec("int"),
    "DateCreated": FieldSpec("date"),
    "ContactGroup": FieldSpec("str"),
    **{
        f"Contact.{name}": FieldSpec(m.type)
        for name, m in CONTACT_FIELDS.items()
        if m.prop is not None
    },
}


TAGS = TableSpec(
    "ContactGroup",
    "/tags",
    "tags",
    {
        "Id": rest_only("int", "id", filter="tag_ids"),
        "GroupName": Column("str", "name", filter="name"),
        "GroupCategoryId": Column("int", "category", filter="category_id", none=True, ref=True),
        "GroupDescription": Column("str", "description", filter="description", none=True),
    },
    notes="names must be unique in REST ([DatabaseError]) and non-empty; read whole (up to "
    f"{SCAN_LIMIT}) and ordered by keyshim: REST cannot order tags by id",
    fidelity="approximate",
)
CATEGORIES = TableSpec(
    "ContactGroupCategory",
    "/tags/categories",
    "tag_categories",
    {
        "Id": rest_only("int", "id"),
        "CategoryName": Column("str", "name", filter="name", none=True),
        "CategoryDescription": Column("str", "description", filter="description", none=True),
    },
    notes="as ContactGroup",
    fidelity="approximate",
)
TABLES = {t.table: t for t in (TAGS, CATEGORIES)}


def _int(value: Any) -> int | None:
    return int_id(value)


# --- ContactGroupAssign (read-only) -------------------------------------------------------


class AssignTable:
    """ContactGroupAssign: read-only in the legacy API too; rows from one contact's tags or
    one tag's contacts (an exact ContactId or GroupId is needed)."""

    table = ASSIGN
    fields = ASSIGN_FIELDS
    notes = "read-only; needs an exact ContactId or GroupId"

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
        return await assign_query(ctx, limit, page, criteria, names, order_by, ascending)

    async def count(self, ctx: Ctx, criteria: Mapping[str, Value]) -> int:
        return await assign_count(ctx, criteria)

    async def load(self, ctx: Ctx, record_id: int, names: list[str]) -> Value:
        legacy.check_fields(ASSIGN, ASSIGN_FIELDS, names)
        raise NotFound()  # the join table has no Id to load by

    async def add(self, ctx: Ctx, data: Mapping[str, Value]) -> int:
        raise read_only(ASSIGN)

    async def update(self, ctx: Ctx, record_id: int, data: Mapping[str, Value]) -> int:
        raise read_only(ASSIGN)

    async def delete(self, ctx: Ctx, record_id: int) -> bool:
        raise read_only(ASSIGN)


ASSIGN_TABLE = AssignTable()


async def assign_query(
    ctx: Ctx,
    limit: int,
    page: int,
    criteria: Mapping[str, Value],
    names: list[str],
    order_by: str | None,
    ascending: bool,
) -> Value:
    compiled, limit = prepare(ASSIGN, ASSIGN_FIELDS, limit, page, criteria, names, order_by)
    wanted = [*names, *criteria, *([order_by] if order_by else [])]
    rows = await _assign_rows(ctx, compiled, wanted)
    rows.sort(key=lambda r: (r.get("ContactId") or 0, r.get("GroupId") or 0))
    shown = crit.legacy_page(rows, ASSIGN_FIELDS, order_by, ascending, limit, page)
    return [project(row, names) for row in shown]


async def assign_count(ctx: Ctx, criteria: Mapping[str, Value]) -> int:
    compiled = crit.compile_query(ASSIGN, ASSIGN_FIELDS, criteria)
    group = _exact(compiled, "GroupId")
    if group is not None and len(compiled) == 1:
        if group < 1:
            return 0
        try:
            answer = await ctx.client.get(f"/tags/{group}/contacts/count")
        except NotFound:
            return 0
        return int(answer.get("count") or 0) if isinstance(answer, dict) else 0
    return len(await _assign_rows(ctx, compiled, list(criteria)))


def _exact(compiled: list[crit.Criterion], name: str) -> int | None:
    for c in compiled:
        if c.field == name and c.op == "=" and isinstance(c.operand, int):
            return c.operand
    return None


async def _assign_rows(ctx: Ctx, compiled: list[crit.Criterion], wanted: list[str]) -> list[Row]:
    """The matching rows, holding ``wanted``: from one contact's tags or one tag's contacts."""
    contact, group = _exact(compiled, "ContactId"), _exact(compiled, "GroupId")
    try:
        if contact is not None:
            rows = await _contact_tags(ctx, contact, wanted) if contact > 0 else []
        elif group is not None:
            rows = await _tag_contacts(ctx, group, wanted) if group > 0 else []
        else:
            raise NoTranslation(
                "ContactGroupAssign over REST v2 needs an exact ContactId or GroupId criterion "
                "(REST lists tags per contact or contacts per tag, not all assignments)"
            )
    except NotFound:
        return []  # an unknown contact or tag has no assignments
    return [row for row in rows if crit.matches(compiled, row)]


async def _contact_tags(ctx: Ctx, contact_id: int, wanted: list[str]) -> list[Row]:
    applied = await scan(
        ctx.client, _Applied(f"/contacts/{contact_id}/tags"), [], SCAN_LIMIT, "tags of a contact"
    )
    joined = _joined(wanted)
    if joined:
        contact = await ctx.client.get(
            f"/contacts/{contact_id}", [("fields", ",".join(rest_props(joined, {})))]
        )
        extra = _contact_values(contact if isinstance(contact, dict) else {}, joined)
        applied = [{**row, **extra} for row in applied]
    return [{**row, "ContactId": contact_id} for row in applied]


async def _tag_contacts(ctx: Ctx, tag_id: int, wanted: list[str]) -> list[Row]:
    source = _Tagged(f"/tags/{tag_id}/contacts")
    rows = [
        {**row, "GroupId": tag_id}
        for row in await scan(ctx.client, source, [], SCAN_LIMIT, "contacts of a tag")
    ]
    if "ContactGroup" in wanted and rows:
        tag = await ctx.client.get(f"/tags/{tag_id}")
        name = tag.get("name") if isinstance(tag, dict) else None
        rows = [{**row, "ContactGroup": name} for row in rows]
    joined = [n for n in _joined(wanted) if f"Contact.{n}" not in _JOIN]
    if joined and rows:
        ids = [str(row["ContactId"]) for row in rows]
        fields = ",".join(rest_props(joined, {}))
        by_id: dict[str, Row] = {}
        for start in range(0, len(ids), 100):
            params = [("filter", "ids==" + ",".join(ids[start : start + 100])), ("fields", fields)]
            data = await ctx.client.get("/contacts", [*params, ("page_size", "100")])
            for item in data.get("contacts") or [] if isinstance(data, dict) else []:
                by_id[str(item.get("id"))] = _contact_values(item, joined)
        rows = [{**row, **by_id.get(str(row["ContactId"]), {})} for row in rows]
    return rows


def _joined(wanted: list[str]) -> list[str]:
    """Contact fields (``Contact.X`` -> ``X``) a ContactGroupAssign call asks for."""
    return [n.split(".", 1)[1] for n in dict.fromkeys(wanted) if n.startswith("Contact.")]


def _contact_values(contact: dict[str, Any], names: list[str]) -> Row:
    return {f"Contact.{n}": CONTACT_FIELDS[n].read(contact) for n in names}


class _Applied:
    """``/contacts/{id}/tags``: applied tags as ContactGroupAssign rows (no contact id)."""

    table = ASSIGN
    items = "tags"
    fields = ASSIGN_FIELDS

    def __init__(self, path: str) -> None:
        self.path = path

    def filter(self, c: crit.Criterion) -> Filter | None:
        return None

    def order(self, field: str, ascending: bool) -> str | None:
        return None

    def want(self, names: Iterable[str]) -> list[str] | None:
        return None

    def readable(self, name: str) -> bool:
        return True

    def row(self, item: dict[str, Any]) -> Row:
        tag = item.get("tag") if isinstance(item.get("tag"), dict) else {}
        assert isinstance(tag, dict)
        return {
            "GroupId": _int(tag.get("id")),
            "ContactGroup": tag.get("name"),
            "DateCreated": parse_rest_time(str(item.get("applied_time") or "")),
        }

    def base_key(self, row: Row) -> Any:
        return row.get("GroupId") or 0


class _Tagged(_Applied):
    """``/tags/{id}/contacts``: tagged contacts as ContactGroupAssign rows (no tag id)."""

    items = "contacts"

    def row(self, item: dict[str, Any]) -> Row:
        row: Row = {
            "ContactId": _int(item.get("id")),
            "DateCreated": parse_rest_time(str(item.get("applied_time") or "")),
        }
        for name, prop in _JOIN.items():
            row[name] = item.get(prop) or None
        return row
