"""``shim key ...``: local legacy-style keys (issuing and rotating live in shim.access.issuing)."""

from __future__ import annotations

import time
from typing import Any

import click

from shim.access import issuing, keys, legacy_methods
from shim.access.rate_policy import Rate
from shim.cli import options
from shim.errors import CliError
from shim.models import KeyRecord


@click.group()
def key() -> None:
    """Local legacy-style keys that scripts send instead of the old Keap API key."""


def _key_json(k: KeyRecord, now: float) -> dict[str, Any]:
    return {
        "id": k.id,
        "account": k.account,
        "label": k.label,
        "prefix": k.prefix,
        "created": options.iso(k.created_at),
        "expires": options.iso(k.expires_at),
        "revoked": options.iso(k.revoked_at),
        "last_used": options.iso(k.last_used_at),
        "allow": list(k.allow),
        "rate": None if k.rate_per_min is None else str(Rate(k.rate_per_min, k.rate_window or 60)),
        "rate_per_min": k.rate_per_min if (k.rate_window or 60) == 60 else None,
        "state": k.state(now),
    }


def _show_issued(issued: keys.IssuedKey, record: KeyRecord, now: float, as_json: bool) -> None:
    if as_json:
        options.echo_json({**_key_json(record, now), "key": issued.text})
        return
    click.echo(f"key id:  {record.id}")
    click.echo(f"key:     {issued.text}")
    click.echo(
        "This is the only time the key is shown. Put it where the script's old Keap API key was."
    )


@key.command("issue")
@options.account_argument
@click.option("--label", required=True, help="Who or what uses the key (shown in listings).")
@click.option("--expires-in", type=options.DURATION, help="Lifetime, e.g. 90d; default: no expiry.")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    help="Method glob the key may call (repeatable), e.g. 'ContactService.*'.",
)
@click.option(
    "--rate",
    default=None,
    help="Most calls for this key per unit: N/s, N/min, N/h or N/day (e.g. 10/h).",
)
@click.option("--json", "as_json", is_flag=True, help="Print an object with id and key.")
@click.pass_context
def key_issue(
    ctx: click.Context,
    account_name: str,
    label: str,
    expires_in: float | None,
    allow: tuple[str, ...],
    rate: str | None,
    as_json: bool,
) -> None:
    """Issue a key for ACCOUNT. The key is shown once; only its keyed hash is stored.

    \b
    Examples:
      shim key issue prod --label "WordPress order sync"
      shim key issue prod --label "reports" --expires-in 90d --allow 'DataService.query'
      shim key issue prod --label "sync" --allow 'ContactService.*' --rate 120/min
    """
    for pattern, closest in legacy_methods.unknown_patterns(allow):
        hint = f"; did you mean {closest!r}?" if closest else ""
        click.echo(f"warning: --allow {pattern!r} matches no legacy Keap method{hint}", err=True)
    now = time.time()
    with options.store(ctx) as store:
        issued, record = issuing.issue(
            store,
            account_name,
            label=label,
            now=now,
            expires_in=expires_in,
            allow=allow,
            rate=rate,
        )
    _show_issued(issued, record, now, as_json)


@key.command("rotate")
@click.argument("key_id")
@click.option(
    "--overlap",
    type=options.DURATION,
    default=0.0,
    show_default=True,
    help="How long the old key keeps working (e.g. 7d) while scripts switch over.",
)
@click.option("--json", "as_json", is_flag=True, help="Print an object with id and key.")
@click.pass_context
def key_rotate(ctx: click.Context, key_id: str, overlap: float, as_json: bool) -> None:
    """Issue a successor with the same account, label, allowlist and rate; retire the old key
    after --overlap.

    \b
    Example:
      shim key rotate 7fQ2kd9XbA --overlap 7d
    """
    now = time.time()
    key_id = keys.id_given(key_id)
    with options.store(ctx) as store:
        issued, record = issuing.rotate(store, key_id, now=now, overlap=overlap)
    if not as_json:
        when = "now" if overlap == 0 else f"at {options.iso(now + overlap)}"
        click.echo(f"old key {key_id} stops working {when}")
    _show_issued(issued, record, now, as_json)


@key.command("list")
@click.option("--account", "account_name", help="Only keys of this account.")
@options.json_option
@click.pass_context
def key_list(ctx: click.Context, account_name: str | None, as_json: bool) -> None:
    """List keys: id, label, non-secret prefix, dates and state.

    \b
    Example:
      shim key list --account prod --json
    """
    now = time.time()
    with options.store(ctx) as store:
        rows = [_key_json(k, now) for k in store.list_keys(account_name)]
    if as_json:
        options.echo_json(rows)
        return
    if not rows:
        click.echo("no keys (shim key issue ACCOUNT --label TEXT)")
    for r in rows:
        click.echo(
            f"{r['id']}  {r['account']:<10} {r['state']:<8} {r['prefix']}…  "
            f"last used {r['last_used'] or 'never'}  {r['label']}"
        )


@key.command("revoke")
@click.argument("key_id")
@click.pass_context
def key_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key (by id, or the shk_… prefix key list shows); the very next call with it is
    refused, in every process.

    \b
    Example:
      shim key revoke 7fQ2kd9XbA
    """
    key_id = keys.id_given(key_id)
    with options.store(ctx) as store:
        if not store.revoke_key(key_id, time.time()):
            raise CliError(f"no key with id {key_id!r} (see: shim key list)")
    click.echo(f"revoked {key_id}")


COMMANDS = [key]
