"""Token policy: pure decisions about OAuth token answers and refresh timing.

Everything here takes ``now`` and plain values, so the rules for "is it due", "what did the
token endpoint mean" and "how long to back off" are tested without a clock or a socket.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping

from shim.errors import SpentRefreshToken, TokenEndpointError, TransientTokenError
from shim.models import Chain, TokenPair

#: Both bodies Keap's gateways send for a used or bad refresh token (docs/keap.md#tokens).
SPENT_ERRORS = frozenset({"invalid_grant", "invalid_request"})


def fingerprint(refresh_token: str) -> str:
    """A short non-secret identifier of a refresh token, for the refresh journal and logs."""
    return hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()[:16]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (the delta form; dates are not used by Keap)."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


def parse_token_answer(
    status: int, body: bytes, headers: Mapping[str, str], now: float
) -> TokenPair:
    """Turn a token-endpoint answer into a TokenPair or the right error.

    Spent or invalid refresh tokens are permanent (the chain may be dead); 5xx and 429 are
    transient and never kill a chain; anything else is a plain TokenEndpointError.
    """
    if status == 429:
        raise TransientTokenError(
            "Keap token endpoint is throttling (429)",
            status=status,
            retry_after=parse_retry_after(headers.get("retry-after")),
        )
    if status >= 500:
        raise TransientTokenError(f"Keap token endpoint answered HTTP {status}", status=status)
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if status != 200:
        error = data.get("error") if isinstance(data, dict) else None
        if status in (400, 401) and error in SPENT_ERRORS:
            description = str(data.get("error_description", "")) if isinstance(data, dict) else ""
            raise SpentRefreshToken(
                f"Keap rejected the refresh token: {error}: {description}"[:200], status=status
            )
        raise TokenEndpointError(
            f"Keap token endpoint answered HTTP {status} ({error or 'no error code'})",
            status=status,
        )
    if not isinstance(data, dict):
        raise TransientTokenError("Keap token endpoint answered 200 without JSON", status=status)
    try:
        access = str(data["access_token"])
        refresh = str(data["refresh_token"])
        expires_in = float(data.get("expires_in", 86400))
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenEndpointError(f"token answer lacks {exc}", status=status) from None
    scope = data.get("scope")
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        expires_at=now + expires_in,
        scope=str(scope) if scope is not None else None,
    )


def app_name_from_scope(scope: str | None) -> str | None:
    """``full|ab123.infusionsoft.com`` names the Keap app ``ab123``."""
    if not scope or "|" not in scope:
        return None
    host = scope.split("|", 1)[1].strip()
    return host.split(".", 1)[0] or None


def needs_inline_refresh(chain: Chain, now: float, margin: float) -> bool:
    """Refresh before forwarding when the access token has less than ``margin`` left."""
    return chain.expires_at - now < margin


def is_due(chain: Chain, now: float, refresh_margin: float, keepalive_age: float) -> str | None:
    """Why the background scheduler should refresh this chain now, or None.

    Ahead of expiry (so several tries fit before the token dies), or when the refresh token
    has been idle so long that it might reach its own end (about 45 days at Keap).
    """
    if chain.state != "ok":
        return None
    if chain.expires_at - now < refresh_margin:
        return "expiry"
    if now - chain.refresh_issued_at > keepalive_age:
        return "keepalive"
    return None


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: a random wait in [0, min(cap, base * 2**attempt)]."""
    high = min(cap, base * (2**attempt))
    return (rng or random).uniform(base / 2, max(base / 2, high))


def refresh_lock(account: str) -> str:
    """The name of the store lock that lets one process at a time refresh ``account``."""
    return f"refresh:{account}"
