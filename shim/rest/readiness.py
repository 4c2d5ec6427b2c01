"""``shim readiness``: how much of each script's traffic would survive XML-RPC's end today.

Built from the usage records (``Store.usage``: calls per key and method) and the translation
table: a call "keeps working" when its method has a translation (exact or approximate).
Caveat shown with the report: the audit records the method, not the table, so DataService
calls count as translatable although only four tables are (see docs/translation.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shim.rest.table import fidelity

CAVEAT = (
    "DataService.* counts as translatable, but only for Contact, ContactGroup, "
    "ContactGroupCategory and ContactGroupAssign (the audit does not record the table)"
)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def report(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per key (and per method within it) and for the whole team."""
    keys: dict[str, dict[str, Any]] = {}
    totals = {"exact": 0, "approximate": 0, "no": 0}
    for row in rows:
        if row.get("key_id") is None:
            continue  # refused before any key was known: no script's traffic
        calls = int(row.get("calls") or 0)
        method = str(row.get("method") or "")
        kind = fidelity(method)
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
        entry["methods"].append({"method": method, "calls": calls, "translation": kind})
    out_keys = []
    for entry in sorted(keys.values(), key=lambda e: (-e["calls"], e["key_id"])):
        entry["methods"].sort(key=lambda m: (-m["calls"], m["method"]))
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
    return {"keys": out_keys, "team": team, "caveat": CAVEAT}


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
            out.append(f"    {m['method']:<40} {m['calls']:>7}  {m['translation']}")
    team = data["team"]
    out.append(
        f"team: {team['calls']} calls, {team['share']:.0%} would keep working if XML-RPC "
        f"stopped today ({team['exact_share']:.0%} exact, {team['no']} calls untranslatable)"
    )
    out.append(f"note: {data['caveat']}")
    return out
