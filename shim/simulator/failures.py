"""Fault injection: a queue of canned failures, and a gate that holds refresh grants.

Each request to an endpoint with a failure queue takes the next failure, if any. A failure
either replaces the request (``after=False``: nothing is processed, so a refresh token stays
valid) or spoils the answer of a request that *was* processed (``after=True``: the refresh
token is spent and the new pair is lost, the way Keap loses answers in the failure reports).

Kinds (spelled ``"500"``, ``"reset-after"`` or ``{"kind": "timeout", "seconds": 2}``):

* ``500``: HTTP 500 with an HTML error page; ``503``: HTTP 503 with an Apigee JSON fault.
* ``401``: HTTP 401 with the gateway's "Invalid Access Token" JSON, whatever the token (Keap
  refusing a token it issued; queue several for a Keap that keeps refusing fresh tokens too).
* ``429``: HTTP 429 ``{"code":"429","message":"Quota Exceeded",...}`` with ``Retry-After``.
* ``timeout``: stall ``seconds`` (default ``SimConfig.failure_timeout``), then answer 504;
  ``timeout-after``: process, stall, then send the real answer (to a client that gave up).
* ``reset``: start a response whose ``Content-Length`` is larger than what is sent, send a
  part, then break off. Over a socket uvicorn closes the connection mid-body, and the client
  sees ``httpx.RemoteProtocolError``. In-process (``httpx.ASGITransport``) nothing can be cut,
  so the app raises that same ``httpx.RemoteProtocolError`` and the transport hands it to the
  caller: either way a client sees the error class it would get from a real broken connection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shim.keap.client import connection_reset
from shim.serve.asgi import Send
from shim.simulator.asgi import Answer, gateway_fault, json_answer, send_answer

KINDS = ("500", "503", "401", "429", "timeout", "reset")
SERVICE_UNAVAILABLE = gateway_fault(
    "The Service is temporarily unavailable", "messaging.adaptors.http.flow.ServiceUnavailable"
)
GATEWAY_TIMEOUT = gateway_fault("Gateway Timeout", "messaging.adaptors.http.flow.GatewayTimeout")
INVALID_TOKEN = gateway_fault("Invalid Access Token", "keymanagement.service.invalid_access_token")

_ERROR_PAGE = (
    b"<html><head><title>500 Internal Server Error</title></head><body>"
    b"<h1>Internal Server Error</h1><p>The server encountered an internal error.</p>"
    b"</body></html>"
)


@dataclass(frozen=True)
class Failure:
    kind: str
    after: bool = False
    seconds: float | None = None


def parse_failure(spec: Any) -> Failure:
    """``"503"``, ``"reset-after"`` or ``{"kind": ..., "after": bool, "seconds": float}``."""
    if isinstance(spec, str):
        kind, _, suffix = spec.partition("-")
        if kind in KINDS and suffix in ("", "after"):
            return Failure(kind, after=suffix == "after")
    elif isinstance(spec, Mapping) and spec.get("kind") in KINDS:
        seconds = spec.get("seconds")
        if seconds is None or (isinstance(seconds, (int, float)) and not isinstance(seconds, bool)):
            return Failure(
                str(spec["kind"]),
                after=bool(spec.get("after", False)),
                seconds=None if seconds is None else float(seconds),
            )
    raise ValueError(f"not a failure: {spec!r} (kinds: {', '.join(KINDS)}, '-after' suffix)")


class FailureQueue:
    """Failures consumed one per request, oldest first."""

    def __init__(self) -> None:
        self._queue: deque[Failure] = deque()

    def push(self, specs: list[Any]) -> None:
        """Validate all specs before queueing any."""
        self._queue.extend([parse_failure(spec) for spec in specs])

    def pop(self) -> Failure | None:
        return self._queue.popleft() if self._queue else None

    def clear(self) -> None:
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)


def canned_answer(kind: str, retry_after: int) -> Answer:
    """What a failing gateway answers instead of the real response."""
    if kind == "500":
        return Answer(500, _ERROR_PAGE, "text/html")
    if kind == "503":
        return json_answer(503, SERVICE_UNAVAILABLE)
    if kind == "401":
        return json_answer(401, INVALID_TOKEN)
    if kind == "429":
        body = {"code": "429", "message": "Quota Exceeded", "status": "Request Throttled"}
        return json_answer(429, body, [("Retry-After", str(retry_after))])
    return json_answer(504, GATEWAY_TIMEOUT)


async def deliver(
    send: Send, answer: Answer, failure: Failure | None, timeout: float, retry_after: int
) -> None:
    """Send ``answer``, spoiled by ``failure`` if there is one (see the module docstring).

    For ``after=False`` failures the caller has not processed the request, and ``answer`` is
    not used except by ``reset``, which breaks off whatever it is given.
    """
    if failure is None:
        await send_answer(send, answer)
        return
    if failure.kind == "timeout":
        await asyncio.sleep(timeout if failure.seconds is None else failure.seconds)
        await send_answer(send, answer if failure.after else canned_answer("timeout", 0))
    elif failure.kind == "reset":
        await _reset(send, answer)
    else:
        await send_answer(send, canned_answer(failure.kind, retry_after))


async def _reset(send: Send, answer: Answer) -> None:
    first = answer.chunks()[0]
    part = first[: len(first) // 2]
    await send(answer.start_message(length=answer.length + 1024))
    await send({"type": "http.response.body", "body": part, "more_body": True})
    raise connection_reset("simulated reset")


class HoldGate:
    """Parks requests until a test releases them (``SimConfig.hold_refresh``)."""

    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def held(self) -> int:
        return len(self._waiting)

    async def wait(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            await future
        finally:
            if future in self._waiting:
                self._waiting.remove(future)

    def release(self, count: int | None = None) -> int:
        """Let the oldest ``count`` (default: all) held requests go on; returns how many."""
        released = 0
        while self._waiting and (count is None or released < count):
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)
            released += 1
        return released
