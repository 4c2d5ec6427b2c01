"""The legacy SearchService methods the simulator answers, over the saved searches of
reports.py (what REST v2's ``/reporting/reports`` serves too).

Answer shapes (unverified where no source shows them): ``getSavedSearchResultsAllFields`` and
``getSavedSearchResults`` -> one struct per row, keyed by column name, values as text, empty
ones left out, 1000 rows a page from page 0; ``getAllReportColumns`` -> a struct of column
name -> label. A saved search the user may not run is not found for them.
"""

from __future__ import annotations

from shim.simulator import reports
from shim.simulator.faults import KeapFault, invalid
from shim.simulator.services import Context, method
from shim.xmlrpc import Value


def _check_page(page: int) -> None:
    if page < 0:
        raise invalid("pageNumber must be at least 0")


def _page(rows: list[dict[str, str]], page: int) -> Value:
    size = reports.LEGACY_PAGE
    return [dict(row) for row in rows[page * size : (page + 1) * size]]


@method("SearchService.getSavedSearchResultsAllFields", "iii")
def saved_search_all_fields(ctx: Context, search_id: int, user_id: int, page: int) -> Value:
    _check_page(page)
    search = reports.for_user(search_id, user_id)
    return _page(reports.run(ctx.db, search, reports.columns(search, None)), page)


@method("SearchService.getSavedSearchResults", "iiiL")
def saved_search(ctx: Context, search_id: int, user_id: int, page: int, names: list[str]) -> Value:
    _check_page(page)
    if not names:
        raise KeapFault("NoFields", "No fields were requested")
    search = reports.for_user(search_id, user_id)
    return _page(reports.run(ctx.db, search, reports.columns(search, names)), page)


@method("SearchService.getAllReportColumns", "ii")
def all_report_columns(ctx: Context, search_id: int, user_id: int) -> Value:
    search = reports.for_user(search_id, user_id)
    return dict(search.columns)
