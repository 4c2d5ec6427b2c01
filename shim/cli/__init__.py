"""The ``shim`` command (click): the root group and ``main``; one module per command group.

Each command is a thin shell over the library: it parses options, calls one or two library
functions and prints. User mistakes become one line on stderr and a non-zero exit
(``CliError`` → click's ``ClickException``), never a traceback. ``--json`` output never
carries a secret, except the one-time output of ``key issue`` and ``key rotate``.

Modules:

  options.py   shared option decorators (--db, --json, --since, ACCOUNT), ctx helpers
  admin.py     init, rotate-master-key, admin set-password
  admin_page.py  the --admin flags of serve
  account.py   account add/set/remove/list/import-tokens/authorize, refresh
  key.py       key issue/rotate/list/revoke
  usage.py     usage, readiness, status
  actionset.py action-set ids mapped to REST v2 steps
  scan.py      legacy calls found in script sources
  serve.py     serve
  store.py     store copy
  tls.py       tls init
  demo_sim.py  simulator, demo
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

import click

from shim.cli import (
    account,
    actionset,
    admin,
    demo_sim,
    key,
    options,
    scan,
    serve,
    store,
    tls,
    usage,
)
from shim.cli.options import db_option
from shim.errors import CliError, ShimError
from shim.settings import Settings
from shim.store.secrets import DecryptError
from shim.store.sqlite import explain_error

__all__ = ["cli", "main"]


class ShimGroup(click.Group):
    """Turns every user mistake into one clear line on stderr instead of a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        standalone = kwargs.pop("standalone_mode", True)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            if not standalone:
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `shim`: just the help
                click.echo(exc.format_message(), err=True)
                sys.exit(exc.exit_code)
            click.echo(f"shim: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        if standalone:
            sys.exit(result if isinstance(result, int) else 0)
        return result

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CliError, ShimError, ValueError) as exc:
            message = exc.message if isinstance(exc, ShimError) else str(exc)
            raise click.ClickException(message) from None
        except sqlite3.Error as exc:
            db = options.settings(ctx).db if isinstance(ctx.obj, Settings) else "(unknown)"
            raise click.ClickException(explain_error(exc, db)) from None
        except DecryptError:
            raise click.ClickException(
                "the master key does not open this database's secrets "
                "(wrong SHIM_SECRET_KEY or key file?)"
            ) from None


@click.group(cls=ShimGroup)
@db_option
@click.version_option(package_name="keyshim")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """keyshim: keeps legacy Infusionsoft/Keap XML-RPC scripts running on Keap OAuth.

    \b
    Quick start:
      shim init
      shim account add prod --client-id ID --client-secret SECRET
      shim account authorize prod        # or: shim account import-tokens prod ...
      shim key issue prod --label "nightly export script"
      shim serve
    """
    try:
        ctx.obj = Settings.from_env(db=db or None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


for _module in (admin, account, key, usage, actionset, scan, serve, store, tls, demo_sim):
    for _command in _module.COMMANDS:
        options.add_db_option(_command)
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="shim")
