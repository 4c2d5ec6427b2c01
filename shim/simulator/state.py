"""Pure in-memory OAuth state: clients, authorization codes, token chains, service keys.

No I/O and no clock: every operation takes ``now`` so tests drive time directly. Grants either
return a token pair or raise ``OAuthError`` carrying the exact HTTP status and JSON body the
token endpoint sends. Each operation is synchronous, so under one event loop a grant is atomic:
two concurrent refreshes of one token cannot both succeed, exactly like Keap.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from shim.simulator.config import SimConfig

SPENT_BODIES: dict[str, dict[str, str]] = {
    "current": {"error": "invalid_request", "error_description": "Invalid Refresh Token"},
    "older": {"error": "invalid_grant", "error_description": "Invalid refresh token"},
}


class OAuthError(Exception):
    """A refused grant: the HTTP status and JSON body the token endpoint answers with."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.body = {"error": error, "error_description": description}


def invalid_client() -> OAuthError:
    return OAuthError(401, "invalid_client", "Invalid client credentials")


@dataclass
class Client:
    client_id: str
    secret: str = field(repr=False)


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    expires_at: float


@dataclass
class AccessToken:
    client_id: str
    expires_at: float
    revoked: bool = False


@dataclass
class RefreshToken:
    client_id: str
    expires_at: float
    access_token: str
    spent: bool = False


@dataclass(frozen=True)
class Credential:
    """Who an XML-RPC call is billed to: an OAuth client id or a service key."""

    kind: Literal["oauth", "key"]
    identifier: str


class AuthState:
    """Clients, codes and tokens of one simulated Keap."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, AuthCode] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.service_keys: set[str] = set()

    @property
    def scope(self) -> str:
        return f"full|{self.config.app_name}.infusionsoft.com"

    def add_client(self) -> Client:
        client = Client("sim-" + secrets.token_hex(8), secrets.token_urlsafe(18))
        self.clients[client.client_id] = client
        return client

    def add_service_key(self) -> str:
        key = "KeapAK-" + secrets.token_hex(24)
        self.service_keys.add(key)
        return key

    def check_client(self, client_id: str, secret: str) -> None:
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.secret, secret):
            raise invalid_client()

    def authorize(self, client_id: str, redirect_uri: str, now: float) -> str:
        """Auto-approve an authorization request; returns the single-use code."""
        if client_id not in self.clients:
            raise OAuthError(400, "invalid_client", "Unknown client_id")
        code = secrets.token_urlsafe(12)
        self.codes[code] = AuthCode(client_id, redirect_uri, now + self.config.code_lifetime)
        return code

    def exchange_code(
        self, client_id: str, secret: str, code: str, redirect_uri: str, now: float
    ) -> dict[str, Any]:
        self.check_client(client_id, secret)
        grant = self.codes.get(code)
        if grant is None or grant.client_id != client_id or grant.expires_at <= now:
            raise OAuthError(400, "invalid_grant", "Invalid authorization code")
        if grant.redirect_uri != redirect_uri:
            raise OAuthError(400, "invalid_grant", "Redirect URI mismatch")
        del self.codes[code]
        return self.issue(client_id, now, now + self.config.refresh_token_lifetime)

    def refresh_grant(self, client_id: str, token: str, now: float) -> dict[str, Any]:
        """Rotate: the presented refresh token is spent at once, a new pair is issued."""
        old = self.refresh.get(token)
        if old is None or old.spent or old.client_id != client_id or old.expires_at <= now:
            body = SPENT_BODIES[self.config.spent_body]
            raise OAuthError(400, body["error"], body["error_description"])
        old.spent = True
        if not self.config.old_access_token_valid_after_refresh:
            previous = self.access.get(old.access_token)
            if previous is not None:
                previous.revoked = True
        if self.config.refresh_restarts_lifetime:
            refresh_expiry = now + self.config.refresh_token_lifetime
        else:
            refresh_expiry = old.expires_at
        return self.issue(client_id, now, refresh_expiry)

    def issue(self, client_id: str, now: float, refresh_expiry: float) -> dict[str, Any]:
        """A fresh token pair, as the token endpoint's JSON answer."""
        if client_id not in self.clients:
            raise KeyError(client_id)
        access = secrets.token_urlsafe(24)
        refresh = secrets.token_urlsafe(24)
        lifetime = self.config.access_token_lifetime
        self.access[access] = AccessToken(client_id, now + lifetime)
        self.refresh[refresh] = RefreshToken(client_id, refresh_expiry, access)
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": int(lifetime),
            "refresh_token": refresh,
            "scope": self.scope,
        }

    def revoke(self, token: str) -> bool:
        """Kill an access token, refresh token or service key (a user disconnecting the app)."""
        if token in self.access:
            self.access[token].revoked = True
        elif token in self.refresh:
            self.refresh[token].spent = True
        elif token in self.service_keys:
            self.service_keys.discard(token)
        else:
            return False
        return True

    def credential(self, bearer: str | None, api_key: str | None, now: float) -> Credential | None:
        """Who is calling the XML-RPC endpoint, or None for a bad or expired token."""
        if api_key is not None:
            return Credential("key", api_key) if api_key in self.service_keys else None
        if bearer is None:
            return None
        token = self.access.get(bearer)
        if token is None or token.revoked or token.expires_at <= now:
            return None
        return Credential("oauth", token.client_id)
