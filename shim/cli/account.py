"""``shim account ...`` and ``shim refresh``: Keap accounts and their token chains."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, get_args
from urllib.parse import urlsplit

import click

from shim.cli import options
from shim.errors import CliError, ShimError
from shim.models import KEAP_REST_URL, Account, Route, TokenPair
from shim.oauth import authorize
from shim.oauth.token_policy import app_name_from_scope
from shim.serve import runtime
from shim.settings import Settings
from shim.store.protocol import Store, StoreConflict

ROUTES = get_args(Route)
#: Keap's Service Account Keys and Personal Access Tokens start with this (docs/keap.md).
SERVICE_KEY_PREFIX = "KeapAK-"
_OAUTH_ONLY = frozenset({"client_id", "client_secret", "token_url", "authorize_url"})


@click.group()
def account() -> None:
    """Keap accounts (one per Keap app) and their upstream credentials."""


def _account_json(a: Account, store: Store) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": a.name,
        "kind": a.kind,
        "client_id": a.client_id,
        "app_name": a.app_name,
        "xmlrpc_url": a.xmlrpc_url,
        "rest_url": a.rest_url,
        "token_url": a.token_url if a.kind == "oauth" else None,
        "authorize_url": a.authorize_url if a.kind == "oauth" else None,
        "route": a.route,
        "created": options.iso(a.created_at),
    }
    if a.kind == "oauth":
        chain = store.get_chain(a.name)
        out["tokens"] = (
            None
            if chain is None
            else {
                "state": chain.state,
                "access_token_expires": options.iso(chain.expires_at),
                "refresh_token_issued": options.iso(chain.refresh_issued_at),
                "generation": chain.generation,
            }
        )
    return out


@account.command("add")
@click.argument("name")
@click.option("--client-id", help="OAuth client id (Keap developer portal).")
@options.secret_option("--client-secret", "OAuth client secret.", envvar="SHIM_CLIENT_SECRET")
@options.secret_option(
    "--service-key",
    "Service Account Key or Personal Access Token (KeapAK-...).",
    envvar="SHIM_SERVICE_KEY",
)
@click.option("--xmlrpc-url", help="Override the OAuth XML-RPC endpoint.")
@click.option("--token-url", help="Override the token endpoint.")
@click.option("--authorize-url", help="Override the authorize page.")
@click.option(
    "--route",
    type=click.Choice(ROUTES),
    default="auto",
    show_default=True,
    help="xmlrpc: forward; rest: answer through REST v2; auto: REST v2 when XML-RPC is down.",
)
@click.option("--rest-url", help="Override the REST v2 base URL (…/crm/rest/v2).")
@click.pass_context
def account_add(
    ctx: click.Context,
    name: str,
    client_id: str | None,
    client_secret: str | None,
    service_key: str | None,
    xmlrpc_url: str | None,
    token_url: str | None,
    authorize_url: str | None,
    route: Route,
    rest_url: str | None,
) -> None:
    """Add a Keap account with an OAuth client or a service key.

    \b
    Examples:
      shim account add prod --client-id abc123 --client-secret s3cr3t
      shim account add stage --service-key KeapAK-xxxxxxxx --route auto
      shim account add prod --client-id abc123 --client-secret - < secret.txt
    """
    oauth = client_id is not None or client_secret is not None
    if oauth == (service_key is not None):
        raise CliError("give either --client-id and --client-secret, or --service-key")
    if oauth and not (client_id and client_secret):
        raise CliError("an OAuth account needs both --client-id and --client-secret")
    if service_key is not None and (token_url or authorize_url):
        raise CliError("--token-url and --authorize-url only apply to OAuth accounts")
    _check_name(name)
    for flag, url in (
        ("--xmlrpc-url", xmlrpc_url),
        ("--token-url", token_url),
        ("--authorize-url", authorize_url),
        ("--rest-url", rest_url),
    ):
        _check_url(flag, url)
    _check_service_key(service_key)
    defaults = Account(name=name, kind="oauth", created_at=0.0)
    acct = Account(
        name=name,
        kind="oauth" if oauth else "service_key",
        created_at=time.time(),
        client_id=client_id,
        client_secret=client_secret,
        service_key=service_key,
        xmlrpc_url=xmlrpc_url or defaults.xmlrpc_url,
        token_url=token_url or defaults.token_url,
        authorize_url=authorize_url or defaults.authorize_url,
        rest_url=rest_url or rest_url_beside(xmlrpc_url) or defaults.rest_url,
        route=route,
    )
    with options.store(ctx) as store:
        try:
            store.add_account(acct)
        except StoreConflict:
            raise CliError(f"account {name!r} already exists") from None
    click.echo(f"added {acct.kind} account {name!r}: XML-RPC at {acct.xmlrpc_url}")
    click.echo(f"REST v2 at {acct.rest_url}" + ("" if rest_url else " (change: --rest-url)"))
    if oauth:
        click.echo(
            f"next: shim account authorize {name}  (or shim account import-tokens {name} ...)"
        )


def rest_url_beside(xmlrpc_url: str | None) -> str | None:
    """The REST v2 base on the host of a non-Keap XML-RPC URL (a simulator, a test double):
    Keap serves both from one host, so an account pointed elsewhere must not keep Keap's."""
    if not xmlrpc_url:
        return None
    parts = urlsplit(xmlrpc_url)
    if not parts.scheme or not parts.netloc:
        return None
    prefix = parts.path.rstrip("/").removesuffix("/crm/xmlrpc/v1")
    return f"{parts.scheme}://{parts.netloc}{prefix}/crm/rest/v2"


def _check_url(flag: str, url: str | None) -> None:
    if url is not None and not url.startswith(("https://", "http://")):
        raise CliError(f"{flag} must be an http(s) URL")


def _check_service_key(key: str | None) -> None:
    """Keap's Service Account Keys and Personal Access Tokens read ``KeapAK-`` then the key."""
    if key is None:
        return
    body = key.removeprefix(SERVICE_KEY_PREFIX)
    if body == key or not body or not all(c.isalnum() or c in "-_." for c in body):
        raise CliError(
            f"--service-key does not look like a Keap Service Account Key or Personal Access "
            f"Token ({SERVICE_KEY_PREFIX}... from Keap: Settings, API)"
        )


@account.command("set")
@click.argument("name")
@click.option("--client-id", help="OAuth client id (OAuth accounts).")
@options.secret_option("--client-secret", "OAuth client secret (OAuth accounts).")
@options.secret_option("--service-key", "Service Account Key or PAT (service-key accounts).")
@click.option("--xmlrpc-url", help="The XML-RPC endpoint.")
@click.option("--token-url", help="The token endpoint (OAuth accounts).")
@click.option("--authorize-url", help="The authorize page (OAuth accounts).")
@click.option("--rest-url", help="The REST v2 base URL (…/crm/rest/v2).")
@click.option("--route", type=click.Choice(ROUTES), help="xmlrpc, rest or auto (see add).")
@options.json_option
@click.pass_context
def account_set(ctx: click.Context, /, name: str, as_json: bool, **given: str | None) -> None:
    """Change an account's credentials, URLs or route. Running servers pick it up within
    seconds. A new client id or secret keeps the token chain; re-authorize if Keap says the
    tokens belong to another client.

    \b
    Examples:
      shim account set prod --route auto         # REST v2 only while XML-RPC is down
      shim account set prod --client-secret -    # read the new secret from standard input
      shim account set stage --xmlrpc-url http://127.0.0.1:8765/crm/xmlrpc/v1 --json
    """
    changes = {k: v for k, v in given.items() if v is not None}
    if not changes:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise CliError(f"nothing to change: give one or more of {flags}")
    for col, value in changes.items():
        if col.endswith("_url"):
            _check_url("--" + col.replace("_", "-"), value)
    _check_service_key(changes.get("service_key"))
    if changes.get("client_id") == "" or changes.get("client_secret") == "":
        raise CliError("--client-id and --client-secret cannot be empty")
    with options.store(ctx) as store:
        acct = store.get_account(name)
        if acct is None:
            raise CliError(f"no account named {name!r} (see: shim account list)")
        wrong = _OAUTH_ONLY if acct.kind == "service_key" else {"service_key"}
        misplaced = sorted(set(changes) & wrong)
        if misplaced:
            flags = ", ".join("--" + c.replace("_", "-") for c in misplaced)
            kind = "a service-key" if acct.kind == "service_key" else "an OAuth"
            raise CliError(
                f"account {name!r} is {kind} account: {flags} does not apply "
                "(to change its kind, remove it and add it again)"
            )
        # A REST URL that followed the old XML-RPC host (or is still Keap's) follows the new.
        follows = acct.rest_url in (rest_url_beside(acct.xmlrpc_url), KEAP_REST_URL)
        if "xmlrpc_url" in changes and "rest_url" not in changes and follows:
            changes["rest_url"] = rest_url_beside(changes["xmlrpc_url"]) or acct.rest_url
        acct = store.update_account(name, **changes)
        shown = _account_json(acct, store)
    if as_json:
        options.echo_json(shown)
        return
    what = ", ".join(c.replace("_", " ") for c in changes)
    click.echo(f"account {name!r}: changed {what}; route {acct.route}, REST v2 at {acct.rest_url}")


@account.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@options.json_option
@click.pass_context
def account_remove(ctx: click.Context, name: str, yes: bool, as_json: bool) -> None:
    """Remove an account with its tokens and local keys (the usage history stays).

    Its refresh token is deleted, not revoked at Keap: to use the account again, add it and
    authorize (or import tokens) afresh. Scripts using its keys get [InvalidKey].

    \b
    Example:
      shim account remove stage --yes
    """
    with options.store(ctx) as store:
        if store.get_account(name) is None:
            raise CliError(f"no account named {name!r} (see: shim account list)")
        if not yes:
            click.confirm(
                f"Remove account {name!r}, its tokens and all its keys?", abort=True, err=True
            )
        removed_keys = store.remove_account(name)
    # A pair kept aside for it would otherwise wait for an account of the same name.
    runtime.open_recovery(options.settings(ctx)).remove(name)
    if as_json:
        options.echo_json({"name": name, "removed": True, "keys_removed": removed_keys})
        return
    click.echo(f"removed account {name!r} and {removed_keys} key(s)")


def _check_name(name: str) -> None:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise CliError("account names use letters, digits, '-', '_' and '.' (at most 64)")


def _oauth_account(store: Store, name: str) -> Account:
    acct = store.get_account(name)
    if acct is None:
        raise CliError(f"no account named {name!r} (see: shim account list)")
    if acct.kind != "oauth":
        raise CliError(f"account {name!r} uses a service key; it has no token chain")
    return acct


@account.command("import-tokens")
@click.argument("name")
@options.secret_option(
    "--access-token", "Current access token.", envvar="SHIM_ACCESS_TOKEN", required=True
)
@options.secret_option(
    "--refresh-token",
    "Current (unused) refresh token.",
    envvar="SHIM_REFRESH_TOKEN",
    required=True,
)
@click.option(
    "--expires-in",
    required=True,
    type=options.DURATION,
    help="Seconds (or 24h, 90m...) until the access token expires.",
)
@click.pass_context
def import_tokens(
    ctx: click.Context, name: str, access_token: str, refresh_token: str, expires_in: float
) -> None:
    """Store a token pair obtained elsewhere (e.g. from an old integration).

    The refresh token must not be used anywhere else afterwards: Keap refresh tokens are
    single-use, and keyshim will rotate it.

    \b
    Example:
      SHIM_ACCESS_TOKEN=AT SHIM_REFRESH_TOKEN=RT shim account import-tokens prod --expires-in 24h
    """
    if not access_token.strip() or not refresh_token.strip():
        raise CliError("--access-token and --refresh-token cannot be empty")
    if expires_in <= 0:
        raise CliError("--expires-in must be positive (the access token's remaining lifetime)")
    with options.store(ctx) as store:
        _oauth_account(store, name)
        now = time.time()
        chain = store.put_tokens(
            name, TokenPair(access_token, refresh_token, now + expires_in), now
        )
    click.echo(f"stored tokens for {name!r}; access token expires {options.iso(chain.expires_at)}")


@account.command("list")
@options.json_option
@click.pass_context
def account_list(ctx: click.Context, as_json: bool) -> None:
    """List accounts (no secrets are shown).

    \b
    Example:
      shim account list --json
    """
    with options.store(ctx) as store:
        rows = [_account_json(a, store) for a in store.list_accounts()]
    if as_json:
        options.echo_json(rows)
        return
    if not rows:
        click.echo("no accounts yet (shim account add NAME ...)")
    for r in rows:
        tokens = r.get("tokens")
        state = (
            "service key"
            if r["kind"] == "service_key"
            else (
                "no tokens"
                if tokens is None
                else f"{tokens['state']}, access token expires {tokens['access_token_expires']}"
            )
        )
        click.echo(
            f"{r['name']:<16} {r['kind']:<12} {state}  -> {r['xmlrpc_url']} (route {r['route']})"
        )


@account.command("authorize")
@click.argument("name")
@click.option(
    "--redirect-uri",
    default=None,
    help="Redirect URI registered for the OAuth client (default: "
    "http://localhost:8976/callback, or http://HOST:PORT/callback with --listen).",
)
@click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    help="Catch the redirect with a one-shot local listener instead of pasting it.",
)
@click.option(
    "--timeout",
    type=options.DURATION,
    default=600.0,
    show_default=True,
    help="How long to wait for the redirect.",
)
@click.pass_context
def account_authorize(
    ctx: click.Context, name: str, redirect_uri: str | None, listen: str | None, timeout: float
) -> None:
    """First authorization of an OAuth account, on a headless server.

    Prints Keap's authorize URL; open it in any browser and approve. Then either the one-shot
    listener catches the redirect (--listen), or paste the URL the browser was sent to (or just
    the code) here.

    \b
    Examples:
      shim account authorize prod                      # paste the redirect URL
      shim account authorize prod --listen 127.0.0.1:8976
    """
    settings = options.settings(ctx)
    with options.store(ctx) as store:
        acct = _oauth_account(store, name)
    state = authorize.new_state()
    address = authorize.parse_listen(listen) if listen else None
    if redirect_uri is None:
        redirect_uri = (
            f"http://{address[0]}:{address[1]}/callback" if address else authorize.DEFAULT_REDIRECT
        )
    assert acct.client_id is not None and acct.client_secret is not None
    url = authorize.authorize_url(acct.authorize_url, acct.client_id, redirect_uri, state)
    click.echo("Open this URL in a browser, sign in to Keap and approve:", err=True)
    click.echo(url)
    if address:
        click.echo(f"Waiting for the redirect on {listen} ...", err=True)
        redirect = authorize.listen_once(address[0], address[1], state, timeout)
    else:
        click.echo("Then paste the URL your browser was redirected to (or the code):", err=True)
        redirect = authorize.parse_redirect(sys.stdin.readline(), state)
    pair = asyncio.run(_exchange_code(settings, acct, redirect.code, redirect_uri))
    app_name = app_name_from_scope(pair.scope or redirect.scope)
    with options.store(ctx) as store:
        store.put_tokens(name, pair, time.time())
        if app_name:
            store.update_account(name, app_name=app_name)
    click.echo(
        f"authorized {name!r}"
        + (f" for Keap app {app_name}" if app_name else "")
        + f"; access token expires {options.iso(pair.expires_at)}"
    )


@click.command()
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Refresh every OAuth account now.")
@click.option(
    "--due",
    is_flag=True,
    help="Refresh only accounts that are due (ahead of expiry or idle too long).",
)
@click.pass_context
def refresh(ctx: click.Context, name: str | None, all_: bool, due: bool) -> None:
    """Refresh token chains now, for cron when `shim serve` is not running.

    Uses the same lock and journal as the server, so it is safe to run beside it.

    \b
    Examples:
      shim refresh prod
      shim refresh --due          # e.g. hourly from cron
    """
    if sum(bool(x) for x in (name, all_, due)) != 1:
        raise CliError("give exactly one of NAME, --all or --due")
    settings = options.settings(ctx)
    with options.store(ctx) as store:
        accounts = [a for a in store.list_accounts() if a.kind == "oauth"]
        if name:
            accounts = [_oauth_account(store, name)]
        failed = asyncio.run(_refresh(settings, store, accounts, forced=not due))
    if failed:
        raise CliError(f"refresh failed for: {', '.join(failed)}")


async def _refresh(
    settings: Settings, store: Store, accounts: list[Account], *, forced: bool
) -> list[str]:
    failed = []
    async with runtime.token_chains(settings, store) as chains:
        for acct in accounts:
            before = store.chain_generation(acct.name)
            try:
                chain = await chains.refresh(
                    acct, seen_generation=None, reason="forced" if forced else "scheduled"
                )
            except ShimError as exc:
                click.echo(f"{acct.name}: FAILED: {exc.message}", err=True)
                failed.append(acct.name)
                continue
            what = "refreshed" if chain.generation != before else "not due"
            click.echo(f"{acct.name}: {what}; access token expires {options.iso(chain.expires_at)}")
    return failed


async def _exchange_code(
    settings: Settings, acct: Account, code: str, redirect_uri: str
) -> TokenPair:
    upstream = runtime.token_client(settings)
    try:
        return await authorize.exchange_code(upstream, acct, code, redirect_uri, time.time())
    finally:
        await upstream.aclose()


COMMANDS = [account, refresh]
