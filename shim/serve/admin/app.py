"""The admin page's routes: a small ASGI app mounted under ``/admin``.

Every GET renders from the store; every POST checks the session and its CSRF token first, then
calls the same library function the CLI calls for that action, writes the action to the admin
audit (who, from where, what, how it ended) and answers with a page. Actions that change
something a script depends on (refresh, route, revoke, rotate) answer a first POST with a
confirmation page, so they work, confirmed, with JavaScript off.

Raw ASGI, like the rest of ``shim.serve``: a dozen routes do not need a framework.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, get_args
from urllib.parse import parse_qs, quote

from shim.access import issuing, keys, legacy_methods
from shim.access.rate_policy import Rate
from shim.errors import CliError, ShimError
from shim.models import Route
from shim.oauth.health import account_healths
from shim.rest import readiness
from shim.serve.admin import passwords, render, sessions
from shim.serve.asgi import Receive, Scope, Send, header, plain
from shim.serve.services import Services
from shim.settings import Settings, parse_duration
from shim.store.offloop import Lane

log = logging.getLogger("shim.serve.admin")
P = ParamSpec("P")
T = TypeVar("T")

PREFIX = "/admin"
ROUTES = get_args(Route)
#: A form is a few fields; anything bigger is not from this page.
MAX_FORM = 16 * 1024
#: The usage page's windows: calls per key and method over time.
WINDOWS = (("1h", 3600.0), ("24h", 86400.0), ("7d", 7 * 86400.0), ("30d", 30 * 86400.0))
_STATIC = Path(__file__).with_name("static")
_STATIC_TYPES = {
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".svg": b"image/svg+xml",
}
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) names this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> str | None:
    """Why these admin settings are refused, or None: a page that issues keys may only leave
    the machine over TLS, or when the operator says plainly that it may go without."""
    if not settings.admin or is_loopback(settings.admin_host):
        return None
    if settings.certfile or settings.admin_insecure:
        return None
    return (
        f"the admin page would be open to {settings.admin_host} without TLS: give --certfile and "
        "--keyfile, or --admin-insecure if that network is trusted"
    )


@dataclass
class Request:
    scope: Scope
    path: str  # below /admin
    method: str
    source: str
    cookies: dict[str, str]
    form: dict[str, str]


class Answer(Exception):
    """Raised to answer at once (a redirect, a refusal) from deep in a handler."""

    def __init__(self, status: int, body: bytes = b"", location: str | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.location = status, body, location


class AdminApp:
    """ASGI callable for everything under ``/admin``. ``services`` gives the process's
    Services (started on first use), shared with the XML-RPC endpoint on the same port."""

    def __init__(
        self,
        settings: Settings,
        services: Callable[[], Awaitable[Services]],
        clock: Callable[[], float] = time.time,
        *,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self._services = services
        self._on_shutdown = on_shutdown
        self.clock = clock
        self.limiter = sessions.LoginLimiter()
        # The page's store work: threads of its own, so page loads waiting on a locked store
        # neither stall the loop nor hold up the refreshes in the shared store pool.
        self._lane: Lane | None = None
        self.open_to_all = not is_loopback(settings.admin_host)

    def close(self) -> None:
        """No new store work (until the next request); work under way finishes on its own."""
        if self._lane is not None:
            self._lane.close()
            self._lane = None

    async def _off(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn`` (store work) in the page's own threads; the loop serves calls meanwhile."""
        if self._lane is None:
            self._lane = Lane("shim-admin", 2)
        return await self._lane.start(fn, *args, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served on its own port
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        client = scope.get("client") or ("", 0)
        if not self.open_to_all and not is_loopback(str(client[0])):
            await plain(send, 404, b"not found\n")
            return
        if scope["path"] != PREFIX and not scope["path"].startswith(PREFIX + "/"):
            await plain(send, 404, b"not found: the admin page is at /admin\n")
            return
        path = scope["path"][len(PREFIX) :] or "/"
        if path.startswith("/static/") and scope["method"] == "GET":
            await self._static(path[len("/static/") :], send)
            return
        try:
            request = await self._request(scope, receive, path, str(client[0]))
            status, body, extra = await self._route(request)
        except Answer as answer:
            status, body, extra = answer.status, answer.body, []
            if answer.location:
                extra.append((b"location", answer.location.encode()))
        headers = [(b"content-type", b"text/html; charset=utf-8"), *_SECURITY_HEADERS, *extra]
        await plain(send, status, body, headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._services()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._on_shutdown is not None:
                    await self._on_shutdown()
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _static(self, name: str, send: Send) -> None:
        file = _STATIC / name
        if "/" in name or file.suffix not in _STATIC_TYPES or not file.is_file():
            await plain(send, 404, b"not found\n")
            return
        kind = _STATIC_TYPES[file.suffix]
        headers = [(b"content-type", kind), (b"cache-control", b"max-age=300")]
        await plain(send, 200, file.read_bytes(), headers)

    async def _request(self, scope: Scope, receive: Receive, path: str, source: str) -> Request:
        cookies: dict[str, str] = {}
        raw = header(scope, b"cookie")
        if raw:
            try:
                jar = SimpleCookie(raw)
            except CookieError:
                jar = SimpleCookie()
            cookies = {k: m.value for k, m in jar.items()}
        form: dict[str, str] = {}
        if scope["method"] == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if len(body) > MAX_FORM:
                    raise Answer(413, b"form too large\n")
                if not message.get("more_body"):
                    break
            parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            form = {k: v[0] for k, v in parsed.items()}
        return Request(scope, path, scope["method"], source, cookies, form)

    # -- sessions -----------------------------------------------------------------------
    def _secret(self, services: Services) -> bytes:
        return services.store.server_secret(sessions.SESSION_SECRET)

    def _password_tag(self, services: Services) -> str | None:
        stored = services.store.admin_password()
        return None if stored is None else passwords.fingerprint(stored)

    def _session(self, services: Services, request: Request) -> sessions.Session | None:
        tag = self._password_tag(services)
        if tag is None:
            return None
        return sessions.read_session(
            self._secret(services), request.cookies.get(sessions.COOKIE), tag, self.clock()
        )

    @property
    def _secure(self) -> bool:
        return bool(self.settings.certfile)

    # -- routing ------------------------------------------------------------------------
    async def _route(self, request: Request) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        services = await self._services()
        path, method = request.path.rstrip("/") or "/", request.method
        if path == "/login":
            if method == "POST":
                return await self._login(services, request)
            return await self._off(self._login_page, services, request)
        session = await self._off(self._session, services, request)
        if session is None:
            raise Answer(303, location=f"{PREFIX}/login")
        secret = await self._off(self._secret, services)
        csrf = sessions.csrf_token(secret, session.sid)
        actor = f"admin session {session.sid[:6]}"
        if method == "POST":
            if not sessions.csrf_ok(secret, session.sid, request.form.get("csrf")):
                await self._off(
                    self._audit, services, actor, request, "post " + path, None, "refused: no CSRF"
                )
                page = render.page(
                    "error.html", title="Refused", csrf=csrf, here="", notice=None,
                    error="This form has expired or did not come from this page. Reload it.",
                )  # fmt: skip
                raise Answer(403, page)
            return await self._action(services, request, path, csrf, actor)
        if method != "GET":
            raise Answer(405, b"use GET or POST\n")
        pages: dict[str, Callable[[Services, str], bytes]] = {
            "/": self._accounts_page,
            "/accounts": self._accounts_page,
            "/keys": self._keys_page,
            "/usage": self._usage_page,
            "/alerts": self._alerts_page,
        }
        if path not in pages:
            raise Answer(404, b"not found\n")
        return 200, await self._off(pages[path], services, csrf), []

    async def _action(
        self, services: Services, request: Request, path: str, csrf: str, actor: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        parts = path.strip("/").split("/")
        form = request.form
        if parts == ["logout"]:
            await self._off(self._audit, services, actor, request, "logout", None, "ok")
            cookie = sessions.cookie_header(sessions.COOKIE, "", max_age=0, secure=self._secure)
            return 303, b"", [(b"location", f"{PREFIX}/login".encode()), (b"set-cookie", cookie)]
        if parts == ["keys"]:
            return 200, await self._off(self._issue, services, request, csrf, actor), []
        if len(parts) != 3 or parts[0] not in ("accounts", "keys"):
            raise Answer(404, b"not found\n")
        kind, target, verb = parts
        confirmations = {
            ("accounts", "refresh"): (f"Refresh the token chain of {target} now?", "Refresh now"),
            ("accounts", "route"): (
                f"Route {target}'s calls through {form.get('route', '?')}?",
                "Change route",
            ),
            ("keys", "revoke"): (
                f"Revoke key {target}? The next call with it is refused.",
                "Revoke key",
            ),
            ("keys", "rotate"): (
                f"Issue a successor to key {target}; the old key keeps working for "
                f"{form.get('overlap') or '0s'}?",
                "Rotate key",
            ),
        }
        if (kind, verb) not in confirmations:
            raise Answer(404, b"not found\n")
        back = f"{PREFIX}/{kind}"
        if form.get("confirm") != "yes":
            question, button = confirmations[(kind, verb)]
            fields = [(k, v) for k, v in form.items() if k not in ("csrf", "confirm")]
            body = render.page(
                "confirm.html", title="Please confirm", csrf=csrf, here=back, notice=None,
                error=None, question=question, button=button, fields=fields, back=back,
                action=f"{PREFIX}/{kind}/{quote(target)}/{verb}",
            )  # fmt: skip
            return 200, body, []
        notice, error = None, None
        issued = None
        try:
            if verb == "refresh":
                notice = await self._refresh(services, target)
            else:
                notice, issued = await self._off(self._change, services, verb, target, form)
        except (CliError, ValueError) as exc:
            error = str(exc)
        except ShimError as exc:
            error = exc.message
        outcome = "ok" if error is None else f"failed: {error}"
        what = f"{verb} {form['route']}" if verb == "route" else verb
        await self._off(
            self._audit, services, actor, request, f"{kind[:-1]} {what}", target, outcome
        )
        if kind == "accounts":
            page = functools.partial(self._accounts_page, notice=notice, error=error)
        else:
            page = functools.partial(self._keys_page, notice=notice, error=error, issued=issued)
        return 200, await self._off(page, services, csrf), []

    def _change(
        self, services: Services, verb: str, target: str, form: dict[str, str]
    ) -> tuple[str | None, dict[str, Any] | None]:
        """A route change, a revocation or a rotation: store writes, run off the loop."""
        if verb == "route":
            route = form.get("route", "")
            if route not in ROUTES:
                raise CliError(f"route must be one of {', '.join(ROUTES)}")
            if services.store.get_account(target) is None:
                raise CliError(f"no account named {target!r}")
            services.store.update_account(target, route=route)
            return f"{target} now routes its calls through {route}.", None
        if verb == "revoke":
            if not services.store.revoke_key(keys.id_given(target), self.clock()):
                raise CliError(f"no key with id {target!r}")
            return f"Key {target} is revoked; the next call with it is refused.", None
        overlap = parse_duration(form.get("overlap") or "0")
        now = self.clock()
        new, record = issuing.rotate(services.store, target, now=now, overlap=overlap)
        issued = {"id": record.id, "account": record.account, "text": new.text,
                  "replaces": target, "old_ends": now + overlap}  # fmt: skip
        return None, issued

    async def _refresh(self, services: Services, name: str) -> str:
        account = await self._off(services.store.get_account, name)
        if account is None or account.kind != "oauth":
            raise CliError(f"no OAuth account named {name!r}")
        before = await self._off(services.store.chain_generation, name)
        chain = await services.chains.refresh(account, seen_generation=None, reason="forced")
        what = "refreshed" if chain.generation != before else "already fresh"
        return f"{name}: {what}; the access token expires {render.iso(chain.expires_at)}."

    def _issue(self, services: Services, request: Request, csrf: str, actor: str) -> bytes:
        form = request.form
        account = form.get("account", "")
        error, issued, notice = None, None, None
        try:
            expires = form.get("expires_in", "").strip()
            allow = keys.split_allow(form.get("allow", ""))
            unknown = [p for p, _ in legacy_methods.unknown_patterns(allow)]
            new, record = issuing.issue(
                services.store, account, label=form.get("label", "").strip() or "unlabelled",
                now=self.clock(), expires_in=parse_duration(expires) if expires else None,
                allow=allow, rate=form.get("rate", "").strip() or None,
            )  # fmt: skip
            issued = {"id": record.id, "account": record.account, "text": new.text,
                      "replaces": None, "old_ends": None}  # fmt: skip
            if unknown:
                notice = f"Note: {', '.join(unknown)} matches no legacy Keap method."
        except (CliError, ValueError) as exc:
            error = str(exc)
        target = issued["id"] if issued else account
        self._audit(services, actor, request, "key issue", target,
                    "ok" if error is None else f"failed: {error}")  # fmt: skip
        return self._keys_page(services, csrf, notice=notice, error=error, issued=issued)

    # -- login --------------------------------------------------------------------------
    def _login_page(
        self, services: Services, request: Request, *, error: str | None = None, status: int = 200
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        nonce = request.cookies.get(sessions.PRE_COOKIE) or secrets.token_urlsafe(16)
        body = render.page(
            "login.html", title="Log in", csrf=None, here="", notice=None, error=error,
            login_csrf=sessions.csrf_token(self._secret(services), "login|" + nonce),
            password_set=services.store.admin_password() is not None,
        )  # fmt: skip
        cookie = sessions.cookie_header(sessions.PRE_COOKIE, nonce, max_age=3600,
                                        secure=self._secure)  # fmt: skip
        return status, body, [(b"set-cookie", cookie)]

    async def _login(
        self, services: Services, request: Request
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        now = self.clock()
        secret = await self._off(self._secret, services)
        nonce = request.cookies.get(sessions.PRE_COOKIE)
        if not sessions.csrf_ok(secret, f"login|{nonce}" if nonce else None,
                                request.form.get("csrf")):  # fmt: skip
            await self._off(
                self._audit, services, "anonymous", request, "login", None, "refused: no CSRF"
            )
            return await self._off(functools.partial(
                self._login_page, services, request, status=403,
                error="This form has expired or did not come from this page. Try again.",
            ))  # fmt: skip
        if not self.limiter.allowed(request.source, now):
            await self._off(
                self._audit, services, "anonymous", request, "login", None, "refused: rate limit"
            )
            return await self._off(functools.partial(
                self._login_page, services, request, status=429,
                error="Too many failed logins; wait a few minutes and try again.",
            ))  # fmt: skip
        stored = await self._off(services.store.admin_password)
        given = request.form.get("password", "")
        # The hash runs in a thread: scrypt takes ~0.1 s, which must not stall XML-RPC calls.
        ok = stored is not None and await asyncio.to_thread(
            passwords.verify_password, given, stored
        )
        if not ok or stored is None:
            self.limiter.failed(request.source, now)
            await self._off(
                self._audit,
                services,
                "anonymous",
                request,
                "login",
                None,
                "refused: wrong password",
            )
            return await self._off(functools.partial(
                self._login_page, services, request, status=401, error="Wrong password."
            ))  # fmt: skip
        self.limiter.succeeded(request.source)
        value = sessions.open_session(
            secret, passwords.fingerprint(stored), now, self.settings.admin_session
        )
        await self._off(
            self._audit, services, f"admin session {value[:6]}", request, "login", None, "ok"
        )
        cookie = sessions.cookie_header(
            sessions.COOKIE, value, max_age=int(self.settings.admin_session), secure=self._secure
        )
        return 303, b"", [(b"location", f"{PREFIX}/accounts".encode()), (b"set-cookie", cookie)]

    def _audit(
        self,
        services: Services,
        actor: str,
        request: Request,
        action: str,
        target: str | None,
        outcome: str,
    ) -> None:
        services.store.record_admin_action(
            self.clock(), actor, request.source, action, target, outcome[:300]
        )
        log.info("admin %s from %s: %s %s: %s", actor, request.source, action, target, outcome)

    # -- pages --------------------------------------------------------------------------
    def _accounts_page(
        self,
        services: Services,
        csrf: str,
        *,
        notice: str | None = None,
        error: str | None = None,
    ) -> bytes:
        now = self.clock()
        store = services.store
        via_rest: dict[str, int] = {}
        for row in store.usage(now - 3600):
            if row.get("account"):
                via_rest[row["account"]] = via_rest.get(row["account"], 0) + int(
                    row.get("via_rest") or 0
                )
        rows = []
        for h in account_healths(store, now):
            f = h.facts
            rows.append({
                "name": h.account, "kind": h.kind, "state": h.state, "app_name": f.get("app_name"),
                "route": f.get("route", "xmlrpc"), "expires_at": f.get("access_token_expires_at"),
                "expires_in": f.get("access_token_expires_in"),
                "last_refresh_at": f.get("last_refresh_at"), "last_error": f.get("last_error"),
                "failures": f.get("failures"), "generation": f.get("generation"),
                "quota": f.get("keap_quota"), "via_rest": via_rest.get(h.account, 0),
            })  # fmt: skip
        return render.page(
            "accounts.html", title="Accounts", csrf=csrf, here=f"{PREFIX}/accounts",
            notice=notice, error=error, rows=rows, routes=ROUTES, now=now,
        )  # fmt: skip

    def _keys_page(
        self,
        services: Services,
        csrf: str,
        *,
        notice: str | None = None,
        error: str | None = None,
        issued: dict[str, Any] | None = None,
    ) -> bytes:
        now = self.clock()
        rows = []
        for k in sorted(services.store.list_keys(), key=lambda k: -k.created_at):
            rate = k.rate_per_min and str(Rate(k.rate_per_min, k.rate_window or 60))
            rows.append({
                "id": k.id, "label": k.label, "account": k.account, "prefix": k.prefix,
                "created_at": k.created_at, "expires_at": k.expires_at,
                "revoked_at": k.revoked_at, "last_used_at": k.last_used_at,
                "allow": k.allow, "rate": rate, "state": k.state(now),
            })  # fmt: skip
        accounts = [a.name for a in services.store.list_accounts()]
        return render.page(
            "keys.html", title="Keys", csrf=csrf, here=f"{PREFIX}/keys", notice=notice,
            error=error, keys=rows, accounts=accounts, issued=issued,
        )  # fmt: skip

    def _usage_page(self, services: Services, csrf: str) -> bytes:
        now = self.clock()
        store = services.store
        month = store.usage(now - WINDOWS[-1][1])
        # The store splits a key's method by account (a refused call has none): one row here.
        merged: dict[tuple[Any, Any], dict[str, Any]] = {}
        for row in month:
            entry = merged.setdefault(
                (row["key_id"], row["method"]),
                {"key_id": row["key_id"], "label": row["label"], "method": row["method"],
                 "counts": [0] * len(WINDOWS), "faults": 0, "last_seen": row["last_seen"],
                 "fault_tags": sorted(row["fault_tags"].items())},
            )  # fmt: skip
            entry["counts"][-1] += int(row["calls"])
            entry["faults"] += int(row["faults"])
            entry["last_seen"] = max(entry["last_seen"], row["last_seen"])
        for i, (_, seconds) in enumerate(WINDOWS[:-1]):
            for row in store.usage(now - seconds):
                if (row["key_id"], row["method"]) in merged:
                    merged[(row["key_id"], row["method"])]["counts"][i] += int(row["calls"])
        usage = sorted(merged.values(), key=lambda u: (-u["counts"][-1], str(u["key_id"])))
        # A key's rows with an account first: the report names the account of the first row.
        ready = readiness.report(sorted(month, key=lambda r: r["account"] is None))
        return render.page(
            "usage.html", title="Usage and readiness", csrf=csrf, here=f"{PREFIX}/usage",
            notice=None, error=None, ready=ready, usage=usage, windows=WINDOWS,
        )  # fmt: skip

    def _alerts_page(self, services: Services, csrf: str) -> bytes:
        problems = []
        for h in account_healths(services.store, self.clock()):
            if h.usable:
                continue
            action = (
                f"re-authorize: shim account authorize {h.account}"
                if h.state == "needs_reauth"
                else "keyshim keeps retrying; check Keap's token endpoint and the client secret"
            )
            problems.append({
                "account": h.account, "state": h.state, "error": h.facts.get("last_error"),
                "at": h.facts.get("last_error_at"), "action": action,
            })  # fmt: skip
        return render.page(
            "alerts.html", title="Alerts", csrf=csrf, here=f"{PREFIX}/alerts", notice=None,
            error=None, problems=problems, alerts=services.store.recent_alerts(50),
            actions=services.store.admin_actions(50),
        )  # fmt: skip
