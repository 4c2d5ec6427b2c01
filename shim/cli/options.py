"""What the command groups share: option decorators, parameter types and the ``ctx`` helpers.

Like sqlite-utils' shared options: one decorator per recurring option, so every command spells
``--db``, ``--json``, ``--since`` and the ACCOUNT argument the same way, and a new store kind
(``--db`` with another scheme) changes one place.
"""

from __future__ import annotations

import errno
import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from shim.errors import CliError
from shim.serve.runtime import open_store
from shim.settings import Settings, parse_duration
from shim.store.protocol import Store

F = TypeVar("F", bound=Callable[..., Any])


class Duration(click.ParamType):  # type: ignore[type-arg]
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float | int):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


def check_port(host: str, port: int) -> None:
    """Fail in one line, before any startup work, when ``host:port`` cannot be bound."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CliError(f"cannot bind {host}:{port}: {exc.strerror}; check --host") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CliError(
                    f"port {port} on {host} is already in use; pick another with --port "
                    "(or stop what is listening there)"
                ) from None
            raise CliError(f"cannot bind {host}:{port}: {exc.strerror}") from None


def db_option(fn: F) -> F:
    """``--db``: where keyshim keeps its state (env ``SHIM_DB``)."""
    return click.option(
        "--db",
        envvar="SHIM_DB",
        metavar="PATH_OR_URL",
        help="SQLite database file, or postgresql://USER@HOST:PORT/DB shared by several hosts "
        "(env SHIM_DB; default: keyshim.db in your data directory). Give a server's password "
        "through PGPASSWORD or ~/.pgpass rather than in the URL.",
    )(fn)


def _secret_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``-`` reads the secret from one line of standard input (once per command)."""
    if value != "-":
        return value
    if ctx.meta.get("shim.stdin_secret"):
        raise click.BadParameter("only one secret can be read from standard input", ctx, param)
    ctx.meta["shim.stdin_secret"] = param.name
    line = click.get_text_stream("stdin").readline().rstrip("\r\n")
    if not line:
        raise click.BadParameter("expected the secret on standard input, got nothing", ctx, param)
    return line


def secret_option(
    flag: str, help: str, *, envvar: str | None = None, **kw: Any
) -> Callable[[F], F]:
    """A secret: on the command line it shows in ``ps`` and shell history, so ``-`` reads it
    from standard input and ``envvar`` (a ``SHIM_*`` name) is read when the flag is absent."""
    where = f" Use - to read it from standard input{f' (or set {envvar})' if envvar else ''}."

    def decorate(fn: F) -> F:
        return click.option(flag, envvar=envvar, callback=_secret_value, help=help + where, **kw)(
            fn
        )

    return decorate


def _sub_db(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        try:
            ctx.find_root().obj = Settings.from_env(db=value)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None


def add_db_option(command: click.Command) -> None:
    """Let ``--db`` follow the subcommand too (``shim init --db X``), on every command."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_db_option(sub)
        return
    if any(p.name == "db" for p in command.params):
        return
    command.params.append(
        click.Option(
            ["--db"],
            expose_value=False,
            is_eager=True,
            callback=_sub_db,
            metavar="PATH_OR_URL",
            help="Database file or postgresql:// URL (as shim --db; env SHIM_DB).",
        )
    )


def json_option(fn: F) -> F:
    """``--json``: machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(fn)


def since_option(fn: F) -> F:
    """``--since``: the start of a report window, a duration ago or a UTC date."""
    return click.option(
        "--since",
        default="30d",
        show_default=True,
        help="A duration ago (7d, 12h) or a UTC date (2026-11-01).",
    )(fn)


def account_argument(fn: F) -> F:
    """The ACCOUNT a command acts on, by name."""
    return click.argument("account_name", metavar="ACCOUNT")(fn)


def settings(ctx: click.Context) -> Settings:
    """The settings the root group read from ``SHIM_*`` and ``--db``."""
    obj = ctx.find_root().obj
    assert isinstance(obj, Settings)
    return obj


@contextmanager
def store(ctx: click.Context) -> Iterator[Store]:
    """The store for this command, closed when the command is done."""
    opened = open_store(settings(ctx))
    try:
        yield opened
    finally:
        opened.close()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))
