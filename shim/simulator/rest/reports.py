"""Reports (legacy saved searches) as REST v2 serves them: SDK models ``Report``,
``ListReportsResponse``, ``ReportModel`` (``fields[{name, label}]``), ``RunReportRequest``
(``page_size``, ``page_token``, ``order_by``, ``fields`` in the JSON body) and
``ReportExecutionResult`` (``results[{columns[{field_name, value}]}]``, ``page_token``: the
next page's token, in this answer not called ``next_page_token``). Values are strings.

The definitions and rows are reports.py's, which the legacy SearchService reads too.
"""

from __future__ import annotations

from typing import Any

from shim.simulator import reports
from shim.simulator.asgi import Answer, json_answer
from shim.simulator.faults import KeapFault
from shim.simulator.rest.http import Call, bad, check_keys, iso, missing
from shim.simulator.rest.orders import paged
from shim.simulator.rest.query import SINCE, TEXT, UNTIL, Rule, listing, paginate, sort_value

ALL_USERS = "ALL_USERS"
LIST_RULES: dict[str, Rule] = {
    "name": TEXT,
    "since_created_time": SINCE,
    "until_created_time": UNTIL,
}
RUN_KEYS = frozenset({"page_token", "order_by", "page_size", "fields"})


def report_json(search: reports.SavedSearch) -> dict[str, Any]:
    return {
        "id": str(search.id),
        "name": search.name,
        "created_time": iso(reports.CREATED),
        "updated_time": iso(reports.CREATED),
        "user_ids": [str(u) for u in search.users] or [ALL_USERS],
    }


def _search(call: Call) -> reports.SavedSearch:
    report_id = call.path_id("report_id", "report")
    found = reports.SAVED_SEARCHES.get(report_id)
    if found is None:
        raise missing("report", report_id)
    return found


def list_reports(call: Call) -> Answer:
    records = [
        {"id": s.id, "name": s.name, "created_time": reports.CREATED}
        for s in reports.SAVED_SEARCHES.values()
    ]

    def values(record: dict[str, Any], name: str) -> list[Any]:
        return [record["created_time"] if name.endswith("created_time") else record[name]]

    page, token = paged(call, records, LIST_RULES, ("name", "created_time"), values)
    items = [report_json(reports.SAVED_SEARCHES[r["id"]]) for r in page]
    return json_answer(200, listing(call, "reports", items, token))


def get_report(call: Call) -> Answer:
    return json_answer(200, report_json(_search(call)))


def report_model(call: Call) -> Answer:
    fields = [{"name": name, "label": label} for name, label in _search(call).columns]
    return json_answer(200, {"fields": fields})


def run_report(call: Call) -> Answer:
    """POST /reporting/reports/{id}:run: one page of rows; ``fields`` (comma-separated column
    names) picks columns, in the report's order; an empty value has no ``value``."""
    search = _search(call)
    body = call.body()
    check_keys(body, RUN_KEYS, "run report")
    wanted = body.get("fields")
    if wanted is not None and not isinstance(wanted, str):
        raise bad("fields must be a string", "fields")
    names = [n.strip() for n in (wanted or "").split(",") if n.strip()]
    try:
        chosen = reports.columns(search, names or None)
    except KeapFault as fault:
        raise bad(fault.fault_string.partition("]")[2], "fields") from None
    ordered = [name for name, _ in search.columns if name in chosen]
    rows = list(enumerate(reports.run(call.db, search, ordered)))
    order = body.get("order_by")
    column, descending = _order(order, ordered)

    def key(item: tuple[int, dict[str, str]]) -> list[Any]:
        first = [sort_value(item[1].get(column))] if column else []
        return [*first, item[0]]

    page, token = paginate(call, rows, key, descending, body)
    results = [{"columns": [_cell(name, row.get(name)) for name in ordered]} for _, row in page]
    answer: dict[str, Any] = {"results": results}
    if token or call.config.rest_end_token == "empty":
        answer["page_token"] = token
    return json_answer(200, answer)


def _order(text: object, columns: list[str]) -> tuple[str | None, bool]:
    if text is None or text == "":
        return None, False
    words = str(text).split()
    direction = words[1].lower() if len(words) > 1 else "asc"
    if words[0] not in columns or len(words) > 2 or direction not in ("asc", "desc"):
        raise bad(f"Invalid order_by {text!r}: a column, then asc or desc", "order_by")
    return words[0], direction == "desc"


def _cell(name: str, value: str | None) -> dict[str, str]:
    return {"field_name": name, "value": value} if value else {"field_name": name}
