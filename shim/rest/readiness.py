"""``shim readiness``: how much of each script's traffic would survive XML-RPC's end today.

Built from the usage records (``Store.usage``: calls per key, method and DataService table) and
the translation table: a call "keeps working" when ``table.judge(method, table)`` says it
translates (exact or approximate): a DataService.query on Contact does, one on Product does
not until a Product translation registers itself. Calls recorded before the audit kept the
table (schema 7) are judged by their method alone; the report says when that happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from shim.rest.judging import table_method
from shim.rest.table import judge

#: The audit method of a REST request passed through (route ``rest-pass``) starts with this.
REST_PREFIX = "REST "

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
        # A REST request passed through is already off XML-RPC: it keeps working, exactly.
        kind = "exact" if method.startswith(REST_PREFIX) else judge(method, table)
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
                "rest_v2": 0,
                "methods": [],
            },
        )
        entry["calls"] += calls
        entry["rest_v2"] += calls if method.startswith(REST_PREFIX) else 0
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
            f"({key['exact_share']:.0%} exact; {_share(key['rest_v2'], key['calls']):.0%} "
            "already REST v2)"
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


def protocol_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per key: its label, and its calls on XML-RPC and on REST v2 (passed through)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("key_id") is None:
            continue
        entry = out.setdefault(
            row["key_id"], {"label": row.get("label"), "xmlrpc": 0, "rest_v2": 0}
        )
        rest = str(row.get("method") or "").startswith(REST_PREFIX)
        entry["rest_v2" if rest else "xmlrpc"] += int(row.get("calls") or 0)
    return out


def migration(
    edges: Sequence[tuple[float, str]], usage_since: Callable[[float], Iterable[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Per key, the share of its calls on REST v2 in each period: how far it has moved.

    ``edges`` are the periods' starts, oldest first, each with its name; a period runs to the
    next start (the last to now). ``usage_since`` is ``Store.usage``: each period's counts are
    the difference of two cumulative reports, so the store needs no new query.
    """
    cumulative = [protocol_counts(usage_since(start)) for start, _ in edges]
    keys = sorted({k for counts in cumulative for k in counts})
    out = []
    for key in keys:
        periods = []
        for i, (_, name) in enumerate(edges):
            now = cumulative[i].get(key, {"xmlrpc": 0, "rest_v2": 0})
            later = cumulative[i + 1].get(key) if i + 1 < len(edges) else None
            xml = now["xmlrpc"] - (later["xmlrpc"] if later else 0)
            rest = now["rest_v2"] - (later["rest_v2"] if later else 0)
            periods.append(
                {
                    "period": name,
                    "xmlrpc": xml,
                    "rest_v2": rest,
                    "rest_share": _share(rest, xml + rest),
                }
            )
        label = next((c[key]["label"] for c in cumulative if key in c), None)
        out.append({"key_id": key, "label": label, "periods": periods})
    return out


def migration_lines(data: Sequence[Mapping[str, Any]]) -> list[str]:
    """The human form of ``migration``: one line per key, periods oldest first."""
    if not data:
        return []
    names = [p["period"] for p in data[0]["periods"]]
    out = ["share of calls on REST v2 (XML-RPC calls / REST v2 calls), " + " | ".join(names)]
    for key in data:
        cells = [
            f"{p['rest_share']:>4.0%} ({p['xmlrpc']}/{p['rest_v2']})"
            if p["xmlrpc"] + p["rest_v2"]
            else "   -"
            for p in key["periods"]
        ]
        out.append(f"{key['key_id']:<10} {(key['label'] or '-')[:20]:<20} " + " | ".join(cells))
    return out
