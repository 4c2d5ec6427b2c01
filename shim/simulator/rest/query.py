"""REST v2 list mechanics: ``filter``, ``order_by`` and cursor paging, shared by every list.

* ``filter=a==x;b==y``: clauses ANDed, each on a field the endpoint lists (anything else is a
  400, as docs/keap.md#filters says). ``==v*`` is a prefix match on fields that allow wildcards; a
  leading or inner ``*`` is refused. ``NONE`` tests for an empty value where allowed. Text
  compares case-insensitively (Keap runs on MySQL).
* ``order_by=field [asc|desc]`` on the listed fields only.
* Paging is by cursor, not offset: ``next_page_token`` names the sort key of the last item
  sent, so deleting or adding records between pages neither skips nor repeats a survivor.
  A token only works with the filter and order it was made for.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from shim.simulator.rest.http import Call, bad, parse_time

Kind = Literal["text", "number", "decimal", "ids", "since", "until", "choice"]
COMPARISONS = frozenset({"==", ">", "<", ">=", "<="})
_CLAUSE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|>=|<=|>|<)(.*)$", re.DOTALL)
T = TypeVar("T")


@dataclass(frozen=True)
class Rule:
    """What one filter field accepts."""

    kind: Kind = "text"
    ops: frozenset[str] = frozenset({"=="})
    wildcard: bool = False
    #: ``field==NONE`` matches items with no value.
    none: bool = False
    #: Shortest prefix before a trailing ``*`` (phone numbers need 3).
    min_prefix: int = 1
    #: For ``choice``: the values allowed (a CSV of them may be given).
    choices: frozenset[str] = frozenset()


TEXT = Rule()
WILD = Rule(wildcard=True)
NUMBER = Rule("number")
#: A money amount (a transaction's ``amount``): ``== != < <= > >=``, compared in cents.
AMOUNT = Rule("decimal", frozenset({"==", "!=", ">", "<", ">=", "<="}))
IDS = Rule("ids")
SINCE = Rule("since")
UNTIL = Rule("until")


@dataclass(frozen=True)
class Clause:
    name: str
    op: str
    rule: Rule
    operand: Any
    prefix: bool = False
    none: bool = False


def parse_filter(text: str | None, rules: Callable[[str], Rule | None]) -> list[Clause]:
    """The clauses of ``filter``; ``rules`` gives the rule for a field name or None."""
    clauses: list[Clause] = []
    for part in (text or "").split(";"):
        if not part.strip():
            continue  # Keap's own examples end with ";"
        match = _CLAUSE.match(part)
        if match is None:
            raise bad(f"Invalid filter clause: {part!r}", "filter", part)
        name, op, value = match.groups()
        rule = rules(name)
        if rule is None:
            raise bad(f"Invalid filter field: {name}", "filter", name)
        if op not in rule.ops:
            raise bad(f"Operator {op} is not supported for {name}", "filter", name)
        clauses.append(_clause(name, op, value.strip(), rule))
    return clauses


def _clause(name: str, op: str, value: str, rule: Rule) -> Clause:
    if rule.none and value == "NONE":
        return Clause(name, op, rule, None, none=True)
    if value.startswith("*"):
        raise bad(f"Leading wildcards are not supported: {name}=={value}", "filter", name)
    if "*" in value:
        prefix = value[:-1]
        if not rule.wildcard or "*" in prefix:
            raise bad(f"Wildcards are only supported at the end of {name}", "filter", name)
        if len(prefix) < rule.min_prefix:
            raise bad(f"{name} needs at least {rule.min_prefix} characters before *", "filter")
        return Clause(name, op, rule, prefix.casefold(), prefix=True)
    if rule.kind == "text":
        return Clause(name, op, rule, value.casefold())
    if rule.kind == "number":
        if not value.lstrip("-").isdigit():
            raise bad(f"{name} must be a number", "filter", name)
        return Clause(name, op, rule, int(value))
    if rule.kind == "decimal":
        try:
            amount = float(value)
        except ValueError:
            amount = math.nan
        if not math.isfinite(amount):
            raise bad(f"{name} must be a number", "filter", name)
        return Clause(name, op, rule, amount)
    if rule.kind == "ids":
        items = [v.strip() for v in value.split(",") if v.strip()]
        if not items or not all(v.isdigit() for v in items) or len(items) > 1000:
            raise bad(f"{name} must be a list of ids", "filter", name)
        return Clause(name, op, rule, frozenset(int(v) for v in items))
    if rule.kind == "choice":
        picked = frozenset(v.strip() for v in value.split(",") if v.strip())
        if not picked or not picked <= rule.choices:
            raise bad(f"{name} must be among {', '.join(sorted(rule.choices))}", "filter", name)
        return Clause(name, op, rule, picked)
    return Clause(name, op, rule, parse_time(value, name))


def matches(clause: Clause, values: list[Any]) -> bool:
    """Whether any of an item's values for the clause's field passes it."""
    present = [v for v in values if v is not None and v != ""]
    if clause.none:
        return not present
    if clause.prefix:
        return any(str(v).casefold().startswith(clause.operand) for v in present)
    kind, operand = clause.rule.kind, clause.operand
    if kind == "text":
        return any(str(v).casefold() == operand for v in present)
    if kind in ("ids", "choice"):
        return any(v in operand for v in present)
    if kind == "since":
        return any(isinstance(v, datetime.datetime) and v >= operand for v in present)
    if kind == "until":
        return any(isinstance(v, datetime.datetime) and v <= operand for v in present)
    if kind == "decimal":
        return any(
            isinstance(v, (int, float))
            and _compare(clause.op, round(v * 100), round(operand * 100))
            for v in present
        )
    return any(isinstance(v, int) and _compare(clause.op, v, operand) for v in present)


def _compare(op: str, left: int, right: int) -> bool:
    return {
        "==": left == right,
        "!=": left != right,
        ">": left > right,
        "<": left < right,
        ">=": left >= right,
        "<=": left <= right,
    }[op]


def select(items: list[T], clauses: list[Clause], values: Callable[[T, str], list[Any]]) -> list[T]:
    return [item for item in items if all(matches(c, values(item, c.name)) for c in clauses)]


def parse_order(text: str | None, allowed: Collection[str]) -> tuple[str | None, bool]:
    """``order_by`` as (field or None, descending)."""
    if not text or not text.strip():
        return None, False
    words = text.split()
    name = words[0]
    direction = words[1].lower() if len(words) > 1 else "asc"
    if name not in allowed or len(words) > 2 or direction not in ("asc", "desc"):
        listed = ", ".join(sorted(allowed))
        raise bad(f"Invalid order_by {text!r}: one of {listed}, then asc or desc", "order_by")
    return name, direction == "desc"


def sort_value(value: Any) -> list[Any]:
    """A JSON-safe sort key (it travels in the page token); empty values sort first."""
    if value is None or value == "":
        return [0, 0]
    if isinstance(value, datetime.datetime):
        return [1, value.isoformat()]
    if isinstance(value, str):
        return [1, value.casefold()]
    return [1, value]


def page_size(call: Call) -> int:
    """``page_size`` in 0..1000 (the SDK's bounds); absent or 0 means the configured default."""
    text = call.arg("page_size")
    if text is None or text == "":
        return call.config.rest_default_page_size
    if not text.isdigit() or int(text) > 1000:
        raise bad("page_size must be an integer from 0 to 1000", "page_size", text)
    return int(text) or call.config.rest_default_page_size


def paginate(
    call: Call,
    items: list[T],
    key: Callable[[T], list[Any]],
    descending: bool,
    body: Mapping[str, Any] | None = None,
) -> tuple[list[T], str]:
    """One page of ``items`` after ``page_token``, and the token for the next ("" at the end).

    ``key`` must end with the item's id so that it is unique. ``body``: the paging is in the
    JSON body (``page_size``, ``page_token``, ``order_by``), not the query (a report run).
    """
    if body is None:
        size, scope, token = page_size(call), _scope(call), call.arg("page_token")
    else:
        size = _body_size(call, body.get("page_size"))
        scope = _scope(call, str(body.get("order_by") or ""))
        token = body.get("page_token") if isinstance(body.get("page_token"), str) else None
    ordered = sorted(items, key=key, reverse=descending)
    if token:
        after = _read_token(token, scope)
        ordered = [i for i in ordered if (key(i) < after if descending else key(i) > after)]
    page = ordered[:size]
    if len(ordered) <= size or not page:
        return page, ""
    raw = json.dumps({"s": scope, "k": key(page[-1])}, separators=(",", ":")).encode()
    return page, base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def listing(call: Call, name: str, items: list[Any], token: str) -> dict[str, Any]:
    """A list answer; at the end the token is "" or left out, per ``rest_end_token``."""
    answer: dict[str, Any] = {name: items}
    if token or call.config.rest_end_token == "empty":
        answer["next_page_token"] = token
    return answer


def _scope(call: Call, order_by: str | None = None) -> str:
    """What a token is bound to: the path, the filter and the order."""
    order = call.arg("order_by") if order_by is None else order_by
    text = "\n".join([call.request.path, call.arg("filter") or "", order or ""])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _body_size(call: Call, value: Any) -> int:
    """A JSON ``page_size`` in 0..1000; absent or 0 means the configured default."""
    if value is None:
        return call.config.rest_default_page_size
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1000:
        raise bad("page_size must be an integer from 0 to 1000", "page_size", str(value))
    return value or call.config.rest_default_page_size


def _read_token(token: str, scope: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        key, made_for = data["k"], data["s"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise bad("Invalid page_token", "page_token", token) from None
    if made_for != scope or not isinstance(key, list):
        raise bad("page_token does not belong to this filter and order_by", "page_token")
    return key
