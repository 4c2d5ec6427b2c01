"""``shim store copy``: move an installation between SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import click

from shim.cli import options
from shim.errors import CliError
from shim.oauth.chains import make_owner
from shim.serve.runtime import describe_db, open_copy_target, open_store
from shim.store.copy import copy_store


@click.group("store")
def store_group() -> None:
    """The database itself: move an installation between SQLite and PostgreSQL."""


@store_group.command("copy")
@click.option("--from", "source", required=True, metavar="PATH_OR_URL", help="Copy from here.")
@click.option("--to", "target", required=True, metavar="PATH_OR_URL", help="Copy into here.")
@click.pass_context
def store_copy(ctx: click.Context, source: str, target: str) -> None:
    """Copy an installation (accounts, token chains, keys, server secrets, audit) to another
    database, SQLite or PostgreSQL, either way. Secrets stay sealed under the same master key
    and no chain needs re-authorizing. Refuses while a server runs on the source.

    \b
    Examples:
      shim store copy --from /var/lib/keyshim/keyshim.db --to postgresql://keyshim@db/keyshim
      shim store copy --from postgresql://keyshim@db/keyshim --to ./keyshim.db
    """
    settings = options.settings(ctx)
    if source == target:
        raise CliError("--from and --to are the same database")
    src = open_store(replace(settings, db=source), listen=False)
    try:
        dst = open_copy_target(replace(settings, db=target))
        try:
            counts = copy_store(src, dst, make_owner())
        finally:
            dst.close()
    finally:
        src.close()
    summary = ", ".join(f"{n} {table}" for table, n in counts.items())
    click.echo(f"copied {describe_db(source)} -> {describe_db(target)}: {summary}")
    click.echo(f"next: point SHIM_DB at {describe_db(target)} and start shim serve")


COMMANDS = [store_group]
