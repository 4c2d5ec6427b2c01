"""Names for judging legacy calls (``table.judge``), kept in a leaf module so the audit and the
scanner can use them without importing the translations.
"""

from __future__ import annotations

from typing import Literal

Judgement = Literal["exact", "approximate", "no"]

#: DataService methods whose first argument (after the key) is a table name.
TABLE_METHODS = ("query", "findByField", "count", "load", "add", "update", "delete")
READS = ("query", "findByField", "count", "load")
WRITES = ("add", "update", "delete")


def table_method(method: str) -> str | None:
    """``"query"`` for ``"DataService.query"`` (a method taking a table first), else None."""
    service, _, name = method.partition(".")
    return name if service == "DataService" and name in TABLE_METHODS else None


def worse(a: Judgement, b: Judgement) -> Judgement:
    order: tuple[Judgement, ...] = ("no", "approximate", "exact")
    return a if order.index(a) <= order.index(b) else b
