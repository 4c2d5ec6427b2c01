"""Alerts: always logged, POSTed as JSON to a webhook with retries, never carrying a secret."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import AsyncIterator

import httpx
import pytest

from shim.errors import ReauthorizationRequired, UpstreamError
from shim.keap.client import Upstream
from shim.models import Account, TokenPair
from shim.oauth.alerts import Alerter
from shim.oauth.chains import ChainEvent, Chains
from shim.settings import Settings
from shim.store.sqlite import SqliteStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

HOOK = "http://hooks.test/keyshim"
CLIENT_SECRET = "CLIENT-SECRET-do-not-leak"
ACCESS, REFRESH = "AT-do-not-leak", "RT-do-not-leak"


class Webhook:
    """A webhook receiver and a token endpoint behind one MockTransport."""

    def __init__(self) -> None:
        self.answers: deque[int | Exception] = deque()
        self.received: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(400, json={"error": "invalid_grant", "error_description": "x"})
        self.received.append(request)
        answer = self.answers.popleft() if self.answers else 204
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    @property
    def payloads(self) -> list[dict[str, object]]:
        return [json.loads(r.content) for r in self.received]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Webhook, Upstream]]:
    webhook = Webhook()
    upstream = Upstream(transport=httpx.MockTransport(webhook.handler))
    yield webhook, upstream
    await upstream.aclose()


@pytest.fixture(autouse=True)
def _info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shim.oauth.alerts")


def delivered(caplog: pytest.LogCaptureFixture) -> list[object]:
    """The payloads the webhook accepted, from the alerter's log."""
    return [
        getattr(r, "shim", None)
        for r in caplog.records
        if r.name == "shim.oauth.alerts" and r.getMessage().startswith("alert delivered")
    ]


def event(kind: str = "dead", error: str | None = "Keap rejected the refresh token") -> ChainEvent:
    return ChainEvent("prod", kind, error, 1_700_000_000.0)


async def test_dead_chain_posts_json_without_secrets(
    hook: tuple[Webhook, Upstream],
    settings: Settings,
    store: SqliteStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    webhook, upstream = hook
    alerter = Alerter(HOOK, upstream.post_json, sleep=Sleeps())
    chains = Chains(store, upstream, settings, owner="a", on_event=alerter)
    account = Account(
        name="prod",
        kind="oauth",
        created_at=0,
        client_id="client-1",
        client_secret=CLIENT_SECRET,
        token_url="http://keap.test/token",
    )
    store.add_account(account)
    store.put_tokens("prod", TokenPair(ACCESS, REFRESH, 0.0), 0.0)
    with pytest.raises(ReauthorizationRequired):
        await chains.access_token(account)
    await alerter.drain()

    assert len(webhook.received) == 1
    request = webhook.received[0]
    assert request.method == "POST" and str(request.url) == HOOK
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    payload = webhook.payloads[0]
    assert payload["source"] == "keyshim"
    assert payload["account"] == "prod" and payload["event"] == "dead"
    assert isinstance(payload["error"], str) and "invalid_grant" in payload["error"]
    assert "shim account authorize" in str(payload["action"])
    assert isinstance(payload["at"], float) and payload["host"]
    raw = request.content.decode()
    for secret in (CLIENT_SECRET, ACCESS, REFRESH):
        assert secret not in raw
    assert delivered(caplog) == [payload]


@pytest.mark.parametrize(
    "kind,action",
    [("dead", "shim account authorize"), ("degraded", "keeps retrying"), ("recovered", "none")],
)
async def test_each_event_names_its_action(
    hook: tuple[Webhook, Upstream], kind: str, action: str
) -> None:
    webhook, upstream = hook
    alerter = Alerter(HOOK, upstream.post_json, sleep=Sleeps())
    await alerter(event(kind, None if kind == "recovered" else "boom"))
    await alerter.drain()
    payload = webhook.payloads[0]
    assert payload["event"] == kind and action in str(payload["action"])


@pytest.mark.parametrize(
    "failures",
    [
        [500, 502],
        [httpx.ConnectError("[Errno 111] Connection refused"), 503],
        [httpx.ReadTimeout("timed out")],
    ],
    ids=["5xx", "connection-error", "timeout"],
)
async def test_retries_with_backoff_then_delivers(
    hook: tuple[Webhook, Upstream],
    failures: list[int | Exception],
    caplog: pytest.LogCaptureFixture,
) -> None:
    webhook, upstream = hook
    webhook.answers.extend([*failures, 200])
    sleeps = Sleeps()
    alerter = Alerter(HOOK, upstream.post_json, retries=4, backoff=0.5, sleep=sleeps)
    await alerter(event())
    await alerter.drain()
    assert len(webhook.received) == len(failures) + 1
    assert sleeps.waits == [0.5, 1.0][: len(failures)]
    assert len(delivered(caplog)) == 1
    assert webhook.payloads[0] == webhook.payloads[-1]  # the same document every time


async def test_gives_up_after_retries(
    hook: tuple[Webhook, Upstream], caplog: pytest.LogCaptureFixture
) -> None:
    webhook, upstream = hook
    webhook.answers.extend([500] * 10)
    sleeps = Sleeps()
    alerter = Alerter(HOOK, upstream.post_json, retries=3, backoff=1.0, sleep=sleeps)
    with caplog.at_level(logging.ERROR, logger="shim.oauth.alerts"):
        await alerter(event())
        await alerter.drain()
    assert len(webhook.received) == 4
    assert sleeps.waits == [1.0, 2.0, 4.0]
    assert delivered(caplog) == []
    assert "gave up after 4 tries: HTTP 500" in caplog.text


async def test_a_fake_post_json_and_a_4xx_is_not_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    posted: list[tuple[str, object]] = []
    answers = deque([UpstreamError("webhook failed: refused"), 404, 201])

    async def post_json(url: str, payload: object) -> int:
        posted.append((url, payload))
        answer = answers.popleft()
        if isinstance(answer, Exception):
            raise answer
        return answer

    sleeps = Sleeps()
    alerter = Alerter(HOOK, post_json, retries=2, backoff=0.1, sleep=sleeps)
    await alerter(event("degraded", "HTTP 503"))
    await alerter.drain()
    assert [url for url, _ in posted] == [HOOK] * 3
    assert sleeps.waits == [0.1, 0.2]
    assert len(delivered(caplog)) == 1


async def test_no_webhook_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def post_json(url: str, payload: object) -> int:
        raise AssertionError("no webhook configured: nothing is posted")

    alerter = Alerter("", post_json, sleep=Sleeps())
    with caplog.at_level(logging.DEBUG, logger="shim.oauth.alerts"):
        await alerter(event("dead"))
        await alerter(event("recovered", None))
        await alerter.drain()
    assert delivered(caplog) == []
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "shim.oauth.alerts"]
    assert records == [
        (logging.ERROR, "chain prod: dead"),
        (logging.WARNING, "chain prod: recovered"),
    ]
    shim = caplog.records[0].shim  # type: ignore[attr-defined]
    assert shim["account"] == "prod" and shim["event"] == "dead"


async def test_delivery_runs_in_the_background(hook: tuple[Webhook, Upstream]) -> None:
    """The event sink returns before the webhook is reached (a refresh never waits on it)."""
    webhook, upstream = hook
    alerter = Alerter(HOOK, upstream.post_json, sleep=Sleeps())
    await alerter(event())
    assert webhook.received == []
    await alerter.drain()
    assert len(webhook.received) == 1
