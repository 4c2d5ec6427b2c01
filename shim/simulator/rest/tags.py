"""Tags (legacy ContactGroup) and tag categories (ContactGroupCategory) as REST v2 serves them.

Both resources have the same life (list, get, create, PATCH, delete, unique names, times),
so one set of functions serves both, driven by a ``Kind`` that says what differs. Rows become
flat records named like the REST filter and order fields (``name``, ``category_id``...), so one
``values`` function serves filtering, ordering and output alike. Names are unique (the SDK
says so), which legacy never enforced: a clash is a 409.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.data import Row, to_datetime
from shim.simulator.rest.http import (
    Call,
    RestError,
    bad,
    check_keys,
    iso,
    missing,
    no_content,
    optional_str,
    parse_id,
    row_id,
)
from shim.simulator.rest.query import (
    IDS,
    SINCE,
    TEXT,
    UNTIL,
    Rule,
    listing,
    paginate,
    parse_filter,
    parse_order,
    select,
    sort_value,
)

Record = dict[str, Any]
NONE_TEXT = Rule(none=True)
TIMES = {"since_create_time": SINCE, "until_create_time": UNTIL}
TIMES |= {"since_update_time": SINCE, "until_update_time": UNTIL}
CATEGORY_ID = Rule("number", none=True)


@dataclass(frozen=True)
class Kind:
    """What differs between tags and tag categories."""

    table: str
    domain: str
    #: The path parameter holding the id.
    param: str
    #: Request property -> legacy column (``category`` is ``{"id"}`` in JSON).
    columns: dict[str, str]
    list_key: str
    rules: dict[str, Rule]


TAG = Kind(
    "ContactGroup",
    "tag",
    "tag_id",
    {"name": "GroupName", "description": "GroupDescription", "category": "GroupCategoryId"},
    "tags",
    {"name": TEXT, "description": NONE_TEXT, "category_id": CATEGORY_ID, "tag_ids": IDS, **TIMES},
)
CATEGORY = Kind(
    "ContactGroupCategory",
    "tag category",
    "category_id",
    {"name": "CategoryName", "description": "CategoryDescription"},
    "tag_categories",
    {"name": NONE_TEXT, "description": NONE_TEXT, **TIMES},
)


def list_tags(call: Call) -> Answer:
    return _list(call, TAG)


def get_tag(call: Call) -> Answer:
    return json_answer(200, to_json(record(call, TAG, find(call, TAG))))


def create_tag(call: Call) -> Answer:
    return _create(call, TAG)


def update_tag(call: Call) -> Answer:
    return _update(call, TAG)


def delete_tag(call: Call) -> Answer:
    call.db.delete(TAG.table, row_id(find(call, TAG)))
    return no_content()


def list_categories(call: Call) -> Answer:
    return _list(call, CATEGORY)


def get_category(call: Call) -> Answer:
    return json_answer(200, to_json(record(call, CATEGORY, find(call, CATEGORY))))


def create_category(call: Call) -> Answer:
    return _create(call, CATEGORY)


def update_category(call: Call) -> Answer:
    return _update(call, CATEGORY)


def delete_category(call: Call) -> Answer:
    """Tags in a deleted category are kept, without a category."""
    category_id = row_id(find(call, CATEGORY))
    call.db.delete(CATEGORY.table, category_id)
    for tag in call.db.tables[TAG.table].values():
        if tag.get("GroupCategoryId") == category_id:
            tag["GroupCategoryId"] = None
    return no_content()


def _list(call: Call, kind: Kind) -> Answer:
    records = [record(call, kind, row) for row in call.db.rows(kind.table)]
    page, token = paged(call, records, kind.rules, ("name", "create_time", "update_time"))
    return json_answer(200, listing(call, kind.list_key, [to_json(r) for r in page], token))


def _create(call: Call, kind: Kind) -> Answer:
    data = call.body()
    values = _values(call, kind, data, list(data), None)
    if not values.get(kind.columns["name"]):
        raise bad(f"A {kind.domain} needs a name", kind.domain)
    record_id = call.db.add(kind.table, values, call.now)
    call.store.touch(kind.table, record_id, to_datetime(call.now))
    return json_answer(201, to_json(record(call, kind, call.db.get(kind.table, record_id))))


def _update(call: Call, kind: Kind) -> Answer:
    """PATCH: the ``update_mask`` properties (all sent ones without a mask)."""
    record_id = row_id(find(call, kind))
    data = call.body()
    mask = call.args("update_mask")
    values = _values(call, kind, data, list(data) if mask is None else mask, record_id)
    if kind.columns["name"] in values and not values[kind.columns["name"]]:
        raise bad(f"A {kind.domain} needs a name", kind.domain, str(record_id))
    call.db.update(kind.table, record_id, values, call.now)
    call.store.touch(kind.table, record_id, to_datetime(call.now))
    return json_answer(200, to_json(record(call, kind, call.db.get(kind.table, record_id))))


def _values(
    call: Call, kind: Kind, data: dict[str, Any], names: list[str], record_id: int | None
) -> Row:
    check_keys(data, set(kind.columns), kind.domain)
    check_keys(dict.fromkeys(names), set(kind.columns), "update_mask")
    values: Row = {}
    for name in names:
        column = kind.columns[name]
        if name == "category":
            values[column] = _category_ref(call, data.get("category"))
        elif name == "name":
            values[column] = (optional_str(data, "name") or "")[:255] or None
            _unique(call, kind, values[column], record_id)
        else:
            values[column] = optional_str(data, name)
    return values


def _category_ref(call: Call, category: Any) -> int | None:
    if category is None:
        return None
    if not isinstance(category, dict):
        raise bad("category must be an object with an id", "category")
    check_keys(category, {"id"}, "category")
    category_id = parse_id(category.get("id"), "category")
    if category_id not in call.db.tables[CATEGORY.table]:
        raise bad(f"Tag category {category_id} does not exist", "category", str(category_id))
    return category_id


def _unique(call: Call, kind: Kind, name: object, record_id: int | None) -> None:
    if not isinstance(name, str):
        return
    column = kind.columns["name"]
    for row in call.db.tables[kind.table].values():
        if row["Id"] != record_id and str(row.get(column) or "").casefold() == name.casefold():
            raise RestError(409, f"The name {name!r} is already in use", "name", name)


# --- shared with rest_tag_contacts ---


def find(call: Call, kind: Kind) -> Row:
    """The row named by the path, or a 404."""
    record_id = call.path_id(kind.param, kind.domain)
    if record_id not in call.db.tables[kind.table]:
        raise missing(kind.domain, record_id)
    return call.db.get(kind.table, record_id)


def record(call: Call, kind: Kind, row: Row) -> Record:
    """A row as a flat record: REST names, legacy values, ``category`` as ``category_id``."""
    created, updated = call.store.times.get((kind.table, row_id(row)), (None, None))
    values = {
        ("category_id" if name == "category" else name): row.get(column)
        for name, column in kind.columns.items()
    }
    return {"id": row_id(row), **values, "create_time": created, "update_time": updated}


def to_json(record: Record) -> dict[str, Any]:
    """The REST form: ids as strings, times as ISO-8601, empty values left out."""
    out: dict[str, Any] = {}
    for name, value in record.items():
        if value is None or value == "":
            continue
        if name == "id":
            value = str(value)
        elif name == "category_id":
            name, value = "category", {"id": str(value)}
        elif name.endswith("_time"):
            value = iso(value)
        out[name] = value
    return out


def paged(
    call: Call, records: list[Record], rules: dict[str, Rule], order_fields: tuple[str, ...]
) -> tuple[list[Record], str]:
    """Filter, order and page records (by id unless ``order_by`` says otherwise)."""
    records = select(records, parse_filter(call.arg("filter"), rules.get), value)
    order, descending = parse_order(call.arg("order_by"), order_fields)
    name = order or "id"
    return paginate(call, records, lambda r: [sort_value(r.get(name)), r["id"]], descending)


def value(record: Record, name: str) -> list[Any]:
    """A record's value for a filter field: ``since_x``/``until_x`` test ``x``."""
    for prefix in ("since_", "until_"):
        if name.startswith(prefix):
            return [record.get(name[len(prefix) :])]
    return [record.get("id" if name == "tag_ids" else name)]
