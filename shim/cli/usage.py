"""``shim usage``, ``shim readiness`` and ``shim status``: what calls what, and how healthy."""

from __future__ import annotations

import calendar
import sys
import time
from typing import Any

import click

from shim.cli import options
from shim.errors import CliError
from shim.oauth.health import account_healths, exit_code
from shim.settings import parse_duration


def _periods(start: float, now: float) -> list[tuple[float, str]]:
    """The periods of the migration share, oldest first: since ``start``, cut at 7 days and
    at 24 hours ago when those are later than ``start``."""
    cuts = [
        (now - ago, name) for ago, name in ((7 * 86400, "7d"), (86400, "24h")) if now - ago > start
    ]
    first = f"since {options.iso(start) or start}"[:16]
    if not cuts:
        return [(start, first)]
    out = [(start, f"{first} to {cuts[0][1]} ago")]
    for (at, name), later in zip(cuts, [*cuts[1:], None], strict=True):
        out.append((at, f"{name} to {later[1]} ago" if later else f"last {name}"))
    return out


def _since(text: str, now: float) -> float:
    """``--since``: a duration ago (``7d``, ``12h``) or a UTC date/time (``2026-11-01``)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M"):
        try:
            return float(calendar.timegm(time.strptime(text, fmt)))
        except ValueError:
            continue
    raise CliError(f"--since takes a duration (7d, 12h) or a date (2026-11-01), not {text!r}")


@click.command()
@options.since_option
@options.json_option
@click.option("--csv", "as_csv", is_flag=True, help="CSV output (one row per key and method).")
@click.pass_context
def usage(ctx: click.Context, since: str, as_json: bool, as_csv: bool) -> None:
    """Which keys still call what: counts, last seen and faults per key and method.

    This is how a team sees which scripts still run and what they call, to plan their
    migration off XML-RPC.

    \b
    Examples:
      shim usage --since 7d
      shim usage --since 2026-11-01 --csv > usage.csv
    """
    if as_json and as_csv:
        raise CliError("choose one of --json and --csv")
    now = time.time()
    start = _since(since, now)
    with options.store(ctx) as store:
        rows = store.usage(start)
        moved = _migration(store, start, now)
    for row in rows:
        row["first_seen"] = options.iso(row["first_seen"])
        row["last_seen"] = options.iso(row["last_seen"])
    if as_json:
        options.echo_json({"since": options.iso(start), "rows": rows, "protocols": moved})
        return
    columns = [
        "key_id",
        "label",
        "account",
        "method",
        "table_name",
        "calls",
        "faults",
        "errors",
        "via_rest",
        "first_seen",
        "last_seen",
        "avg_ms",
    ]
    if as_csv:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([*columns, "fault_tags"])
        for row in rows:
            tags = ";".join(f"{k}={v}" for k, v in sorted(row["fault_tags"].items()))
            writer.writerow([*(row[c] for c in columns), tags])
        return
    if not rows:
        click.echo(f"no calls since {options.iso(start)}")
        return
    click.echo(f"calls since {options.iso(start)}")
    click.echo(f"{'key':<10} {'label':<20} {'method':<32} {'calls':>7} {'faults':>6}  last seen")
    for row in rows:
        label = (row["label"] or "-")[:20]
        method = (row["method"] or "-") + (f" {row['table_name']}" if row["table_name"] else "")
        click.echo(
            f"{row['key_id'] or '-':<10} {label:<20} {method[:32]:<32} "
            f"{row['calls']:>7} {row['faults']:>6}  {row['last_seen']}"
        )
    _echo_migration(moved)


def _migration(store: Any, start: float, now: float) -> list[dict[str, Any]]:
    from shim.rest import readiness as ready

    return ready.migration(_periods(start, now), store.usage)


def _echo_migration(moved: list[dict[str, Any]]) -> None:
    """Per key, the share of calls on REST v2 per period, when any key has moved at all."""
    if not any(p["rest_v2"] for key in moved for p in key["periods"]):
        return
    from shim.rest import readiness as ready

    click.echo("")
    for line in ready.migration_lines(moved):
        click.echo(line)


@click.command()
@options.since_option
@options.json_option
@click.option(
    "--survey",
    metavar="DIR",
    help="Instead: the share of a usage survey's apps that would keep working "
    "(fixtures/legacy_usage holds one).",
)
@click.pass_context
def readiness(ctx: click.Context, since: str, as_json: bool, survey: str | None) -> None:
    """Which scripts would keep working if Keap's XML-RPC API stopped today.

    Per key and method: calls, and whether keyshim can answer the method through REST v2
    (exact, approximate, no); per key and for the team, the share of recent calls that
    would keep working (docs/translation.md says what each translation does).

    \b
    Examples:
      shim readiness --since 7d
      shim readiness --json > readiness.json
      shim readiness --survey fixtures/legacy_usage
    """
    if survey is not None:
        from shim.cli.scan import survey_report

        return survey_report(survey, as_json)
    from shim.rest import readiness as ready

    now = time.time()
    start = _since(since, now)
    with options.store(ctx) as store:
        data = ready.report(store.usage(start))
        moved = _migration(store, start, now)
    if as_json:
        options.echo_json({"since": options.iso(start), **data, "protocols": moved})
        return
    click.echo(f"calls since {options.iso(start)}")
    for line in ready.lines(data):
        click.echo(line)
    _echo_migration(moved)


@click.command()
@options.json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Health of every account's credential and token chain.

    Exit status: 0 all ok, 1 any degraded, 2 any needs re-authorization.

    \b
    Example:
      shim status --json
    """
    from shim.rest.outages import WINDOW as OUTAGE_WINDOW
    from shim.rest.outages import advice as outage_advice
    from shim.rest.outages import xmlrpc_outages

    now = time.time()
    with options.store(ctx) as store:
        healths = account_healths(store, now)
        via_rest = _rest_answers(store.usage(now - 3600))
        outages = xmlrpc_outages(store.usage(now - OUTAGE_WINDOW))
        dropped = store.audit_dropped()
    for h in healths:
        h.facts["rest_answers_last_hour"] = via_rest.get(h.account, 0)
        if h.facts.get("route", "xmlrpc") == "xmlrpc" and outages.get(h.account):
            h.facts["xmlrpc_outages_last_day"] = outages[h.account]
    if as_json:
        options.echo_json(
            [
                {"account": h.account, "kind": h.kind, "state": h.state, **_iso_facts(h.facts)}
                for h in healths
            ]
        )
    else:
        if not healths:
            click.echo("no accounts yet")
        for h in healths:
            f = h.facts
            line = f"{h.account:<16} {h.kind:<12} {h.state:<13}"
            if "access_token_expires_at" in f:
                line += (
                    f" access token expires {options.iso(f['access_token_expires_at'])}, refresh "
                    f"token age {_age(f['refresh_token_age'])}, last refresh "
                    f"{options.iso(f['last_refresh_at']) or 'never'}"
                )
            quota = f.get("keap_quota")
            if quota:
                line += (
                    f"; Keap quota {quota.get('quota-available', '?')}/"
                    f"{quota.get('quota-limit', '?')} left, throttle "
                    f"{quota.get('throttle-available', '?')}/"
                    f"{quota.get('throttle-limit', '?')}"
                )
            if f.get("route", "xmlrpc") != "xmlrpc":
                what = "fallbacks to" if f["route"] == "auto" else "calls answered through"
                line += (
                    f"; route {f['route']}: {f['rest_answers_last_hour']} {what} REST v2 in "
                    "the last hour"
                )
            if f.get("xmlrpc_outages_last_day"):
                line += "; " + outage_advice(h.account, f["xmlrpc_outages_last_day"])
            if f.get("last_error"):
                line += f"; last error: {f['last_error']}"
            click.echo(line)
    if dropped:
        note = (
            f"audit: {dropped} call record(s) dropped so far: the buffer (SHIM_AUDIT_BUFFER) "
            "filled while the database refused writes"
        )
        # The JSON answer is the list of accounts; the note goes beside it, on stderr.
        click.echo(f"shim: warning: {note}" if as_json else note, err=as_json)
    ctx.exit(exit_code(healths))


def _rest_answers(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Calls answered through REST v2 per account (for an ``auto`` account: its fallbacks)."""
    out: dict[str, int] = {}
    for row in rows:
        if row.get("account"):
            out[row["account"]] = out.get(row["account"], 0) + int(row.get("via_rest") or 0)
    return out


def _iso_facts(facts: dict[str, Any]) -> dict[str, Any]:
    return {k: options.iso(v) if k.endswith("_at") else v for k, v in facts.items()}


def _age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds:.0f}s"


COMMANDS = [usage, readiness, status]
