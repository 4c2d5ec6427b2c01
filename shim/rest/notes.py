"""``ContactAction``: the legacy table of notes and tasks, over REST v2's notes and tasks.

The legacy table held both, told apart by ``ObjectType`` ("Note", "Task"); REST v2 has two
resources (SDK ``Note``: ``/notes``, ``/contacts/{id}/notes``; ``Task``: ``/tasks``) sharing
one id space. So:

* ``query``/``count`` with an exact ``ObjectType`` read that resource (through the one query
  pipeline); without one, both are read (bounded scans), merged and paged by keyshim.
* ``add`` picks the resource by ``ObjectType`` (legacy's default was a note). REST requires a
  user on both: without ``UserID`` the authenticated user is used.
* ``load``/``update``/``delete`` by id look for a task first, then a note (a note is written
  through its contact's path, so it is read first).

Appointments (``IsAppointment``) are a list-only REST resource and are not translated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shim.errors import InvalidParameter, NotFound
from shim.rest import legacy
from shim.rest.context import Ctx
from shim.rest.criteria import Criterion, compile_query, legacy_page, matches
from shim.rest.legacy import FieldSpec
from shim.rest.listing import SCAN_LIMIT, Row, prepare, project, run_query, scan, server_params
from shim.rest.spec import Column, TableSpec, int_id, missing, rest_only
from shim.xmlrpc import Value

TABLE = "ContactAction"
NOTE, TASK = "Note", "Task"


def _kind(kind: str) -> Column:
    return Column("str", None, note=f"always {kind}")


NOTES = TableSpec(
    TABLE,
    "/notes",
    "notes",
    {
        "Id": rest_only("int", "id", filter="id", compare=True),
        "ObjectType": _kind(NOTE),
        "ContactId": Column("int", "contact_id", text_id=True, filter="contact_id"),
        "UserID": Column("int", "assigned_to_user.id", write="user_id", text_id=True,
                         filter="assigned_to_user_id"),
        "ActionType": Column("str", "type"),
        "ActionDescription": Column("str", "title"),
        "CreationNotes": Column("str", "text"),
        "OpportunityId": missing("int", "notes have no opportunity in REST v2"),
        "ActionDate": missing("date", "notes have no date in REST v2"),
        "CompletionDate": missing("date", "notes have no completion in REST v2"),
        "DateCreated": rest_only("date", "create_time"),
    },
    title="ContactAction: notes (ObjectType Note)",
    fidelity="approximate",
    notes="a note's UserID defaults to the authenticated user (REST requires one)",
)  # fmt: skip
TASKS = TableSpec(
    TABLE,
    "/tasks",
    "tasks",
    {
        "Id": rest_only("int", "id", filter="id", compare=True),
        "ObjectType": _kind(TASK),
        "ContactId": Column("int", "contact_id", text_id=True, filter="contact_id"),
        "UserID": Column("int", "assigned_to_user_id", text_id=True, filter="user_id"),
        "ActionType": Column("str", "type"),
        "ActionDescription": Column("str", "title", filter="title", wildcard=True),
        "CreationNotes": Column("str", "description"),
        "OpportunityId": Column("int", "opportunity_id", text_id=True, filter="opportunity_id"),
        "ActionDate": Column("date", "due_time"),
        "CompletionDate": Column("date", "completion_time"),
        "DateCreated": rest_only("date", "create_time"),
    },
    title="ContactAction: tasks (ObjectType Task)",
    fidelity="approximate",
    notes="a task's UserID defaults to the authenticated user (REST requires one); "
    "Priority and appointments are not translated",
)  # fmt: skip
FIELDS: dict[str, FieldSpec] = {name: col.spec for name, col in NOTES.columns.items()}
_SPECS = {NOTE: NOTES, TASK: TASKS}


def _kinds(compiled: list[Criterion]) -> list[str]:
    """The kinds (Note, Task) an ObjectType criterion allows."""
    on_type = [c for c in compiled if c.field == "ObjectType"]
    return [k for k in _SPECS if matches(on_type, {"ObjectType": k})]


def _id(row: Row) -> int:
    value = row.get("Id")
    return value if isinstance(value, int) else 0


def _with_kind(row: Value, kind: str, names: list[str]) -> Value:
    return project({**row, "ObjectType": kind}, names) if isinstance(row, dict) else row


def _typed(rows: list[Row], kind: str) -> list[Row]:
    return [{**row, "ObjectType": kind} for row in rows]


class ContactActionTable:
    """``spec.Table`` for ContactAction (see the module docstring)."""

    table = TABLE
    fields = FIELDS
    parts = (NOTES, TASKS)

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
        compiled, limit = prepare(TABLE, FIELDS, limit, page, criteria, names, order_by)
        kinds = _kinds(compiled)
        rest = {k: v for k, v in criteria.items() if k != "ObjectType"}
        if len(kinds) == 1:
            wanted = [n for n in names if n != "ObjectType"] or ["Id"]
            listed = await run_query(
                ctx, _SPECS[kinds[0]], limit, page, rest, wanted, order_by, ascending
            )
            return [_with_kind(row, kinds[0], names) for row in listed]
        rows = await self._both(ctx, compiled, kinds)
        rows.sort(key=_id)
        shown = legacy_page(rows, FIELDS, order_by, ascending, limit, page)
        return [project(row, names) for row in shown]

    async def _both(self, ctx: Ctx, compiled: list[Criterion], kinds: list[str]) -> list[Row]:
        found: list[Row] = []
        for kind in kinds:
            spec = _SPECS[kind]
            criteria = [c for c in compiled if c.field != "ObjectType"]
            clauses, residual = server_params(spec, criteria)
            params = [("filter", ";".join(clauses))] if clauses else []
            rows = await scan(ctx.client, spec, params, SCAN_LIMIT, "notes and tasks together")
            found += _typed([r for r in rows if matches(residual, r)], kind)
        return found

    async def count(self, ctx: Ctx, criteria: Mapping[str, Value]) -> int:
        compiled = compile_query(TABLE, FIELDS, criteria)
        return len(await self._both(ctx, compiled, _kinds(compiled)))

    async def _find(self, ctx: Ctx, record_id: int) -> tuple[str, dict[str, Any]]:
        """(kind, REST item) of a record id: a task, else a note; else RecordNotFound."""
        if record_id < 1:
            raise NotFound()
        try:
            item = await ctx.client.get(f"/tasks/{record_id}")
            return TASK, item if isinstance(item, dict) else {}
        except NotFound:
            pass
        data = await ctx.client.get("/notes", [("filter", f"ids=={record_id}")])
        items = data.get("notes") if isinstance(data, dict) else None
        if not items or not isinstance(items[0], dict):
            raise NotFound()
        return NOTE, items[0]

    async def load(self, ctx: Ctx, record_id: int, names: list[str]) -> Value:
        legacy.check_fields(TABLE, FIELDS, names)
        kind, item = await self._find(ctx, record_id)
        row = {**_SPECS[kind].row(item), "ObjectType": kind}
        return project(row, names)

    async def add(self, ctx: Ctx, data: Mapping[str, Value]) -> int:
        values = legacy.writable(TABLE, FIELDS, dict(data))
        kind = _kind_of(values.pop("ObjectType", None))
        spec = _SPECS[kind]
        if values.get("UserID") is None:
            values["UserID"] = await _current_user(ctx)
        body = spec.body(values)
        if kind == TASK:
            item = await ctx.client.json("POST", "/tasks", json_body=body)
        else:
            contact = values.get("ContactId")
            if not isinstance(contact, int) or contact < 1:
                raise NotFound("A note needs the ContactId of an existing contact")
            body.pop("contact_id", None)
            item = await ctx.client.json("POST", f"/contacts/{contact}/notes", json_body=body)
        record_id = int_id(item.get("id")) if isinstance(item, dict) else None
        if record_id is None:
            raise NotFound("Keap REST answered without the new record's id")
        return record_id

    async def update(self, ctx: Ctx, record_id: int, data: Mapping[str, Value]) -> int:
        values = legacy.writable(TABLE, FIELDS, dict(data))
        kind, item = await self._find(ctx, record_id)
        if "ObjectType" in values and _kind_of(values.pop("ObjectType")) != kind:
            raise InvalidParameter(
                f"{TABLE}.ObjectType: a {kind.lower()} cannot become another kind over REST v2"
            )
        body = _SPECS[kind].body(values)
        if kind == TASK:
            path = f"/tasks/{record_id}"
        else:
            body.setdefault("user_id", str((item.get("assigned_to_user") or {}).get("id") or ""))
            if not body["user_id"]:
                body["user_id"] = str(await _current_user(ctx))
            path = f"/contacts/{item.get('contact_id')}/notes/{record_id}"
        params = [("update_mask", prop) for prop in body]
        await ctx.client.json("PATCH", path, params=params, json_body=body)
        return record_id

    async def delete(self, ctx: Ctx, record_id: int) -> bool:
        kind, item = await self._find(ctx, record_id)
        if kind == TASK:
            await ctx.client.json("DELETE", f"/tasks/{record_id}")
        else:
            await ctx.client.json("DELETE", f"/contacts/{item.get('contact_id')}/notes/{record_id}")
        return True


CONTACT_ACTION = ContactActionTable()


def _kind_of(value: Value) -> str:
    text = str(value or NOTE).strip().casefold()
    for kind in _SPECS:
        if kind.casefold() == text:
            return kind
    raise InvalidParameter(f"{TABLE}.ObjectType {value!r}: only Note and Task translate")


async def _current_user(ctx: Ctx) -> int:
    """The authenticated user's id (REST requires a user where legacy did not)."""
    info = await ctx.client.get("/oauth/connect/userinfo")
    user = int_id(info.get("id")) if isinstance(info, dict) else None
    if user is None:
        raise NotFound("Keap REST did not say who the authenticated user is")
    return user
