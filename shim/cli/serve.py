"""``shim serve``: options → settings; the server itself is built in shim.serve.runtime."""

from __future__ import annotations

import os

import click

from shim.cli import admin_page, options
from shim.serve import runtime
from shim.settings import Settings
from shim.tls.files import check_server_files


@click.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1; env SHIM_HOST).")
@click.option("--port", type=int, default=None, help="Port (default 8080; env SHIM_PORT).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes sharing the port (env SHIM_WORKERS).",
)
@click.option(
    "--inline-margin",
    type=options.DURATION,
    default=None,
    help="Refresh before forwarding when less than this is left (SHIM_INLINE_MARGIN).",
)
@click.option(
    "--refresh-margin",
    type=options.DURATION,
    default=None,
    help="Background refresh when less than this is left (SHIM_REFRESH_MARGIN, 6h).",
)
@click.option(
    "--keepalive-age",
    type=options.DURATION,
    default=None,
    help="Refresh chains whose refresh token is older than this (SHIM_KEEPALIVE_AGE).",
)
@click.option(
    "--refresh-retries",
    type=click.IntRange(0, 20),
    default=None,
    help="Retries of transient token-endpoint failures (SHIM_REFRESH_RETRIES, 3).",
)
@click.option(
    "--scheduler-interval",
    type=options.DURATION,
    default=None,
    help="How often the background refresher looks (SHIM_SCHEDULER_INTERVAL, 60s).",
)
@click.option(
    "--alert-webhook",
    default=None,
    metavar="URL",
    help="POST JSON here when a chain degrades, dies or recovers (SHIM_ALERT_WEBHOOK).",
)
@click.option(
    "--log-level",
    default=None,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
@click.option(
    "--certfile",
    default=None,
    metavar="FILE",
    help="Serve HTTPS with this PEM certificate (SHIM_CERTFILE; see shim tls init).",
)
@click.option(
    "--keyfile",
    default=None,
    metavar="FILE",
    help="The certificate's PEM private key (SHIM_KEYFILE); with --certfile.",
)
@admin_page.admin_options
@click.pass_context
def serve(
    ctx: click.Context,
    /,
    host: str | None,
    port: int | None,
    workers: int | None,
    inline_margin: float | None,
    refresh_margin: float | None,
    keepalive_age: float | None,
    refresh_retries: int | None,
    scheduler_interval: float | None,
    alert_webhook: str | None,
    log_level: str | None,
    certfile: str | None,
    keyfile: str | None,
    **admin: object,
) -> None:
    """Serve the XML-RPC endpoint (POST /api/xmlrpc) and GET /healthz.

    With --certfile and --keyfile it serves HTTPS, e.g. on 443 for scripts that hard-code
    https://APP.infusionsoft.com/api/xmlrpc (see shim tls init).

    \b
    Examples:
      shim serve --port 8080 --workers 2
      shim serve --host 127.0.0.1 --port 443 --certfile tls/server.pem --keyfile tls/server-key.pem
    """
    settings = Settings.from_env(
        os.environ,
        db=options.settings(ctx).db,
        host=host,
        port=port,
        workers=workers,
        inline_margin=inline_margin,
        refresh_margin=refresh_margin,
        keepalive_age=keepalive_age,
        refresh_retries=refresh_retries,
        scheduler_interval=scheduler_interval,
        alert_webhook=alert_webhook,
        log_level=log_level,
        certfile=certfile,
        keyfile=keyfile,
        **admin,
    )
    admin_page.check(settings)
    options.check_port(settings.host, settings.port)
    check_server_files(settings.certfile or None, settings.keyfile or None)
    runtime.run_server(settings, announce=lambda line: click.echo(line, err=True))


COMMANDS = [serve]
