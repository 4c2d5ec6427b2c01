"""The little raw-ASGI plumbing the simulator needs: a parsed request and response senders.

The project has no web framework (keyshim's own app is raw ASGI too, and the ASGI types come
from its shim/serve/asgi.py), and the simulator needs
only a handful of routes, so a request value and a few ``send`` helpers are all there is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from shim.serve.asgi import Message, Receive, Scope, Send

JSON_TYPE = "application/json;charset=UTF-8"


@dataclass(frozen=True)
class Request:
    """One HTTP request, body read in full (the simulator never streams request bodies)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        """The body as ``application/x-www-form-urlencoded`` fields (last value wins)."""
        return dict(parse_qsl(self.body.decode("latin-1"), keep_blank_values=True))

    def json(self) -> Any:
        """The body as JSON; an empty body counts as ``{}``. Raises ValueError."""
        return json.loads(self.body) if self.body.strip() else {}


async def read_request(scope: Scope, receive: Receive) -> Request:
    """Read the whole body, joining chunks once (bodies can be tens of MB)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    return Request(scope["method"], scope["path"], query, headers, b"".join(chunks))


@dataclass
class Answer:
    """A response not yet sent, so fault injection can delay, replace or truncate it.

    ``body`` is either one bytes object or a list of chunks (a 30 MB file is streamed as
    chunks and never joined).
    """

    status: int
    body: bytes | list[bytes]
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def length(self) -> int:
        if isinstance(self.body, bytes):
            return len(self.body)
        return sum(len(chunk) for chunk in self.body)

    def chunks(self) -> list[bytes]:
        return [self.body] if isinstance(self.body, bytes) else self.body

    def start_message(self, length: int | None = None) -> Message:
        """The ``http.response.start`` message; ``length`` overrides Content-Length."""
        headers = [(b"content-type", self.content_type.encode("latin-1"))]
        headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers)
        size = self.length if length is None else length
        headers.append((b"content-length", str(size).encode("ascii")))
        return {"type": "http.response.start", "status": self.status, "headers": headers}


def gateway_fault(text: str, errorcode: str) -> dict[str, Any]:
    """The JSON error body Keap's Apigee gateway sends (401, 429, 503...)."""
    return {"fault": {"faultstring": text, "detail": {"errorcode": errorcode}}}


def json_answer(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Answer:
    return Answer(status, json.dumps(data).encode("utf-8"), JSON_TYPE, headers or [])


async def send_answer(send: Send, answer: Answer) -> None:
    await send(answer.start_message())
    for chunk in answer.chunks():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
