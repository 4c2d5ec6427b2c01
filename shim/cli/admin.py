"""``shim init`` and ``shim rotate-master-key``: the database and the master key."""

from __future__ import annotations

import click

from shim.cli import options
from shim.errors import CliError
from shim.serve.runtime import init_files
from shim.store import master_key


@click.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the database (or a PostgreSQL database's tables) and the master key file.

    The key file and a database file are mode 0600. Every host sharing a PostgreSQL database
    needs the same master key: copy the key file, or set SHIM_SECRET_KEY on each.

    \b
    Examples:
      shim --db /var/lib/keyshim/keyshim.db init
      PGPASSWORD=... shim --db postgresql://keyshim@db.internal:5432/keyshim init
    """
    settings = options.settings(ctx)
    db, created = init_files(settings)
    click.echo(f"database: {db}")
    if settings.secret_key:
        click.echo("master key: from SHIM_SECRET_KEY")
    else:
        state = "created" if created else "exists"
        click.echo(
            f"master key: {settings.key_file} ({state}; keep it apart from backups of the db)"
        )


@click.command("rotate-master-key")
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the new key when the current one comes from SHIM_SECRET_KEY.",
)
@click.pass_context
def rotate_master_key(ctx: click.Context, new_key_file: str | None) -> None:
    """Re-encrypt every secret in the database under a new master key.

    The new key is written (mode 0600) before the database changes, and the database is
    rewritten in one transaction, so an interruption never leaves secrets that no key opens.
    Restart every `shim serve` afterwards: running processes still hold the old key.

    \b
    Examples:
      shim rotate-master-key
      SHIM_SECRET_KEY=... shim rotate-master-key --new-key-file /etc/keyshim/new.key
    """
    settings = options.settings(ctx)
    target = master_key.rotation_target(settings, new_key_file)
    with options.store(ctx) as store:
        done = master_key.rotate(
            settings, store, target, progress=lambda step: click.echo(step, err=True)
        )
    if not done.installed:
        click.echo(
            f"3/3 re-encrypted {done.count} secrets; set SHIM_SECRET_KEY to the contents of "
            f"{done.key_path} and restart keyshim"
        )
        return
    click.echo(
        f"3/3 re-encrypted {done.count} secrets; {done.key_path} holds the new key. "
        "Restart every shim serve."
    )


@click.group()
def admin() -> None:
    """The admin page of `shim serve --admin`."""


@admin.command("set-password")
@click.password_option(
    "--password", help="The new password; better left out, to be prompted for (a flag shows in ps)."
)
@click.pass_context
def set_password(ctx: click.Context, password: str) -> None:
    """Set the admin page's password (kept only as a scrypt hash); ends every admin session.

    \b
    Example:
      shim admin set-password
    """
    from shim.serve.admin import passwords

    why = passwords.check_strength(password)
    if why:
        raise CliError(why)
    with options.store(ctx) as store:
        store.set_admin_password(passwords.hash_password(password))
    click.echo("admin password set; every admin session so far has ended")


COMMANDS = [init, rotate_master_key, admin]
