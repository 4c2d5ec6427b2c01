"""Frozen value types shared by the pure core and the edges.

Times are POSIX seconds (UTC) as floats everywhere, so the pure modules can take ``now`` as an
argument and tests can drive time without touching the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AccountKind = Literal["oauth", "service_key"]
ChainState = Literal["ok", "needs_reauth"]
Route = Literal["xmlrpc", "rest", "auto"]

KEAP_XMLRPC_URL = "https://api.infusionsoft.com/crm/xmlrpc/v1"
KEAP_TOKEN_URL = "https://api.infusionsoft.com/token"
KEAP_AUTHORIZE_URL = "https://accounts.infusionsoft.com/app/oauth/authorize"
KEAP_REST_URL = "https://api.infusionsoft.com/crm/rest/v2"


@dataclass(frozen=True)
class Account:
    """One Keap app (dev, stage, prod...) and the upstream credential keyshim uses for it.

    Secrets are held decrypted in memory only; the store encrypts them at rest.
    """

    name: str
    kind: AccountKind
    created_at: float
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    service_key: str | None = field(default=None, repr=False)
    xmlrpc_url: str = KEAP_XMLRPC_URL
    token_url: str = KEAP_TOKEN_URL
    authorize_url: str = KEAP_AUTHORIZE_URL
    rest_url: str = KEAP_REST_URL
    route: Route = "xmlrpc"
    app_name: str | None = None


@dataclass(frozen=True)
class TokenPair:
    """What a successful token-endpoint grant returned, with expiry made absolute."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    scope: str | None = None


@dataclass(frozen=True)
class RefreshJournal:
    """A refresh in flight: written before the token endpoint is called.

    ``refresh_fingerprint`` identifies the refresh token being spent without storing it twice.
    If a process dies mid-refresh, the next one finds this row and knows it must recover.
    """

    account: str
    refresh_fingerprint: str
    owner: str
    started_at: float
    #: Seconds since the row was written, by the store's own clock (read back, never
    #: written): hosts judge a journal's age by one clock, not by comparing their own clock
    #: with a time another host wrote. None for a journal not read from a store.
    age: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Chain:
    """An account's OAuth token chain: the current pair and its health."""

    account: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    refresh_issued_at: float
    generation: int
    state: ChainState = "ok"
    last_refresh_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0
    in_flight: RefreshJournal | None = None


@dataclass(frozen=True)
class KeyRecord:
    """A local legacy-style key. Only a keyed hash of the secret is ever stored."""

    id: str
    account: str
    label: str
    digest: str = field(repr=False)
    prefix: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
    allow: tuple[str, ...] = ()
    #: The key's rate: at most ``rate_per_min`` calls in any ``rate_window`` seconds (the
    #: column predates other units; a missing window is a minute).
    rate_per_min: int | None = None
    rate_window: float | None = None

    def state(self, now: float) -> str:
        """Human state for listings: active, expired or revoked."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class CallRecord:
    """One call through keyshim, for the audit table and ``shim usage``. Never a secret."""

    at: float
    request_id: str
    key_id: str | None
    account: str | None
    method: str | None
    outcome: str  # "ok", "local", a fault tag such as "RecordNotFound", or "error"
    upstream_status: int | None
    duration_ms: float
    bytes_in: int
    bytes_out: int
    route: str = "xmlrpc"
    #: The DataService table a table method named (its first argument after the key).
    table_name: str | None = None
