"""The OAuth endpoints: ``POST /token`` (code and refresh grants) and the authorize redirect.

The token endpoint is where keyshim's hardest bugs live (single-use refresh tokens, lost
answers, concurrent refreshes), so each request passes two test hooks, in this order:

1. ``hold_refresh == "before"``: a refresh grant parks before its token is looked at.
2. The failure queue: one failure is taken per request. Plain failures answer instead of the
   grant (the refresh token stays valid); ``-after`` failures let the grant run and spoil its
   answer (the token is spent and the new pair is lost).
3. The grant itself (``AuthState``), atomic within the event loop.
4. ``hold_refresh == "after"``: a successful refresh parks with its new pair issued.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from shim.serve.asgi import Send
from shim.simulator.asgi import Answer, Request, json_answer, send_answer
from shim.simulator.config import SimConfig
from shim.simulator.failures import FailureQueue, HoldGate, deliver
from shim.simulator.state import AuthState, OAuthError, invalid_client

_NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]


class TokenEndpoint:
    def __init__(self, config: SimConfig, auth: AuthState, now: Callable[[], float]) -> None:
        self.config = config
        self.auth = auth
        self.now = now
        self.failures = FailureQueue()
        self.gate = HoldGate()
        self.requests = 0
        self.refresh_requests = 0
        self.refreshes_served = 0
        self.code_exchanges = 0

    async def token(self, request: Request, send: Send) -> None:
        self.requests += 1
        form = request.form()
        is_refresh = form.get("grant_type") == "refresh_token"
        if is_refresh:
            self.refresh_requests += 1
            if self.config.hold_refresh == "before":
                await self.gate.wait()
        failure = self.failures.pop()
        if failure is not None and not failure.after:
            answer = json_answer(200, {})  # never processed; only "reset" shows a part of it
        else:
            answer = self._grant(request, form)
            if is_refresh and answer.status == 200 and self.config.hold_refresh == "after":
                await self.gate.wait()
        await deliver(
            send, answer, failure, self.config.failure_timeout, self.config.failure_retry_after
        )

    def _grant(self, request: Request, form: dict[str, str]) -> Answer:
        grant = form.get("grant_type")
        try:
            if grant == "authorization_code":
                pair = self.auth.exchange_code(
                    form.get("client_id", ""),
                    form.get("client_secret", ""),
                    form.get("code", ""),
                    form.get("redirect_uri", ""),
                    self.now(),
                )
                self.code_exchanges += 1
            elif grant == "refresh_token":
                pair = self._refresh(request, form)
                self.refreshes_served += 1
            else:
                raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant type: {grant}")
        except OAuthError as exc:
            return json_answer(exc.status, exc.body, list(_NO_STORE))
        return json_answer(200, pair, list(_NO_STORE))

    def _refresh(self, request: Request, form: dict[str, str]) -> dict[str, Any]:
        credentials = _basic_credentials(request.headers.get("authorization"))
        if credentials is None and self.config.refresh_body_credentials and "client_id" in form:
            credentials = form["client_id"], form.get("client_secret", "")
        if credentials is None:
            raise invalid_client()
        self.auth.check_client(*credentials)
        token = form.get("refresh_token")
        if not token:
            raise OAuthError(400, "invalid_request", "Missing refresh_token parameter")
        return self.auth.refresh_grant(credentials[0], token, self.now())

    async def authorize(self, request: Request, send: Send) -> None:
        """Auto-approve (no consent screen) and redirect back with a code, like a click on Allow."""
        q = request.query
        redirect_uri = q.get("redirect_uri", "")
        if q.get("response_type") != "code" or not redirect_uri:
            await _error_page(send, "response_type=code and redirect_uri are required")
            return
        try:
            code = self.auth.authorize(q.get("client_id", ""), redirect_uri, self.now())
        except OAuthError:
            await _error_page(send, "Unknown client_id")
            return
        params = {"code": code, "scope": self.auth.scope}
        if "state" in q:
            params["state"] = q["state"]
        location = redirect_uri + ("&" if "?" in redirect_uri else "?") + urlencode(params)
        await send_answer(send, Answer(302, b"", "text/html", [("Location", location)]))


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(client_id, secret) from ``Authorization: Basic``; None if absent or malformed."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (client_id, secret) if colon else None


async def _error_page(send: Send, message: str) -> None:
    html = f"<html><body><h1>Bad Request</h1><p>{message}</p></body></html>"
    await send_answer(send, Answer(400, html.encode(), "text/html;charset=UTF-8"))
