"""The one path every request to Keap takes: forwarded XML-RPC calls and each REST v2 request
of a translated call alike (so a call fanning out into 3 requests pays 3).

For each request, in this order:

1. the quota budget is waited for (or ``[Throttled]`` at once, see budget.py);
2. the credential is picked after the wait, so a token cannot expire in the queue: the
   account's bearer token from its chain, or its service key as ``X-Keap-API-Key``;
3. a 401 means Keap did not run the request: one single-flight refresh and one retry;
   nothing else is ever retried. A token such a refresh produced is never refreshed again
   for a 401 (Keap refusing fresh tokens would otherwise cost a refresh every call): its 401s
   are ``[InvalidKey]`` faults (Keap's legacy word for a refused credential) that name the
   account and say to authorize it again;
4. Keap's quota headers are kept for publishing, and a 429 pauses the credential for its
   ``Retry-After``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from shim.errors import AccountTokenRefused
from shim.keap.budget import Budget, quota_figures
from shim.keap.client import Upstream, UpstreamResponse
from shim.models import Account
from shim.oauth.chains import Chains
from shim.oauth.token_policy import fingerprint, parse_retry_after
from shim.store.protocol import Store

Params = Sequence[tuple[str, str]]
Multipart = Mapping[str, str | tuple[str, bytes, str]]
_Send = Callable[[dict[str, str]], Awaitable[UpstreamResponse]]


class Observer(Protocol):
    """Where the gateway reports its timings (``shim.serve.metrics.Metrics``)."""

    def observe_upstream(self, seconds: float) -> None: ...

    def observe_budget_wait(self, seconds: float) -> None: ...


class Gateway:
    """Per-process: the budget, the chains and the upstream client, used in one way."""

    def __init__(
        self,
        upstream: Upstream,
        chains: Chains,
        budget: Budget,
        store: Store,
        observer: Observer,
    ) -> None:
        self.upstream = upstream
        self.chains = chains
        self.budget = budget
        self.store = store
        self.observer = observer
        #: Keap's latest quota figures per account, until the next ``publish_quota``.
        self.quota: dict[str, tuple[dict[str, str], float]] = {}
        #: Per account, the fingerprint of the access token a refresh for a 401 produced: a 401
        #: for that token is Keap refusing a fresh token, not a stale one.
        self._refreshed_for_401: dict[str, str] = {}

    async def send(
        self, account: Account, url: str, body: bytes, headers: dict[str, str]
    ) -> UpstreamResponse:
        """A forwarded XML-RPC call; takes the upstream's lean POST path."""

        def post(sent: dict[str, str]) -> Awaitable[UpstreamResponse]:
            return self.upstream.open(url, body, sent)

        return await self._authenticated(account, headers, post)

    async def request(
        self,
        account: Account,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        params: Params | None = None,
        json: object = None,
        content: bytes | None = None,
        multipart: Multipart | None = None,
    ) -> UpstreamResponse:
        """Any request upstream (each REST v2 request of a translated call, and each REST
        request passed through, whose body goes as ``content``)."""

        def send(sent: dict[str, str]) -> Awaitable[UpstreamResponse]:
            return self.upstream.request(
                method,
                url,
                headers=sent,
                params=params,
                json=json,
                content=content,
                multipart=multipart,
            )

        return await self._authenticated(account, headers, send)

    async def _authenticated(
        self, account: Account, headers: dict[str, str], send: _Send
    ) -> UpstreamResponse:
        """The 401 rule: Keap did not run the call, so refresh (single-flight) and send once
        more; but once per token: a token that refresh produced gets no refresh of its own."""
        response, generation, token = await self._send_once(account, headers, send)
        if response.status != 401 or generation is None:
            return response
        await response.aclose()
        if self._refreshed_for_401.get(account.name) == token:
            raise self._refused(account, "though keyshim refreshed it for an earlier 401")
        await self.chains.refresh(account, seen_generation=generation, reason="401")
        response, _, token = await self._send_once(account, headers, send)
        if token is not None:
            self._refreshed_for_401[account.name] = token
        if response.status == 401:
            await response.aclose()
            raise self._refused(account, "even after keyshim refreshed it")
        return response

    @staticmethod
    def _refused(account: Account, when: str) -> AccountTokenRefused:
        return AccountTokenRefused(account.name, when)

    async def _send_once(
        self, account: Account, headers: dict[str, str], send: _Send
    ) -> tuple[UpstreamResponse, int | None, str | None]:
        """One request; with the generation and the fingerprint of the bearer token it used."""
        started = time.perf_counter()
        await self.budget.acquire(account)
        sent = time.perf_counter()
        if sent - started > 0.001:
            self.observer.observe_budget_wait(sent - started)
        credential, generation = await self.credential(account)
        bearer = credential.get("Authorization")
        token = fingerprint(bearer) if bearer is not None else None
        response = await send({**headers, **credential})
        self.observer.observe_upstream(time.perf_counter() - sent)
        figures = quota_figures(response.headers)
        if figures:
            self.quota[account.name] = (figures, time.time())
        if response.status == 429:
            self.budget.pause(account, parse_retry_after(response.headers.get("retry-after")))
        return response, generation, token

    async def credential(self, account: Account) -> tuple[dict[str, str], int | None]:
        """The header that authenticates to Keap, and the token generation it came from."""
        if account.kind == "oauth":
            token, generation = await self.chains.access_token(account)
            return {"Authorization": f"Bearer {token}"}, generation
        return {"X-Keap-API-Key": account.service_key or ""}, None

    def publish_quota(self, now: float) -> None:
        """Write the quota figures seen since the last call (an audit after-flush hook)."""
        if self.quota:
            figures, self.quota = self.quota, {}
            self.store.put_quota(figures)
