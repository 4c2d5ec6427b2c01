"""``shim tls init``: a local CA and server certificate for scripts that hard-code HTTPS."""

from __future__ import annotations

import click

from shim.cli import options


@click.group()
def tls() -> None:
    """HTTPS for scripts that hard-code https://APP.infusionsoft.com/api/xmlrpc."""


@tls.command("init")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    required=True,
    metavar="NAME",
    help="Name the scripts call, e.g. ab123.infusionsoft.com (repeatable; give every one).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the files go (default: tls/ next to the database).",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=825,
    show_default=True,
    help="Server certificate lifetime (Apple clients accept at most 825).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=443,
    show_default=True,
    help="Port shim serve will listen on (only shapes the printed instructions).",
)
@click.pass_context
def tls_init(
    ctx: click.Context, hosts: tuple[str, ...], directory: str | None, days: int, port: int
) -> None:
    """Make a local CA and a server certificate for the app names, and say how to use them.

    Writes ca.pem, ca-key.pem (0600), server.pem and server-key.pem (0600). An existing CA in
    the directory is reused, so running it again with more names re-issues only server.pem;
    give every name each time. Then prints how to trust the CA, point the names at keyshim in
    /etc/hosts and run shim serve on 443.

    \b
    Example:
      shim tls init --host ab123.infusionsoft.com --host cd456.infusionsoft.com
    """
    from shim.tls.files import default_dir, init_tls, instructions, summary

    files = init_tls(directory or default_dir(options.settings(ctx).local_dir), list(hosts), days)
    click.echo(summary(files))
    click.echo()
    click.echo(instructions(files, files.hosts, port))


COMMANDS = [tls]
