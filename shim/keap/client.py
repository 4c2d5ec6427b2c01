"""Talking to Keap: forward a call, run token grants. The only module that imports httpx.

One shared ``httpx.AsyncClient`` with connection pooling serves every call of a process. The
transport is injected (``httpx.MockTransport`` or ``httpx.ASGITransport`` in tests). Every httpx
failure is mapped onto the keyshim error tree here, so nothing above knows httpx exists.

What is safe to retry is decided by what the failure proves: a connect failure proves the call
never left, a timeout or a reset after sending does not.

Cookies are never kept. Every script's calls share this one client, so a ``Set-Cookie`` from
Keap (a load balancer's affinity cookie, a session) stored in the client's jar would be sent
on with the next script's call: state leaking between callers that keyshim must never carry.
The client's jar is therefore one that never stores anything (``_NoCookies``), which also
saves httpx's per-response cookie extraction (a urllib request and response built and parsed
for every call).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from shim.errors import (
    TokenEndpointError,
    TransientTokenError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from shim.inflate import InflateError, inflater
from shim.keap import http1
from shim.models import TokenPair
from shim.oauth.token_policy import parse_token_answer

#: What tests inject instead of the network (httpx.MockTransport, httpx.ASGITransport).
Transport = httpx.AsyncBaseTransport

#: Parsed upstream URLs kept (a handful of accounts' endpoints; parsing one costs more than
#: the rest of building a request).
_URL_CACHE_SIZE = 64


class _NoCookies(httpx.Cookies):
    """A cookie jar that never stores a cookie (see the module docstring)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


class _Client(httpx.AsyncClient):
    """``httpx.AsyncClient`` whose cookie jar is always the empty ``_NoCookies``."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise TypeError("keyshim's upstream client never keeps cookies")


class _Body(Protocol):
    """Where an answer's body comes from: httpx, or the lean forwarding client (shim.keap.http1).
    Both raise keyshim errors only."""

    def raw(self) -> AsyncIterator[bytes]: ...

    def decoded(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class _HttpxBody:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def raw(self) -> AsyncIterator[bytes]:
        async with _mapped_errors():
            async for chunk in self._response.aiter_raw():
                yield chunk

    async def decoded(self) -> AsyncIterator[bytes]:
        async with _mapped_errors():
            async for chunk in self._response.aiter_bytes():
                yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


class _Http1Body:
    def __init__(self, response: http1.Response) -> None:
        self._response = response

    def raw(self) -> AsyncIterator[bytes]:
        return self._response.chunks()

    async def decoded(self) -> AsyncIterator[bytes]:
        """Only error answers are decoded on the forwarding path; gzip and deflate are what
        keyshim's clients ask for (the header is theirs), anything else passes as is."""
        decoder = inflater(self._response.headers.get("content-encoding", ""))
        async for chunk in self._response.chunks():
            if decoder is None:
                yield chunk
                continue
            try:  # at most 1 MiB at a time: a small chunk may inflate to a great deal
                for piece in decoder.feed(chunk, 1 << 20):
                    yield piece
            except InflateError as exc:
                raise UpstreamError(f"Keap sent a broken {decoder.encoding} body") from exc

    async def aclose(self) -> None:
        self._response.close()


@contextlib.asynccontextmanager
async def _mapped_errors() -> AsyncIterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout() from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"Keap connection broke mid-answer: {type(exc).__name__}") from exc


@dataclass
class UpstreamResponse:
    """An upstream answer whose body has not been read yet (so it can be streamed)."""

    status: int
    headers: Mapping[str, str]
    _body: _Body
    #: Raw bytes already taken by ``peek``; ``iter_raw`` sends them first.
    _head: bytes = b""
    _raw: AsyncIterator[bytes] | None = field(default=None, repr=False)

    def _chunks(self) -> AsyncIterator[bytes]:
        if self._raw is None:
            self._raw = self._body.raw()
        return self._raw

    async def peek(self, size: int) -> bytes:
        """At least the first ``size`` raw bytes (fewer if the body is shorter), without losing
        them: ``iter_raw`` still yields the whole body. Used to spot an in-protocol brownout
        fault before streaming an answer on."""
        while len(self._head) < size:
            chunk = await anext(self._chunks(), None)
            if chunk is None:
                break
            self._head += chunk
        return self._head

    async def iter_raw(self) -> AsyncIterator[bytes]:
        """The body exactly as Keap sent it (still content-encoded)."""
        if self._head:
            head, self._head = self._head, b""
            yield head
        async for chunk in self._chunks():
            yield chunk

    def iter_decoded(self) -> AsyncIterator[bytes]:
        """The body with any Content-Encoding undone (REST file downloads), errors mapped."""
        return self._body.decoded()

    async def body(self, limit: int) -> bytes:
        """The whole decoded body (a REST JSON answer); over ``limit`` bytes is an error."""
        out = bytearray()
        async for chunk in self.iter_decoded():
            out += chunk
            if len(out) > limit:
                await self.aclose()
                raise UpstreamError(f"Keap's answer is larger than {limit} bytes")
        return bytes(out)

    async def read(self, limit: int = 65536) -> bytes:
        """Up to ``limit`` bytes of the decoded body (for error answers)."""
        out = bytearray()
        try:
            async for chunk in self.iter_decoded():
                out += chunk
                if len(out) >= limit:
                    break
        except UpstreamError:
            pass
        return bytes(out[:limit])

    async def aclose(self) -> None:
        await self._body.aclose()


class Upstream:
    """The pooled client for one process.

    ``transport`` replaces httpx's network (tests). Forwarded calls take http1 over the network
    unless a transport is injected; ``forward_http1=True`` keeps them on http1 even then (the
    in-process test stack: calls over loopback, token grants and REST through the transport).
    """

    def __init__(
        self,
        *,
        transport: Transport | None = None,
        forward_http1: bool | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        token_timeout: float = 20.0,
        max_connections: int = 100,
    ) -> None:
        self._token_timeout = httpx.Timeout(
            token_timeout, connect=min(connect_timeout, token_timeout)
        )
        #: A token grant's total deadline: httpx's timeouts are per step, so an answer that
        #: trickles in would otherwise hold the refresh (and its lock) without end.
        self._token_deadline = token_timeout
        self._urls: dict[str, httpx.URL] = {}
        self._client = _Client(
            transport=transport,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
            trust_env=False,
        )
        #: Forwarded calls over the network (the hot path); same limits and trust as httpx.
        self._http1 = (
            http1.Pool(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_connections=max_connections,
                ssl_context=httpx.create_ssl_context,
            )
            if (transport is None if forward_http1 is None else forward_http1)
            else None
        )

    async def aclose(self) -> None:
        if self._http1 is not None:
            await self._http1.aclose()
        await self._client.aclose()

    async def open(self, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        """POST ``body`` and return once the status line and headers are in: a forwarded call.
        Over the network this takes the lean client (shim.keap.http1); with an injected test
        transport (and not ``forward_http1``), httpx."""
        if self._http1 is None:
            return await self.request("POST", url, content=body, headers=headers)
        response = await self._http1.post(url, headers, body)
        return UpstreamResponse(response.status, response.headers, _Http1Body(response))

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Sequence[tuple[str, str]] | None = None,
        json: object = None,
        content: bytes | None = None,
        multipart: Mapping[str, str | tuple[str, bytes, str]] | None = None,
    ) -> UpstreamResponse:
        """Any request (REST v2 as well as XML-RPC); returns once the status and headers are in,
        the body unread. ``multipart`` holds text parts (str) and file parts (name, bytes,
        content type); the file bytes are sent as they are, not copied into one body first.
        Failures are mapped like every other upstream error: what they prove decides what
        may be retried."""
        data: dict[str, str] | None = None
        files: dict[str, Any] | None = None
        if multipart is not None:
            data = {k: v for k, v in multipart.items() if isinstance(v, str)}
            files = {k: v for k, v in multipart.items() if not isinstance(v, str)}
            if not files:  # text parts only (a file rename): still multipart, not a form
                files, data = {k: (None, v) for k, v in data.items()}, None
        request = self._client.build_request(
            method,
            self._url(url),
            params=list(params) if params is not None else None,
            json=json,
            content=content,
            data=data,
            files=files,
            headers=dict(headers),
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.ConnectTimeout as exc:
            where = request.url.copy_with(path="/", query=None)
            raise UpstreamUnavailable(f"Timed out connecting to Keap at {where}") from exc
        except httpx.ConnectError as exc:
            where = request.url.copy_with(path="/", query=None)
            raise UpstreamUnavailable(
                f"Could not connect to Keap at {where}: {_reason(exc)}"
            ) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"Keap connection failed: {_reason(exc)}") from exc
        return UpstreamResponse(response.status_code, response.headers, _HttpxBody(response))

    def _url(self, url: str) -> httpx.URL:
        """``url`` parsed once (httpx copies a URL it is given, so the cached one is safe)."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def token_grant(
        self,
        url: str,
        form: Mapping[str, str],
        now: float,
        *,
        basic: tuple[str, str] | None = None,
    ) -> TokenPair:
        """POST a form to the token endpoint; classify every failure (see ``token_policy``)."""
        headers = {"Accept": "application/json"}
        if basic is not None:
            raw = f"{basic[0]}:{basic[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        try:
            response = await asyncio.wait_for(
                self._client.post(
                    url, data=dict(form), headers=headers, timeout=self._token_timeout
                ),
                self._token_deadline,
            )
        except asyncio.TimeoutError as exc:
            raise TransientTokenError(
                f"no complete answer from the Keap token endpoint within {self._token_deadline:g}s"
            ) from exc
        except httpx.TimeoutException as exc:
            raise TransientTokenError("Timed out talking to the Keap token endpoint") from exc
        except httpx.HTTPError as exc:
            raise TransientTokenError(f"Keap token endpoint failed: {_reason(exc)}") from exc
        return parse_token_answer(response.status_code, response.content, response.headers, now)

    async def post_json(self, url: str, payload: object, timeout: float = 10.0) -> int:
        """POST a JSON document (alert webhooks); returns the status, raises UpstreamError."""
        try:
            response = await self._client.post(url, json=payload, timeout=timeout)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"webhook failed: {_reason(exc)}") from exc
        return response.status_code


def connection_reset(message: str) -> Exception:
    """The error a client sees when the peer cuts the connection mid-answer.

    The simulator raises it to fake a reset in-process (``httpx.ASGITransport`` cannot cut a
    connection), so that httpx stays imported in this one module.
    """
    return httpx.RemoteProtocolError(
        f"peer closed connection without sending complete message body ({message})"
    )


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


__all__ = ["TokenEndpointError", "Transport", "Upstream", "UpstreamResponse"]
