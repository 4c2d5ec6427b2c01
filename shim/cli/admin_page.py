"""The ``--admin*`` flags of ``shim serve``, kept apart so serve.py only gains two lines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from shim.errors import CliError
from shim.serve.admin.app import check_exposure
from shim.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def admin_options(fn: F) -> F:
    """Add ``--admin``, ``--admin-port``, ``--admin-host`` and ``--admin-insecure``."""
    for option in reversed(
        [
            click.option(
                "--admin",
                is_flag=True,
                default=None,
                help="Serve the admin page under /admin (SHIM_ADMIN; off by default). "
                "Set its password first: shim admin set-password.",
            ),
            click.option(
                "--admin-port",
                type=click.IntRange(0, 65535),
                default=None,
                help="Serve the admin page on this port instead (SHIM_ADMIN_PORT).",
            ),
            click.option(
                "--admin-host",
                default=None,
                help="Who may reach the admin page: an address other than loopback needs TLS "
                "or --admin-insecure (SHIM_ADMIN_HOST, default 127.0.0.1).",
            ),
            click.option(
                "--admin-insecure",
                is_flag=True,
                default=None,
                help="Allow a non-loopback --admin-host without TLS (SHIM_ADMIN_INSECURE).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def check(settings: Settings) -> None:
    """Refuse an admin page exposed beyond this machine without TLS (see check_exposure)."""
    why = check_exposure(settings)
    if why:
        raise CliError(why)
