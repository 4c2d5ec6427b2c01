"""``shim actionset``: map a legacy action-set id to REST v2 steps, per account.

REST v2 cannot run a legacy action set (``ContactService.runActionSequence``). When the
operator knows what action set N does, ``shim actionset map`` tells keyshim which REST steps
stand in for it; the translation (shim/rest/actionsets.py) runs them in the order given:
tags applied, tags removed, goals achieved, notes added.
"""

from __future__ import annotations

import json
from typing import Any

import click

from shim.cli import options
from shim.errors import CliError
from shim.rest.actionsets import describe


def _goal(text: str) -> dict[str, Any]:
    integration, sep, call_name = text.partition(":")
    if not sep or not integration or not call_name:
        raise CliError(f"--achieve-goal wants INTEGRATION:CALL_NAME, not {text!r}")
    return {"op": "achieve_goal", "integration": integration, "call_name": call_name}


@click.group("actionset")
def actionset() -> None:
    """Map legacy action sets (runActionSequence) to REST v2 steps."""


@actionset.command("map")
@click.argument("account")
@click.argument("set_id", type=click.IntRange(min=1))
@click.option("--apply-tag", type=int, multiple=True, help="Tag id to apply (repeatable).")
@click.option("--remove-tag", type=int, multiple=True, help="Tag id to remove (repeatable).")
@click.option("--achieve-goal", multiple=True, help="INTEGRATION:CALL_NAME (repeatable).")
@click.option("--add-note", multiple=True, help="A note with this title (repeatable).")
@click.pass_context
def map_set(
    ctx: click.Context,
    account: str,
    set_id: int,
    apply_tag: tuple[int, ...],
    remove_tag: tuple[int, ...],
    achieve_goal: tuple[str, ...],
    add_note: tuple[str, ...],
) -> None:
    """Run these REST steps when a script runs action set SET_ID on ACCOUNT.

    Steps run in this order: tags applied, tags removed, goals, notes. Mapping an id again
    replaces its steps.

    \b
    Example:
      shim actionset map prod 12 --apply-tag 100 --remove-tag 101
    """
    steps: list[dict[str, Any]] = [{"op": "apply_tag", "tag": t} for t in apply_tag]
    steps += [{"op": "remove_tag", "tag": t} for t in remove_tag]
    steps += [_goal(g) for g in achieve_goal]
    steps += [{"op": "add_note", "title": title} for title in add_note]
    if not steps:
        raise CliError(
            "give at least one step: --apply-tag, --remove-tag, --achieve-goal, --add-note"
        )
    with options.store(ctx) as store:
        if store.get_account(account) is None:
            raise CliError(f"no account {account!r}")
        store.put_action_set(account, set_id, steps)
    click.echo(f"action set {set_id} on {account}: " + "; ".join(describe(s) for s in steps))


@actionset.command("list")
@click.argument("account")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_sets(ctx: click.Context, account: str, as_json: bool) -> None:
    """The action sets mapped for ACCOUNT.

    \b
    Example:
      shim actionset list prod --json
    """
    with options.store(ctx) as store:
        sets = store.list_action_sets(account)
    if as_json:
        click.echo(json.dumps({str(k): v for k, v in sets.items()}, indent=2))
        return
    if not sets:
        click.echo(f"no action sets mapped for {account}")
    for set_id, steps in sets.items():
        click.echo(f"{set_id}: " + "; ".join(describe(s) for s in steps))


@actionset.command("unmap")
@click.argument("account")
@click.argument("set_id", type=int)
@click.pass_context
def unmap(ctx: click.Context, account: str, set_id: int) -> None:
    """Forget action set SET_ID's steps (scripts running it get a fault again).

    \b
    Example:
      shim actionset unmap prod 12
    """
    with options.store(ctx) as store:
        if not store.delete_action_set(account, set_id):
            raise CliError(f"action set {set_id} is not mapped for {account}")
    click.echo(f"action set {set_id} on {account}: unmapped")


COMMANDS = [actionset]
