"""Raw-ASGI plumbing: the type aliases (defined here once) and the body and answer helpers.

keyshim's app and the bundled simulator are raw ASGI (no web framework: every layer is paid on
every call). This module is what both build on: reading a request body within limits (size,
time, gzip), streaming Keap's answer back, and sending small plain or XML answers.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from shim.errors import (
    ClientStalled,
    ParseError,
    RequestTimeout,
    RequestTooLarge,
    UnsupportedContentType,
    UpstreamError,
)
from shim.inflate import InflateError, Inflater, inflater
from shim.rest.route import BROWNOUT
from shim.serve.audit import fault_tag

if TYPE_CHECKING:
    from shim.keap.client import UpstreamResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Response headers of Keap's that reach the script (quota figures help people tune).
PASS_HEADERS = (b"content-type", b"content-length", b"content-encoding")
#: Content types a legacy client may send. PHP's curl defaults to the form type for a string
#: body, and some hand-made clients send text/plain or nothing at all.
ACCEPTED_TYPES = frozenset(
    {"", "text/xml", "application/xml", "text/plain", "application/x-www-form-urlencoded"}
)


class Streamed(Protocol):
    """What ``stream`` records of the answer it sends (one call's trace)."""

    outcome: str
    bytes_out: int
    started_response: bool


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def read_body(scope: Scope, receive: Receive, limit: int, timeout: float) -> bytes:
    """The whole request body, within ``limit`` bytes (before and after gzip decoding) and
    ``timeout`` seconds (a slow sender gets 408 instead of holding memory and a task)."""
    ctype = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if ctype not in ACCEPTED_TYPES:
        raise UnsupportedContentType(f"XML-RPC requests are text/xml, not {ctype[:60]!r}")
    declared = header(scope, b"content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request body of {declared} bytes is over the {limit}-byte limit")
    declared_size = scope.get("extensions", {}).get(DECLARED)
    if sys.version_info >= (3, 11):  # one timer for the whole body, no extra task
        try:
            async with asyncio.timeout(timeout):
                chunks = await _receive_all(receive, limit, declared_size)
        except TimeoutError:
            raise _late(timeout) from None
    else:
        try:
            chunks = await asyncio.wait_for(_receive_all(receive, limit, declared_size), timeout)
        except asyncio.TimeoutError:
            raise _late(timeout) from None
    body = b"".join(chunks)
    encoding = (header(scope, b"content-encoding") or "").strip().lower()
    decoder = inflater(encoding)
    if decoder is not None:
        body = _decompress(decoder, body, limit)
    elif encoding not in ("", "identity"):
        raise ParseError(f"unsupported Content-Encoding {encoding[:40]!r}")
    return body


def _late(timeout: float) -> RequestTimeout:
    return RequestTimeout(f"The request body did not arrive within {timeout:g}s")


async def _receive_all(
    receive: Receive, limit: int, declared_size: Callable[[], int] | None = None
) -> list[bytes]:
    """``declared_size``: what a chunked body's size lines declare so far (the server wakes
    this reader when one is read), so a chunk over the limit is refused before its data."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ParseError("client disconnected before sending the whole body")
        if declared_size is not None and declared_size() > limit:
            raise RequestTooLarge(
                f"Request body declares chunks of {declared_size()} bytes, over the "
                f"{limit}-byte limit"
            )
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks


def _decompress(decoder: Inflater, data: bytes, limit: int) -> bytes:
    try:
        out = decoder.head(data, limit + 1)
    except InflateError as exc:
        raise ParseError(f"bad compressed body: {exc}") from None
    if len(out) > limit or decoder.cut:
        raise RequestTooLarge(f"Decompressed request body is over the {limit}-byte limit")
    if not decoder.eof:
        raise ParseError("truncated compressed body")
    return out


#: The ASGI scope extension through which the server tells the app how large a chunked body
#: says it is so far (the sum of the chunk sizes read): a callable returning bytes.
DECLARED = "keyshim.declared"
#: The ASGI scope extension through which the server lets the app cut a client at once (a
#: plain close would wait for the unread answer to drain, which a stalled client never does).
ABORT = "keyshim.abort"


def abort_client(scope: Scope) -> None:
    """Cut the client's connection at once, if the server offers that."""
    abort = scope.get("extensions", {}).get(ABORT)
    if abort is not None:
        abort()


async def _send_within(send: Send, message: Message, timeout: float | None) -> None:
    """``send``, but a client that takes nothing for ``timeout`` seconds is given up on."""
    if timeout is None:
        await send(message)
        return
    try:
        if sys.version_info >= (3, 11):  # a timer, not a task per part
            async with asyncio.timeout(timeout):
                await send(message)
        else:
            await asyncio.wait_for(send(message), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise ClientStalled(f"The client took none of its answer for {timeout:g}s") from None


async def stream(
    send: Send,
    response: UpstreamResponse,
    t: Streamed,
    *,
    http10: bool,
    limit: int,
    write_timeout: float | None = None,
) -> None:
    """Pass Keap's answer through as it arrives.

    An HTTP/1.0 client cannot read chunked encoding, and without a Content-Length from Keap
    the server would have to chunk; for that one case the answer is collected (up to
    ``limit``) and sent with its length.

    Each part must be taken by the client within ``write_timeout`` (else ``ClientStalled``):
    the answer is then closed, which frees its Keap connection for other callers.
    """
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in response.headers.items()
        if k.encode("latin-1").lower() in PASS_HEADERS or k.lower().startswith("x-keap-product-")
    ]
    identity = "content-encoding" not in response.headers
    buffer: list[bytes] | None = None
    if http10 and "content-length" not in response.headers:
        buffer = []
    else:
        t.started_response = True
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
    try:
        async for chunk in response.iter_raw():
            if not chunk:
                continue
            if t.bytes_out == 0 and identity:
                t.outcome = fault_tag(chunk[:4096]) or "ok"
                if t.outcome != "ok" and BROWNOUT.search(chunk[:4096]):
                    t.outcome = "Brownout"  # counted by `shim status` (shim/rest/outages.py)
            t.bytes_out += len(chunk)
            if buffer is None:
                message = {"type": "http.response.body", "body": chunk, "more_body": True}
                await _send_within(send, message, write_timeout)
                continue
            if t.bytes_out > limit:
                raise UpstreamError("Keap's answer is too large to send to an HTTP/1.0 client")
            buffer.append(chunk)
    finally:
        await response.aclose()
    if buffer is not None:
        body = b"".join(buffer)
        headers.append((b"content-length", str(len(body)).encode()))
        t.started_response = True
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        message = {"type": "http.response.body", "body": body, "more_body": False}
        await _send_within(send, message, write_timeout)
        return
    await _send_within(send, {"type": "http.response.body", "more_body": False}, write_timeout)


async def xml(send: Send, body: bytes, *, close: bool = False, status: int = 200) -> int:
    """A whole XML answer (a fault or a local answer); returns its length."""
    headers = [(b"content-type", b"text/xml; charset=UTF-8")]
    if close:
        headers.append((b"connection", b"close"))
    await plain(send, status, body, headers)
    return len(body)


async def plain(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = list(headers or [(b"content-type", b"text/plain; charset=utf-8")])
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
