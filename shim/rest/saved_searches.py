"""SearchService's saved-search calls over REST v2's reports (``/reporting/reports``; a legacy
saved search is a REST report with the same id).

* ``getSavedSearchResultsAllFields(savedSearchId, userId, pageNumber)`` and
  ``getSavedSearchResults(..., returnFields)``: ``POST /reporting/reports/{id}:run``
  (``RunReportRequest``: ``page_size``, ``page_token``, ``fields``) gives
  ``results[{columns[{field_name, value}]}]``; each row becomes the legacy struct keyed by
  column name, empty values left out, every value a string as REST gives it (legacy's value
  types are unverified). Legacy pages are 1000 rows numbered from 0; REST pages by token
  (``page_token`` in the answer), so page N is the (N+1)-th run of 1000: tokens are cached
  per report and columns, so walking pages in order costs one run each, a cold jump N+1.
* ``getAllReportColumns(savedSearchId, userId)``: ``GET /reporting/reports/{id}/model`` ->
  ``{name: label}``.

Legacy ran a saved search as one user, who had to be among its users. REST runs it as the
credential's user, so keyshim first reads the report (``user_ids``: ids, or ``ALL_USERS``) and
answers [RecordNotFound] for a user not listed (legacy's fault there is unverified). Keap marks
the reporting endpoints deprecated; they are still REST v2's only way to run a saved search.
"""

from __future__ import annotations

from typing import Any

from shim.errors import InvalidParameter, NoFields, NotFound, NoTranslation
from shim.rest.context import Ctx
from shim.rest.listing import COUNT_LIMIT
from shim.xmlrpc import Value

#: Rows per legacy page, and the REST ``page_size`` asked for (REST's largest).
LEGACY_PAGE = 1000
ALL_USERS = "ALL_USERS"


async def all_fields(ctx: Ctx, search_id: int, user_id: int, page: int) -> Value:
    _check_page(page)
    await _report(ctx, search_id, user_id)
    return await _run(ctx, search_id, page, None)


async def some_fields(ctx: Ctx, search_id: int, user_id: int, page: int, names: list[str]) -> Value:
    _check_page(page)
    if not names:
        raise NoFields("No fields were requested")
    await _report(ctx, search_id, user_id)
    return await _run(ctx, search_id, page, list(dict.fromkeys(names)))


async def report_columns(ctx: Ctx, search_id: int, user_id: int) -> Value:
    await _report(ctx, search_id, user_id)
    model = await ctx.client.get(f"/reporting/reports/{search_id}/model")
    fields = model.get("fields") if isinstance(model, dict) else None
    columns: dict[str, Value] = {}
    for item in fields or []:
        if isinstance(item, dict) and item.get("name"):
            columns[str(item["name"])] = str(item.get("label") or item["name"])
    return columns


def _check_page(page: int) -> None:
    if page < 0:
        raise InvalidParameter("pageNumber must be at least 0")


async def _report(ctx: Ctx, search_id: int, user_id: int) -> None:
    """The report exists and ``user_id`` may run it (else [RecordNotFound])."""
    if search_id < 1:
        raise NotFound()
    report = await ctx.client.get(f"/reporting/reports/{search_id}")
    users = report.get("user_ids") if isinstance(report, dict) else None
    allowed = {str(u) for u in users or []}
    if ALL_USERS not in allowed and str(user_id) not in allowed:
        raise NotFound()


async def _run(ctx: Ctx, search_id: int, page: int, names: list[str] | None) -> Value:
    path = f"/reporting/reports/{search_id}:run"
    base: dict[str, Any] = {"page_size": LEGACY_PAGE}
    if names is not None:
        base["fields"] = ",".join(names)
    known = ctx.state.tokens.pages((ctx.account, path, tuple(sorted(base.items()))))
    start = max(p for p in known if p <= page)
    if (page - start) * LEGACY_PAGE > COUNT_LIMIT:
        raise NoTranslation(
            f"SearchService: page {page} needs more than {COUNT_LIMIT} rows run through over "
            "REST v2 (it pages by token); walk the pages in order"
        )
    token = known[start]
    for number in range(start, page + 1):
        body = {**base, **({"page_token": token} if token else {})}
        answer = await ctx.client.json("POST", path, json_body=body)
        results = answer.get("results") if isinstance(answer, dict) else None
        following = str(answer.get("page_token") or "") if isinstance(answer, dict) else ""
        if following:
            known[number + 1] = following
        if number == page:
            return [_row(r, names) for r in results or [] if isinstance(r, dict)]
        if not following or not results:
            return []
        token = following
    return []  # pragma: no cover - the loop always returns


def _row(record: dict[str, Any], names: list[str] | None) -> Value:
    """One result row as the legacy struct (asked-for columns in the order asked)."""
    cells: dict[str, Value] = {}
    for column in record.get("columns") or []:
        if isinstance(column, dict) and column.get("field_name"):
            value = column.get("value")
            if value is not None and value != "":
                cells[str(column["field_name"])] = str(value)
    if names is None:
        return cells
    return {name: cells[name] for name in names if name in cells}
