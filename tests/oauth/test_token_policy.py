import json
import random

import pytest

from shim.errors import SpentRefreshToken, TokenEndpointError, TransientTokenError
from shim.models import Chain
from shim.oauth import token_policy as tokens


def answer(status: int, body: object, headers: dict[str, str] | None = None) -> object:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return tokens.parse_token_answer(status, raw, headers or {}, now=1000.0)


def test_good_answer() -> None:
    pair = answer(
        200,
        {
            "access_token": "A",
            "refresh_token": "R",
            "expires_in": 86400,
            "token_type": "bearer",
            "scope": "full|ab123.infusionsoft.com",
        },
    )
    assert pair.expires_at == 1000.0 + 86400  # type: ignore[attr-defined]
    assert tokens.app_name_from_scope(pair.scope) == "ab123"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "body",
    [
        {"error": "invalid_grant", "error_description": "Invalid refresh token"},
        {"error": "invalid_request", "error_description": "Invalid Refresh Token"},
    ],
)
def test_both_spent_bodies_are_permanent(body: dict[str, str]) -> None:
    with pytest.raises(SpentRefreshToken):
        answer(400, body)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(status: int) -> None:
    with pytest.raises(TransientTokenError):
        answer(status, b"<html>oops</html>")


def test_429_honours_retry_after() -> None:
    with pytest.raises(TransientTokenError) as info:
        answer(429, {"code": "429"}, {"retry-after": "7"})
    assert info.value.retry_after == 7.0


def test_other_errors_are_not_spent() -> None:
    with pytest.raises(TokenEndpointError) as info:
        answer(401, {"error": "invalid_client"})
    assert not isinstance(info.value, SpentRefreshToken | TransientTokenError)


def chain(expires_at: float, issued: float = 0.0, state: str = "ok") -> Chain:
    return Chain(
        "a", "A", "R", expires_at=expires_at, refresh_issued_at=issued, generation=1, state=state
    )  # type: ignore[arg-type]


def test_due_policy() -> None:
    h = 3600.0
    assert tokens.is_due(chain(100 * h), 0, 6 * h, 30 * 86400) is None
    assert tokens.is_due(chain(5 * h), 0, 6 * h, 30 * 86400) == "expiry"
    assert tokens.is_due(chain(100 * 86400), 31 * 86400, 6 * h, 30 * 86400) == "keepalive"
    assert tokens.is_due(chain(0, state="needs_reauth"), 10, 6 * h, 30 * 86400) is None
    assert tokens.needs_inline_refresh(chain(100), 50, 60)
    assert not tokens.needs_inline_refresh(chain(100), 30, 60)


def test_backoff_bounded_and_growing() -> None:
    rng = random.Random(1)
    waits = [tokens.backoff(a, base=0.5, cap=10, rng=rng) for a in range(10)]
    assert all(0.25 <= w <= 10 for w in waits)
    assert max(waits[5:]) > max(waits[:2])


def test_fingerprint_is_not_the_token() -> None:
    fp = tokens.fingerprint("secret-refresh-token")
    assert len(fp) == 16 and "secret" not in fp


def test_refresh_lock_name() -> None:
    # Every process names an account's refresh lease the same way (stores and tests read it).
    assert tokens.refresh_lock("prod") == "refresh:prod"
