"""``shim simulator`` and ``shim demo``: Keap's stand-in, and a full round trip on loopback."""

from __future__ import annotations

import sys

import click

from shim.cli import options


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8780, show_default=True, help="0 picks a free port.")
@click.option(
    "--access-token-lifetime",
    type=options.DURATION,
    default=86400.0,
    show_default=True,
    help="Seconds an access token lives (Keap: 24h).",
)
@click.option("--throttle/--no-throttle", default=False, help="Enforce Keap's rate limits.")
def simulator(host: str, port: int, access_token_lifetime: float, throttle: bool) -> None:
    """Run the bundled Keap simulator (token endpoint, OAuth XML-RPC) for trying keyshim.

    Prints an OAuth client, an initial token pair and a service key to point an account at.

    \b
    Example:
      shim simulator --port 8780 --access-token-lifetime 60
    """
    from shim.simulator import SimConfig, serve_simulator

    options.check_port(host, port)  # before fresh credentials are printed
    config = SimConfig(access_token_lifetime=access_token_lifetime, throttle=throttle)
    serve_simulator(host, port, config)


@click.command()
@click.option("--keep", is_flag=True, help="Keep the temporary directory for a look around.")
def demo(keep: bool) -> None:
    """A full round trip: simulator + keyshim + an old-style xmlrpc.client script.

    Needs no credentials and no network beyond loopback.

    \b
    Example:
      shim demo
    """
    from shim.demo import run_demo

    sys.exit(run_demo(keep=keep))


COMMANDS = [simulator, demo]
