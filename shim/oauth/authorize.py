"""First authorization on a headless server: build the URL, catch or paste the redirect.

Keap's consent screen needs a browser, which the server running keyshim usually lacks. So the
admin opens the printed URL anywhere, and the redirect comes back either to a one-shot local
listener (``--listen``) or as the URL pasted from the browser's address bar (or the bare code).
The ``state`` value ties the answer to this attempt.
"""

from __future__ import annotations

import http.server
import secrets
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from shim.errors import CliError, SpentRefreshToken, TokenEndpointError
from shim.keap.client import Upstream
from shim.models import Account, TokenPair

DEFAULT_REDIRECT = "http://localhost:8976/callback"


@dataclass(frozen=True)
class Redirect:
    code: str
    state: str | None
    scope: str | None


def new_state() -> str:
    return secrets.token_urlsafe(16)


def authorize_url(base: str, client_id: str, redirect_uri: str, state: str) -> str:
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": "full",
            "state": state,
        }
    )
    return f"{base}{'&' if '?' in base else '?'}{query}"


def parse_redirect(text: str, expected_state: str) -> Redirect:
    """A pasted redirect URL (or query string, or bare code), with its state checked."""
    text = text.strip()
    if not text:
        raise CliError("nothing pasted: paste the whole redirect URL (or the code)")
    if "code=" not in text and "error=" not in text:
        if any(c in text for c in " /?&="):
            raise CliError("that does not look like a redirect URL or an authorization code")
        return Redirect(code=text, state=None, scope=None)  # a bare code: nothing to check
    # A full URL, a request path ("/callback?code=..." from the listener) or a bare query.
    query = text.split("?", 1)[1] if "?" in text else text
    query = query.split("#", 1)[0]
    params = {k: v[0] for k, v in parse_qs(query).items()}
    if "error" in params:
        raise CliError(f"Keap refused the authorization: {params['error'][:100]}")
    if params.get("state") != expected_state:
        raise CliError("the redirect's state does not match this attempt; start again")
    if not params.get("code"):
        raise CliError("the redirect has no code")
    return Redirect(code=params["code"], state=params["state"], scope=params.get("scope"))


def listen_once(host: str, port: int, expected_state: str, timeout: float) -> Redirect:
    """Serve until one redirect with the right state arrives (or the timeout passes)."""
    result: list[Redirect | CliError] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                result.append(parse_redirect(self.path, expected_state))
                body, status = b"keyshim: authorized. You can close this tab.\n", 200
            except CliError as exc:
                if "state" in str(exc) or "code" in self.path:
                    result.append(exc)
                body, status = f"keyshim: {exc}\n".encode(), 400
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    try:
        httpd = http.server.HTTPServer((host, port), Handler)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    httpd.timeout = 0.5
    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set)
    timer.start()
    try:
        while not result and not stop.is_set():
            httpd.handle_request()
    finally:
        timer.cancel()
        httpd.server_close()
    if not result:
        raise CliError(f"no redirect arrived within {timeout:.0f}s")
    outcome = result[0]
    if isinstance(outcome, CliError):
        raise outcome
    return outcome


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise CliError("--listen takes HOST:PORT, e.g. 127.0.0.1:8976")
    return host, int(port)


async def exchange_code(
    upstream: Upstream, account: Account, code: str, redirect_uri: str, now: float
) -> TokenPair:
    """Trade the authorization code for the chain's first token pair."""
    form = {
        "client_id": account.client_id or "",
        "client_secret": account.client_secret or "",
        "code": code,
        "grant_type": "authorization_code",
        "redirect_uri": redirect_uri,
    }
    try:
        return await upstream.token_grant(account.token_url, form, now)
    except SpentRefreshToken as exc:
        # The token policy words invalid_grant for the refresh grant it usually answers.
        detail = exc.message.removeprefix("Keap rejected the refresh token: ")
        raise CliError(
            f"Keap refused the authorization code ({detail}): codes are single-use and expire "
            "within minutes, and the redirect URI must be the one registered; run "
            "`shim account authorize` again and paste the new redirect promptly"
        ) from None
    except TokenEndpointError as exc:
        raise CliError(f"Keap refused the authorization code ({exc.message})") from None
