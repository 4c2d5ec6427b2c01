"""The ``shim`` command: a thin click layer over the library.

User mistakes become one line on stderr and a non-zero exit (``CliError`` → click's
``UsageError``/``ClickException``), never a traceback. ``--json`` output never carries a secret,
except the one-time output of ``key issue``.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from shim.access import keys
from shim.access.rate_policy import parse_rate
from shim.errors import CliError, ShimError, TokenEndpointError
from shim.models import Account, KeyRecord, Route, TokenPair
from shim.oauth.alerts import Alerter
from shim.oauth.token_policy import app_name_from_scope
from shim.serve.runtime import describe_db, init_files, open_store
from shim.settings import Settings, parse_duration
from shim.store.protocol import Store, StoreConflict
from shim.store.secrets import DecryptError, SecretBox, encode_master_key, generate_master_key

F = TypeVar("F", bound=Callable[..., Any])
ROUTES = get_args(Route)


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
        except DecryptError:
            raise click.ClickException(
                "the master key does not open this database's secrets "
                "(wrong SHIM_SECRET_KEY or key file?)"
            ) from None


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    assert isinstance(obj, Settings)
    return obj


@contextmanager
def _store(ctx: click.Context) -> Iterator[Store]:
    store = open_store(_settings(ctx))
    try:
        yield store
    finally:
        store.close()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@click.group(cls=ShimGroup)
@click.option(
    "--db",
    envvar="SHIM_DB",
    metavar="PATH_OR_URL",
    help="SQLite database file, or postgresql://USER@HOST:PORT/DB shared by several hosts "
    "(env SHIM_DB; default: keyshim.db in your data directory). Give a server's password "
    "through PGPASSWORD or ~/.pgpass rather than in the URL.",
)
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


# -- init ---------------------------------------------------------------------------------
@cli.command()
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
    settings = _settings(ctx)
    db, created = init_files(settings)
    click.echo(f"database: {db}")
    if settings.secret_key:
        click.echo("master key: from SHIM_SECRET_KEY")
    else:
        state = "created" if created else "exists"
        click.echo(
            f"master key: {settings.key_file} ({state}; keep it apart from backups of the db)"
        )


# -- accounts -----------------------------------------------------------------------------
@cli.group()
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
        "created": _iso(a.created_at),
    }
    if a.kind == "oauth":
        chain = store.get_chain(a.name)
        out["tokens"] = (
            None
            if chain is None
            else {
                "state": chain.state,
                "access_token_expires": _iso(chain.expires_at),
                "refresh_token_issued": _iso(chain.refresh_issued_at),
                "generation": chain.generation,
            }
        )
    return out


@account.command("add")
@click.argument("name")
@click.option("--client-id", help="OAuth client id (Keap developer portal).")
@click.option("--client-secret", help="OAuth client secret.")
@click.option("--service-key", help="Service Account Key or Personal Access Token (KeapAK-...).")
@click.option("--xmlrpc-url", help="Override the OAuth XML-RPC endpoint.")
@click.option("--token-url", help="Override the token endpoint.")
@click.option("--authorize-url", help="Override the authorize page.")
@click.option(
    "--route",
    type=click.Choice(ROUTES),
    default="xmlrpc",
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
        rest_url=rest_url or defaults.rest_url,
        route=route,
    )
    with _store(ctx) as store:
        try:
            store.add_account(acct)
        except StoreConflict:
            raise CliError(f"account {name!r} already exists") from None
    click.echo(f"added {acct.kind} account {name!r}")
    if oauth:
        click.echo(
            f"next: shim account authorize {name}  (or shim account import-tokens {name} ...)"
        )


def _check_url(flag: str, url: str | None) -> None:
    if url is not None and not url.startswith(("https://", "http://")):
        raise CliError(f"{flag} must be an http(s) URL")


@account.command("set")
@click.argument("name")
@click.option("--route", type=click.Choice(ROUTES), help="xmlrpc, rest or auto (see add).")
@click.option("--rest-url", help="The REST v2 base URL (…/crm/rest/v2).")
@click.pass_context
def account_set(ctx: click.Context, name: str, route: Route | None, rest_url: str | None) -> None:
    """Change how an account reaches Keap. Running servers pick it up within seconds.

    \b
    Examples:
      shim account set prod --route auto         # REST v2 only while XML-RPC is down
      shim account set prod --route rest         # all translated calls through REST v2
    """
    _check_url("--rest-url", rest_url)
    changes = {k: v for k, v in (("route", route), ("rest_url", rest_url)) if v is not None}
    if not changes:
        raise CliError("nothing to change: give --route and/or --rest-url")
    with _store(ctx) as store:
        try:
            acct = store.update_account(name, **changes)
        except KeyError:
            raise CliError(f"no account named {name!r} (see: shim account list)") from None
    click.echo(f"account {name!r}: route {acct.route}, REST v2 at {acct.rest_url}")


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
@click.option("--access-token", required=True, help="Current access token.")
@click.option("--refresh-token", required=True, help="Current (unused) refresh token.")
@click.option(
    "--expires-in",
    required=True,
    type=DURATION,
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
      shim account import-tokens prod --access-token AT --refresh-token RT --expires-in 86400
    """
    with _store(ctx) as store:
        _oauth_account(store, name)
        now = time.time()
        chain = store.put_tokens(
            name, TokenPair(access_token, refresh_token, now + expires_in), now
        )
    click.echo(f"stored tokens for {name!r}; access token expires {_iso(chain.expires_at)}")


@account.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def account_list(ctx: click.Context, as_json: bool) -> None:
    """List accounts (no secrets are shown).

    \b
    Example:
      shim account list --json
    """
    with _store(ctx) as store:
        rows = [_account_json(a, store) for a in store.list_accounts()]
    if as_json:
        _echo_json(rows)
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
    type=DURATION,
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
    from shim.oauth import authorize

    settings = _settings(ctx)
    with _store(ctx) as store:
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
    with _store(ctx) as store:
        store.put_tokens(name, pair, time.time())
        if app_name:
            store.update_account(name, app_name=app_name)
    click.echo(
        f"authorized {name!r}"
        + (f" for Keap app {app_name}" if app_name else "")
        + f"; access token expires {_iso(pair.expires_at)}"
    )


async def _exchange_code(
    settings: Settings, acct: Account, code: str, redirect_uri: str
) -> TokenPair:
    from shim.keap.client import Upstream

    form = {
        "client_id": acct.client_id or "",
        "client_secret": acct.client_secret or "",
        "code": code,
        "grant_type": "authorization_code",
        "redirect_uri": redirect_uri,
    }
    upstream = Upstream(token_timeout=settings.token_timeout)
    try:
        return await upstream.token_grant(acct.token_url, form, time.time())
    except TokenEndpointError as exc:
        raise CliError(f"Keap refused the authorization code ({exc.message})") from None
    finally:
        await upstream.aclose()


@cli.command()
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

    Uses the same lease and journal as the server, so it is safe to run beside it.

    \b
    Examples:
      shim refresh prod
      shim refresh --due          # e.g. hourly from cron
    """
    if sum(bool(x) for x in (name, all_, due)) != 1:
        raise CliError("give exactly one of NAME, --all or --due")
    settings = _settings(ctx)
    with _store(ctx) as store:
        accounts = [a for a in store.list_accounts() if a.kind == "oauth"]
        if name:
            accounts = [_oauth_account(store, name)]
        failed = asyncio.run(_refresh(settings, store, accounts, forced=not due))
    if failed:
        raise CliError(f"refresh failed for: {', '.join(failed)}")


async def _refresh(
    settings: Settings, store: Store, accounts: list[Account], *, forced: bool
) -> list[str]:
    from shim.keap.client import Upstream
    from shim.oauth.chains import Chains

    upstream = Upstream(token_timeout=settings.token_timeout)
    alerter = Alerter(settings.alert_webhook, upstream.post_json)
    chains = Chains(store, upstream, settings, on_event=alerter)
    failed = []
    try:
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
            click.echo(f"{acct.name}: {what}; access token expires {_iso(chain.expires_at)}")
        await alerter.drain()
    finally:
        await upstream.aclose()
    return failed


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Health of every account's credential and token chain.

    Exit status: 0 all ok, 1 any degraded, 2 any needs re-authorization.

    \b
    Example:
      shim status --json
    """
    from shim.oauth.health import account_healths, exit_code

    now = time.time()
    with _store(ctx) as store:
        healths = account_healths(store, now)
        via_rest = _rest_answers(store.usage(now - 3600))
    for h in healths:
        h.facts["rest_answers_last_hour"] = via_rest.get(h.account, 0)
    if as_json:
        _echo_json(
            [
                {"account": h.account, "kind": h.kind, "state": h.state, **_iso_facts(h.facts)}
                for h in healths
            ]
        )
    else:
        if not healths:
            click.echo("no accounts yet")
        for h in healths:
            f = h.facts
            line = f"{h.account:<16} {h.kind:<12} {h.state:<13}"
            if "access_token_expires_at" in f:
                line += (
                    f" access token expires {_iso(f['access_token_expires_at'])}, refresh "
                    f"token age {_age(f['refresh_token_age'])}, last refresh "
                    f"{_iso(f['last_refresh_at']) or 'never'}"
                )
            quota = f.get("keap_quota")
            if quota:
                line += (
                    f"; Keap quota {quota.get('quota-available', '?')}/"
                    f"{quota.get('quota-limit', '?')} left, throttle "
                    f"{quota.get('throttle-available', '?')}/"
                    f"{quota.get('throttle-limit', '?')}"
                )
            if f.get("route", "xmlrpc") != "xmlrpc":
                what = "fallbacks to" if f["route"] == "auto" else "calls answered through"
                line += (
                    f"; route {f['route']}: {f['rest_answers_last_hour']} {what} REST v2 in "
                    "the last hour"
                )
            if f.get("last_error"):
                line += f"; last error: {f['last_error']}"
            click.echo(line)
    ctx.exit(exit_code(healths))


def _rest_answers(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Calls answered through REST v2 per account (for an ``auto`` account: its fallbacks)."""
    out: dict[str, int] = {}
    for row in rows:
        if row.get("account"):
            out[row["account"]] = out.get(row["account"], 0) + int(row.get("via_rest") or 0)
    return out


def _iso_facts(facts: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) if k.endswith("_at") else v for k, v in facts.items()}


def _age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds:.0f}s"


# -- keys ---------------------------------------------------------------------------------
@cli.group()
def key() -> None:
    """Local legacy-style keys that scripts send instead of the old Keap API key."""


def _key_json(k: KeyRecord, now: float) -> dict[str, Any]:
    return {
        "id": k.id,
        "account": k.account,
        "label": k.label,
        "prefix": k.prefix,
        "created": _iso(k.created_at),
        "expires": _iso(k.expires_at),
        "revoked": _iso(k.revoked_at),
        "last_used": _iso(k.last_used_at),
        "allow": list(k.allow),
        "rate_per_min": k.rate_per_min,
        "state": k.state(now),
    }


@key.command("issue")
@click.argument("account_name", metavar="ACCOUNT")
@click.option("--label", required=True, help="Who or what uses the key (shown in listings).")
@click.option("--expires-in", type=DURATION, help="Lifetime, e.g. 90d; default: no expiry.")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    help="Method glob the key may call (repeatable), e.g. 'ContactService.*'.",
)
@click.option("--rate", default=None, help="Most calls a minute for this key, e.g. 60/min.")
@click.option("--json", "as_json", is_flag=True, help="Print an object with id and key.")
@click.pass_context
def key_issue(
    ctx: click.Context,
    account_name: str,
    label: str,
    expires_in: float | None,
    allow: tuple[str, ...],
    rate: str | None,
    as_json: bool,
) -> None:
    """Issue a key for ACCOUNT. The key is shown once; only its keyed hash is stored.

    \b
    Examples:
      shim key issue prod --label "WordPress order sync"
      shim key issue prod --label "reports" --expires-in 90d --allow 'DataService.query'
      shim key issue prod --label "sync" --allow 'ContactService.*' --rate 120/min
    """
    if expires_in is not None and expires_in <= 0:
        raise CliError("--expires-in must be positive")
    now = time.time()
    with _store(ctx) as store:
        if store.get_account(account_name) is None:
            raise CliError(f"no account named {account_name!r} (see: shim account list)")
        issued, record = _issue(
            ctx,
            store,
            KeyRecord(
                id="", account=account_name, label=label, digest="", prefix="", created_at=now,
                expires_at=now + expires_in if expires_in else None,
                allow=keys.validate_allow(allow),
                rate_per_min=parse_rate(rate) if rate is not None else None,
            ),
        )  # fmt: skip
    _show_issued(issued, record, now, as_json)


def _issue(
    ctx: click.Context, store: Store, template: KeyRecord
) -> tuple[keys.IssuedKey, KeyRecord]:
    """Make a key and store the record built from ``template`` (id, digest and prefix set)."""
    hmac_key = store.server_secret("key-hmac")
    issued = keys.make_key(hmac_key)
    record = replace(template, id=issued.id, digest=issued.digest, prefix=issued.prefix)
    store.add_key(record)
    return issued, record


def _show_issued(issued: keys.IssuedKey, record: KeyRecord, now: float, as_json: bool) -> None:
    if as_json:
        _echo_json({**_key_json(record, now), "key": issued.text})
        return
    click.echo(f"key id:  {record.id}")
    click.echo(f"key:     {issued.text}")
    click.echo(
        "This is the only time the key is shown. Put it where the script's old Keap API key was."
    )


@key.command("rotate")
@click.argument("key_id")
@click.option(
    "--overlap",
    type=DURATION,
    default=0.0,
    show_default=True,
    help="How long the old key keeps working (e.g. 7d) while scripts switch over.",
)
@click.option("--json", "as_json", is_flag=True, help="Print an object with id and key.")
@click.pass_context
def key_rotate(ctx: click.Context, key_id: str, overlap: float, as_json: bool) -> None:
    """Issue a successor with the same account, label, allowlist and rate; retire the old key
    after --overlap.

    \b
    Example:
      shim key rotate 7fQ2kd9XbA --overlap 7d
    """
    if overlap < 0:
        raise CliError("--overlap cannot be negative")
    now = time.time()
    with _store(ctx) as store:
        old = store.get_key(key_id)
        if old is None:
            raise CliError(f"no key with id {key_id!r} (see: shim key list)")
        if old.state(now) != "active":
            raise CliError(f"key {key_id} is {old.state(now)}; issue a new one instead")
        issued, record = _issue(
            ctx, store, replace(old, created_at=now, last_used_at=None, revoked_at=None)
        )
        store.revoke_key(key_id, now + overlap)
    if not as_json:
        when = "now" if overlap == 0 else f"at {_iso(now + overlap)}"
        click.echo(f"old key {key_id} stops working {when}")
    _show_issued(issued, record, now, as_json)


@key.command("list")
@click.option("--account", "account_name", help="Only keys of this account.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def key_list(ctx: click.Context, account_name: str | None, as_json: bool) -> None:
    """List keys: id, label, non-secret prefix, dates and state.

    \b
    Example:
      shim key list --account prod --json
    """
    now = time.time()
    with _store(ctx) as store:
        rows = [_key_json(k, now) for k in store.list_keys(account_name)]
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no keys (shim key issue ACCOUNT --label TEXT)")
    for r in rows:
        click.echo(
            f"{r['id']}  {r['account']:<10} {r['state']:<8} {r['prefix']}…  "
            f"last used {r['last_used'] or 'never'}  {r['label']}"
        )


@key.command("revoke")
@click.argument("key_id")
@click.pass_context
def key_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key; the very next call with it is refused, in every process.

    \b
    Example:
      shim key revoke 7fQ2kd9XbA
    """
    with _store(ctx) as store:
        if not store.revoke_key(key_id, time.time()):
            raise CliError(f"no key with id {key_id!r} (see: shim key list)")
    click.echo(f"revoked {key_id}")


def _since(text: str, now: float) -> float:
    """``--since``: a duration ago (``7d``, ``12h``) or a UTC date/time (``2026-11-01``)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M"):
        try:
            return float(calendar.timegm(time.strptime(text, fmt)))
        except ValueError:
            continue
    raise CliError(f"--since takes a duration (7d, 12h) or a date (2026-11-01), not {text!r}")


@cli.command()
@click.option(
    "--since",
    default="30d",
    show_default=True,
    help="A duration ago (7d, 12h) or a UTC date (2026-11-01).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV output (one row per key and method).")
@click.pass_context
def usage(ctx: click.Context, since: str, as_json: bool, as_csv: bool) -> None:
    """Which keys still call what: counts, last seen and faults per key and method.

    This is how a team sees which scripts still run and what they call, to plan their
    migration off XML-RPC.

    \b
    Examples:
      shim usage --since 7d
      shim usage --since 2026-11-01 --csv > usage.csv
    """
    if as_json and as_csv:
        raise CliError("choose one of --json and --csv")
    now = time.time()
    start = _since(since, now)
    with _store(ctx) as store:
        rows = store.usage(start)
    for row in rows:
        row["first_seen"] = _iso(row["first_seen"])
        row["last_seen"] = _iso(row["last_seen"])
    if as_json:
        _echo_json({"since": _iso(start), "rows": rows})
        return
    columns = [
        "key_id",
        "label",
        "account",
        "method",
        "calls",
        "faults",
        "errors",
        "first_seen",
        "last_seen",
        "avg_ms",
    ]
    if as_csv:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([*columns, "fault_tags"])
        for row in rows:
            tags = ";".join(f"{k}={v}" for k, v in sorted(row["fault_tags"].items()))
            writer.writerow([*(row[c] for c in columns), tags])
        return
    if not rows:
        click.echo(f"no calls since {_iso(start)}")
        return
    click.echo(f"calls since {_iso(start)}")
    click.echo(f"{'key':<10} {'label':<20} {'method':<32} {'calls':>7} {'faults':>6}  last seen")
    for row in rows:
        label = (row["label"] or "-")[:20]
        click.echo(
            f"{row['key_id'] or '-':<10} {label:<20} {(row['method'] or '-')[:32]:<32} "
            f"{row['calls']:>7} {row['faults']:>6}  {row['last_seen']}"
        )


@cli.command()
@click.option(
    "--since",
    default="30d",
    show_default=True,
    help="A duration ago (7d, 12h) or a UTC date (2026-11-01).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def readiness(ctx: click.Context, since: str, as_json: bool) -> None:
    """Which scripts would keep working if Keap's XML-RPC API stopped today.

    Per key and method: calls, and whether keyshim can answer the method through REST v2
    (exact, approximate, no); per key and for the team, the share of recent calls that
    would keep working (docs/translation.md says what each translation does).

    \b
    Examples:
      shim readiness --since 7d
      shim readiness --json > readiness.json
    """
    from shim.rest import readiness as ready

    now = time.time()
    start = _since(since, now)
    with _store(ctx) as store:
        data = ready.report(store.usage(start))
    if as_json:
        _echo_json({"since": _iso(start), **data})
        return
    click.echo(f"calls since {_iso(start)}")
    for line in ready.lines(data):
        click.echo(line)


@cli.command("rotate-master-key")
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
    settings = _settings(ctx)
    from_env = bool(settings.secret_key)
    if from_env and not new_key_file:
        raise CliError("the master key comes from SHIM_SECRET_KEY: give --new-key-file")
    target = Path(new_key_file) if new_key_file else Path(settings.key_file + ".new")
    if target.exists():
        raise CliError(f"{target} exists: an earlier rotation was interrupted; see the README")
    new_key = generate_master_key()
    with _store(ctx) as store:
        click.echo("1/3 writing the new key", err=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(encode_master_key(new_key) + "\n")
            f.flush()
            os.fsync(f.fileno())
        click.echo("2/3 re-encrypting secrets", err=True)
        count = store.rekey(SecretBox(new_key))
    if from_env:
        click.echo(
            f"3/3 re-encrypted {count} secrets; set SHIM_SECRET_KEY to the contents of "
            f"{target} and restart keyshim"
        )
        return
    os.replace(target, settings.key_file)
    click.echo(
        f"3/3 re-encrypted {count} secrets; {settings.key_file} holds the new key. "
        "Restart every shim serve."
    )


# -- serving ------------------------------------------------------------------------------
@cli.command()
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
    type=DURATION,
    default=None,
    help="Refresh before forwarding when less than this is left (SHIM_INLINE_MARGIN).",
)
@click.option(
    "--refresh-margin",
    type=DURATION,
    default=None,
    help="Background refresh when less than this is left (SHIM_REFRESH_MARGIN, 6h).",
)
@click.option(
    "--keepalive-age",
    type=DURATION,
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
    type=DURATION,
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
@click.pass_context
def serve(
    ctx: click.Context,
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
) -> None:
    """Serve the XML-RPC endpoint (POST /api/xmlrpc) and GET /healthz.

    With --certfile and --keyfile it serves HTTPS, e.g. on 443 for scripts that hard-code
    https://APP.infusionsoft.com/api/xmlrpc (see shim tls init).

    \b
    Examples:
      shim serve --port 8080 --workers 2
      shim serve --host 127.0.0.1 --port 443 --certfile tls/server.pem --keyfile tls/server-key.pem
    """
    from shim.serve import server
    from shim.tls.files import check_server_files

    settings = Settings.from_env(
        os.environ,
        db=_settings(ctx).db,
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
    )
    check_server_files(settings.certfile or None, settings.keyfile or None)
    open_store(settings).close()  # fail here, clearly, if init was not run
    os.environ.update(settings.to_env())  # worker processes rebuild Settings from these
    metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers are separate processes: their metrics meet in files under this directory,
        # which lives as long as this server (stale files would resurrect old counts).
        import tempfile

        metrics_dir = tempfile.mkdtemp(prefix="keyshim-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    scheme = "https" if settings.certfile else "http"
    click.echo(
        f"keyshim {scheme}://{settings.host}:{settings.port} workers={settings.workers} "
        f"db={describe_db(settings.db)}",
        err=True,
    )
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with this handler that
    # becomes a normal exit, so the cleanup below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run(
            "shim.serve.runtime:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            certfile=settings.certfile or None,
            keyfile=settings.keyfile or None,
            max_clients=settings.max_clients,
        )
    finally:
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)


@cli.group("store")
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
    from shim.oauth.chains import make_owner
    from shim.serve.runtime import open_copy_target
    from shim.store.copy import copy_store

    settings = _settings(ctx)
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


@cli.group()
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

    files = init_tls(directory or default_dir(_settings(ctx).local_dir), list(hosts), days)
    click.echo(summary(files))
    click.echo()
    click.echo(instructions(files, files.hosts, port))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8780, show_default=True, help="0 picks a free port.")
@click.option(
    "--access-token-lifetime",
    type=DURATION,
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

    config = SimConfig(access_token_lifetime=access_token_lifetime, throttle=throttle)
    serve_simulator(host, port, config)


@cli.command()
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


def main() -> None:
    cli(prog_name="shim")
