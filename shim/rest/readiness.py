"""``shim readiness``: how much of each script's traffic would survive XML-RPC's end today.

Built from the usage records (``Store.usage``: calls per key, method and DataService table) and
the translation table: a call "keeps working" when ``table.judge(method, table)`` says it
translates (exact or approximate): a DataService.query on Contact does, one on Product does
not until a Product translation registers itself. Calls recorded before the audit kept the
table (schema 7) are judged by their method alone; the report says when that happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shim.rest.judging import table_method
from shim.rest.table import judge

CAVEAT = (
    "some DataService calls were recorded without their table (before schema 7, or a table "
    "argument that was not a string): they are judged by method alone"
)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def report(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per key (and per method within it) and for the whole team."""
    keys: dict[str, dict[str, Any]] = {}
    totals = {"exact": 0, "approximate": 0, "no": 0}
    unknown_tables = 0
    for row in rows:
        if row.get("key_id") is None:
            continue  # refused before any key was known: no script's traffic
        calls = int(row.get("calls") or 0)
        method = str(row.get("method") or "")
        table = row.get("table_name")
        kind = judge(method, table)
        if table is None and table_method(method) is not None:
            unknown_tables += calls
        entry = keys.setdefault(
            row["key_id"],
            {
                "key_id": row["key_id"],
                "label": row.get("label"),
                "account": row.get("account"),
                "calls": 0,
                "exact": 0,
                "approximate": 0,
                "no": 0,
                "methods": [],
            },
        )
        entry["calls"] += calls
        entry[kind] += calls
        totals[kind] += calls
        entry["methods"].append(
            {"method": method, "table": table, "calls": calls, "translation": kind}
        )
    out_keys = []
    for entry in sorted(keys.values(), key=lambda e: (-e["calls"], e["key_id"])):
        entry["methods"].sort(key=lambda m: (-m["calls"], m["method"], m["table"] or ""))
        working = entry["exact"] + entry["approximate"]
        entry["share"] = _share(working, entry["calls"])
        entry["exact_share"] = _share(entry["exact"], entry["calls"])
        out_keys.append(entry)
    calls = sum(totals.values())
    team = {
        "calls": calls,
        **totals,
        "share": _share(totals["exact"] + totals["approximate"], calls),
        "exact_share": _share(totals["exact"], calls),
    }
    caveat = f"{unknown_tables} calls: {CAVEAT}" if unknown_tables else None
    return {"keys": out_keys, "team": team, "caveat": caveat}


def lines(data: Mapping[str, Any]) -> list[str]:
    """The human form of ``report``."""
    out = []
    for key in data["keys"]:
        out.append(
            f"{key['key_id']}  {(key['label'] or '-')[:24]:<24} {key['account'] or '-':<12} "
            f"{key['calls']:>7} calls, {key['share']:.0%} would keep working "
            f"({key['exact_share']:.0%} exact)"
        )
        for m in key["methods"]:
            name = m["method"] + (f" {m['table']}" if m["table"] else "")
            out.append(f"    {name:<48} {m['calls']:>7}  {m['translation']}")
    team = data["team"]
    out.append(
        f"team: {team['calls']} calls, {team['share']:.0%} would keep working if XML-RPC "
        f"stopped today ({team['exact_share']:.0%} exact, {team['no']} calls untranslatable)"
    )
    if data["caveat"]:
        out.append(f"note: {data['caveat']}")
    return out
