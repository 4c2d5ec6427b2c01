"""The legacy ``DataService.query`` language, evaluated locally on records read over REST.

REST v2 filters express only part of it (``==``, a trailing ``*``, a few comparisons, on
listed fields). Whatever a REST filter cannot say exactly is checked here, on the records a
(narrower or equal) REST listing returned, with the legacy semantics: an exact value; ``%``
wildcards anywhere (SQL LIKE; ``_`` is literal); ``~<>~ ~>~ ~<~ ~>=~ ~<=~`` comparisons typed
by the field; ``~null~`` and ``~<>~null~``. Text compares case-insensitively (Keap ran on
MySQL) and an empty value matches no comparison (SQL's three-valued logic).

The bundled simulator reads the same language in its own module (shim/simulator/query.py).
The two are kept apart on purpose: the equivalence tests compare keyshim's REST answers with
the simulator's XML-RPC ones, and a shared module would make a shared bug invisible to them.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shim.errors import InvalidParameter
from shim.rest.legacy import FieldSpec, field, is_empty, parse_date
from shim.xmlrpc import Value

#: Longest first, so "~>=~" is not read as "~>~" followed by "=".
OPERATORS = ("~<>~", "~>=~", "~<=~", "~>~", "~<~")
#: Rows per legacy page at most (Keap's cap).
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Criterion:
    """One compiled ``field: criterion`` pair of a legacy query."""

    field: str
    spec: FieldSpec
    #: "=", one of OPERATORS, "like", "null" or "notnull".
    op: str
    #: The criterion as the script sent it (after the operator).
    raw: Value
    #: The operand in the field's type ("=" and comparisons), the pattern text ("like").
    operand: Any
    test: Callable[[Value], bool]

    @property
    def prefix(self) -> str | None:
        """For ``v%`` (one trailing ``%`` and no other): ``v``, else None."""
        if self.op != "like" or not isinstance(self.operand, str):
            return None
        head = self.operand[:-1]
        return head if self.operand.endswith("%") and head and "%" not in head else None


def compile_query(
    table: str, fields: dict[str, FieldSpec], query: Mapping[str, Value]
) -> list[Criterion]:
    """Every criterion compiled before any record is looked at, so a bad field or operand
    faults even on an empty table, as it did on Keap's database."""
    return [_compile(name, field(table, fields, name), value) for name, value in query.items()]


def matches(criteria: list[Criterion], row: Mapping[str, Value]) -> bool:
    return all(c.test(row.get(c.field)) for c in criteria)


def _compile(name: str, spec: FieldSpec, criterion: Value) -> Criterion:
    if criterion == "~null~":
        return Criterion(name, spec, "null", None, None, is_empty)
    if criterion == "~<>~null~":
        return Criterion(name, spec, "notnull", None, None, lambda value: not is_empty(value))
    op, operand = "=", criterion
    if isinstance(criterion, str):
        op = next((o for o in OPERATORS if criterion.startswith(o)), "=")
        operand = criterion[len(op) :] if op != "=" else criterion
        if op == "=" and "%" in criterion:
            parts = (re.escape(part) for part in criterion.split("%"))
            pattern = re.compile(".*".join(parts), re.IGNORECASE | re.DOTALL)
            return Criterion(
                name,
                spec,
                "like",
                criterion,
                criterion,
                lambda value: not is_empty(value) and bool(pattern.fullmatch(text(value))),
            )
    right = typed(operand, spec) if isinstance(operand, str) else key(operand, spec)

    def test(value: Value) -> bool:
        return not is_empty(value) and _compare(op, key(value, spec), right)

    return Criterion(name, spec, op, right, operand, test)


def _compare(op: str, left: Any, right: Any) -> bool:
    try:
        if op == "=":
            return bool(left == right)
        if op == "~<>~":
            return bool(left != right)
        if op == "~>~":
            return bool(left > right)
        if op == "~<~":
            return bool(left < right)
        if op == "~>=~":
            return bool(left >= right)
        return bool(left <= right)
    except TypeError:  # a value of another type than the field's: no match, like SQL
        return False


def typed(text_value: str, spec: FieldSpec) -> Any:
    """A criterion's text in the field's type, so 10 > 9 and dates compare as dates."""
    if spec.type == "int":
        try:
            return int(text_value.strip())
        except ValueError:
            raise InvalidParameter(f"Invalid number in query: {text_value!r}") from None
    if spec.type == "float":
        try:
            return float(text_value.strip())
        except ValueError:
            raise InvalidParameter(f"Invalid number in query: {text_value!r}") from None
    if spec.type == "date":
        parsed = parse_date(text_value)
        if parsed is None:
            raise InvalidParameter(f"Invalid date in query: {text_value!r}")
        return parsed
    return text_value.casefold()


def key(value: Value, spec: FieldSpec) -> Any:
    """A stored value as criteria and ordering compare it."""
    if spec.type == "str" or isinstance(value, str):
        return typed(text(value), spec)
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None)
    return value


def text(value: Value) -> str:
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def sort_key(value: Value, spec: FieldSpec) -> tuple[bool, Any]:
    """Legacy ordering: empty values first (MySQL), then by the typed value."""
    return (not is_empty(value), key(value, spec) if not is_empty(value) else 0)


def legacy_page(
    rows: list[dict[str, Value]],
    fields: Mapping[str, FieldSpec],
    order_by: str | None,
    ascending: bool,
    limit: int,
    page: int,
) -> list[dict[str, Value]]:
    """Rows already in their base order, ordered by ``order_by`` (stable, legacy's empty-first
    ordering) and cut to legacy page ``page`` of ``limit``."""
    if order_by is not None:
        spec = fields[order_by]
        rows = sorted(rows, key=lambda r: sort_key(r.get(order_by), spec), reverse=not ascending)
    return rows[page * limit : (page + 1) * limit]


def check_page(limit: int, page: int) -> int:
    """The legacy paging checks; returns the effective limit (capped at ``MAX_LIMIT``)."""
    if limit < 1 or page < 0:
        raise InvalidParameter("limit must be at least 1 and page at least 0")
    return min(limit, MAX_LIMIT)
