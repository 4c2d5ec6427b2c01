"""A token grant has a total deadline (``SHIM_TOKEN_TIMEOUT``), not only httpx's per-step
timeouts: an answer that trickles in cannot hold a refresh, and the lock it runs under, without
end. The journal's "abandoned" window counts every try at that deadline and the longest wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from shim.keap.client import Upstream
from shim.oauth.chains import WRITE_BACK_GRACE, Chains
from shim.oauth.token_policy import TransientTokenError
from shim.settings import Settings

pytestmark = pytest.mark.anyio


class Trickle(httpx.AsyncBaseTransport):
    """A token endpoint that answers 200 at once, then one byte of body every 50 ms, forever."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"{"
            while True:
                await asyncio.sleep(0.05)
                yield b" "

        return httpx.Response(200, headers={"Content-Type": "application/json"}, content=body())


async def test_a_trickling_token_answer_hits_the_total_deadline() -> None:
    upstream = Upstream(transport=Trickle(), token_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TransientTokenError, match=r"no complete answer .* within 0\.5s"):
        await upstream.token_grant("https://keap.test/token", {"grant_type": "x"}, 0.0)
    assert time.monotonic() - started < 2.0


def test_token_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"SHIM_TOKEN_TIMEOUT .* total deadline"):
        Settings.from_env({"SHIM_TOKEN_TIMEOUT": "0"})


def test_the_abandoned_journal_window_outlasts_the_longest_refresh() -> None:
    """Retry-After waits go up to ``refresh_wait`` (above ``retry_cap`` by default)."""
    settings = Settings.from_env({})
    assert settings.refresh_wait > settings.retry_cap
    window = Chains._longest_refresh(type("C", (), {"settings": settings})())  # type: ignore[arg-type]
    tries = settings.refresh_retries + 1
    longest = tries * settings.token_timeout + settings.refresh_retries * settings.refresh_wait
    assert window >= longest + WRITE_BACK_GRACE
