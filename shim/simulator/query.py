"""Legacy ``DataService.query`` matching, ordering, paging and field selection.

Criteria follow the legacy query language: an exact value; ``%`` wildcards (start, end, both
or inside, like SQL LIKE); ``~<>~``, ``~>~``, ``~<~``, ``~>=~``, ``~<=~`` comparisons; ``~null~``
and ``~<>~null~``. Keap runs these on MySQL, so text compares case-insensitively and a null
value matches no comparison at all (SQL's three-valued logic).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any

from shim.simulator.faults import KeapFault, invalid
from shim.simulator.schema import FieldSpec, check_field, is_empty, parse_date
from shim.xmlrpc import Value

#: Longest first, so "~>=~" is not read as "~>~" followed by "=".
_OPERATORS = ("~<>~", "~>=~", "~<=~", "~>~", "~<~")
MAX_LIMIT = 1000

Row = dict[str, Value]


def select(
    table: str, fields: Mapping[str, FieldSpec], rows: list[Row], query: Mapping[str, Value]
) -> list[Row]:
    """The rows matching every criterion of ``query`` (an empty query matches all).

    Criteria are compiled before any row is looked at, so a bad field or operand faults even
    on an empty table, as it does on Keap's database.
    """
    tests = [
        (name, _compile(criterion, check_field(table, fields, name)))
        for name, criterion in query.items()
    ]
    return [row for row in rows if all(test(row.get(name)) for name, test in tests)]


def order(
    table: str,
    fields: Mapping[str, FieldSpec],
    rows: list[Row],
    order_by: str | None,
    ascending: bool,
) -> list[Row]:
    """Sort by ``order_by`` (nulls first, as MySQL does), else keep Id order."""
    if order_by is None:
        return rows
    spec = check_field(table, fields, order_by)
    return sorted(rows, key=lambda row: _sort_key(row.get(order_by), spec), reverse=not ascending)


def page(rows: list[Row], limit: int, page_number: int) -> list[Row]:
    """``page`` is 0-based; ``limit`` is capped at Keap's 1000 rows per page."""
    if limit < 1 or page_number < 0:
        raise invalid("limit must be at least 1 and page at least 0")
    limit = min(limit, MAX_LIMIT)
    start = page_number * limit
    return rows[start : start + limit]


def check_fields(table: str, fields: Mapping[str, FieldSpec], names: list[str]) -> None:
    """Fault on an empty or unknown list of return fields (checked once per call)."""
    if not names:
        raise KeapFault("NoFields", "No fields were requested")
    for name in names:
        check_field(table, fields, name)


def project(row: Row, names: list[str]) -> Row:
    """The requested fields that have a value (legacy answers leave out empty fields)."""
    return {name: row[name] for name in names if not is_empty(row.get(name))}


def _compile(criterion: Value, spec: FieldSpec) -> Callable[[Value], bool]:
    """A test for one field's value; a null value passes only the null tests."""
    if criterion == "~null~":
        return is_empty
    if criterion == "~<>~null~":
        return lambda value: not is_empty(value)
    op, operand = "=", criterion
    if isinstance(criterion, str):
        op = next((o for o in _OPERATORS if criterion.startswith(o)), "=")
        operand = criterion[len(op) :] if op != "=" else criterion
        if op == "=" and "%" in criterion:
            parts = (re.escape(part) for part in criterion.split("%"))
            pattern = re.compile(".*".join(parts), re.IGNORECASE | re.DOTALL)
            return lambda value: not is_empty(value) and bool(pattern.fullmatch(_text(value)))
    right = _operand(operand, spec) if isinstance(operand, str) else _key(operand, spec)
    return lambda value: not is_empty(value) and _compare(op, _key(value, spec), right)


def _compare(op: str, left: Any, right: Any) -> bool:
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


def _operand(text: str, spec: FieldSpec) -> Any:
    """A criterion's text in the field's type, so 10 > 9 for numbers and dates compare as dates."""
    if spec.type == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise invalid(f"Invalid number in query: {text!r}") from None
    if spec.type == "float":
        try:
            return float(text.strip())
        except ValueError:
            raise invalid(f"Invalid number in query: {text!r}") from None
    if spec.type == "date":
        parsed = parse_date(text)
        if parsed is None:
            raise invalid(f"Invalid date in query: {text!r}")
        return parsed
    return text.casefold()


def _key(value: Value, spec: FieldSpec) -> Any:
    if spec.type == "str" or isinstance(value, str):
        return _operand(_text(value), spec)
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None)
    return value


def _text(value: Value) -> str:
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _sort_key(value: Value, spec: FieldSpec) -> tuple[bool, Any]:
    return (not is_empty(value), _key(value, spec) if not is_empty(value) else 0)
