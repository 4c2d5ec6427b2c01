"""The apps-covered share: of the surveyed legacy apps, how many would keep working through
REST v2 alone, per the translation table (``shim readiness --survey DIR``).

The survey (fixtures/legacy_usage, copied from a December 2026 survey of 74 public apps) gives
per method and per DataService table the number of apps that make the call at least once, not
each app's list of calls. So the share is bounded, not counted. The "items" an app may call
that keyshim cannot answer are:

* each untranslated method (not a DataService table method) with its app count;
* each table with untranslated methods: when none of the methods seen on it translates, the
  table's app count; when some do, between 1 app and min(table apps, untranslated call sites);
* ``DataService.getAppSetting`` is judged for ('Application', 'enabled'), the PHP iSDK's
  connection test (the survey counts it for every iSDK app; other settings are unknown).

Uncovered apps U lie between max(lower_i) (every item's apps are the same apps) and
min(N, sum(upper_i)) (no two items share an app); the covered share is (N - U) / N. A third
figure assumes items are called independently: prod(1 - upper_i / N). The survey's 86
DataService calls whose table is a variable are not judged: they can only lower the share.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from shim.rest.judging import Judgement, table_method, worse
from shim.rest.table import judge
from shim.xmlrpc import Value

#: The connection test the PHP iSDK's cfgCon sends.
ISDK_SETTING: list[Value] = ["Application", "enabled"]


@dataclass(frozen=True)
class Item:
    """Something some apps call that has no REST v2 translation."""

    name: str
    apps_low: int
    apps_high: int
    call_sites: int


def _judge_seen(method: str, table: str) -> Judgement:
    """``add/update`` in the survey is a call that may be either."""
    if method == "add/update":
        return worse(judge("DataService.add", table), judge("DataService.update", table))
    return judge(f"DataService.{method}", table)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def items(methods_csv: str, tables_csv: str) -> tuple[list[Item], dict[str, int]]:
    """The untranslated items, and call sites judged: translated / total."""
    out: list[Item] = []
    sites = {"translated": 0, "judged": 0}
    for row in _rows(methods_csv):
        method, apps, n = row["method"], int(row["apps"]), int(row["call_sites"])
        if method.startswith("DataService.") and (
            table_method(method) is not None or "/" in method
        ):
            continue  # judged per table below
        args = ISDK_SETTING if method == "DataService.getAppSetting" else None
        sites["judged"] += n
        if judge(method, None, args) == "no":
            out.append(Item(method, apps, apps, n))
        else:
            sites["translated"] += n
    for row in _rows(tables_csv):
        table, apps = row["table"], int(row["apps"])
        seen = {m: int(v) for m, _, v in (p.partition("=") for p in row["methods_seen"].split(";"))}
        missing = {m: n for m, n in seen.items() if _judge_seen(m, table) == "no"}
        sites["judged"] += sum(seen.values())
        sites["translated"] += sum(seen.values()) - sum(missing.values())
        if not missing:
            continue
        untranslated_sites = sum(missing.values())
        if len(missing) == len(seen):
            out.append(Item(f"DataService.* on {table}", apps, apps, untranslated_sites))
        else:
            names = ", ".join(sorted(missing))
            high = min(apps, untranslated_sites)
            out.append(Item(f"DataService.{names} on {table}", 1, high, untranslated_sites))
    out.sort(key=lambda i: (-i.apps_high, -i.call_sites, i.name))
    return out, sites


def coverage(methods_csv: str, tables_csv: str, apps: int) -> dict[str, Any]:
    """The share of surveyed apps whose every call translates: bounds and an estimate."""
    found, sites = items(methods_csv, tables_csv)
    uncovered_low = max((i.apps_low for i in found), default=0)
    uncovered_high = min(apps, sum(i.apps_high for i in found))
    independent = 1.0
    for i in found:
        independent *= 1 - i.apps_high / apps
    return {
        "apps": apps,
        "covered_low": round((apps - uncovered_high) / apps, 4),
        "covered_high": round((apps - uncovered_low) / apps, 4),
        "covered_independent": round(independent, 4),
        "call_sites_translated": round(sites["translated"] / sites["judged"], 4),
        "call_sites_judged": sites["judged"],
        "untranslated": [i.__dict__ for i in found],
    }


def lines(data: dict[str, Any]) -> list[str]:
    out = [
        f"surveyed apps: {data['apps']}; share whose every call translates to REST v2: "
        f"between {data['covered_low']:.0%} and {data['covered_high']:.0%} "
        f"({data['covered_independent']:.0%} if apps chose their calls independently)",
        f"call sites that translate: {data['call_sites_translated']:.0%} of "
        f"{data['call_sites_judged']} judged (tables named in variables not judged)",
        "calls with no REST v2 translation (apps, call sites):",
    ]
    for i in data["untranslated"]:
        apps = (
            str(i["apps_high"])
            if i["apps_low"] == i["apps_high"]
            else (f"{i['apps_low']}-{i['apps_high']}")
        )
        out.append(f"  {i['name']:<56} {apps:>6} {i['call_sites']:>6}")
    return out
