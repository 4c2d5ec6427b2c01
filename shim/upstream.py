"""Talking to Keap: forward a call, run token grants. The only module that imports httpx.

One shared ``httpx.AsyncClient`` with connection pooling serves every call of a process. The
transport is injected (``httpx.MockTransport`` or ``httpx.ASGITransport`` in tests). Every httpx
failure is mapped onto the keyshim error tree here, so nothing above knows httpx exists.

What is safe to retry is decided by what the failure proves: a connect failure proves the call
never left, a timeout or a reset after sending does not.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx

from shim.errors import (
    TokenEndpointError,
    TransientTokenError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from shim.models import TokenPair
from shim.tokens import parse_token_answer

#: What tests inject instead of the network (httpx.MockTransport, httpx.ASGITransport).
Transport = httpx.AsyncBaseTransport


@dataclass
class UpstreamResponse:
    """An upstream answer whose body has not been read yet (so it can be streamed)."""

    status: int
    headers: Mapping[str, str]
    _response: httpx.Response

    async def iter_raw(self) -> AsyncIterator[bytes]:
        """The body exactly as Keap sent it (still content-encoded)."""
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"Keap connection broke mid-answer: {type(exc).__name__}") from exc

    async def read(self, limit: int = 65536) -> bytes:
        """Up to ``limit`` bytes of the decoded body (for error answers)."""
        out = bytearray()
        try:
            async for chunk in self._response.aiter_bytes():
                out += chunk
                if len(out) >= limit:
                    break
        except httpx.HTTPError:
            pass
        return bytes(out[:limit])

    async def aclose(self) -> None:
        await self._response.aclose()


class Upstream:
    """The pooled client for one process."""

    def __init__(
        self,
        *,
        transport: Transport | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        token_timeout: float = 20.0,
        max_connections: int = 100,
    ) -> None:
        self._token_timeout = httpx.Timeout(token_timeout, connect=connect_timeout)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def open(self, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        """POST ``body`` and return once the status line and headers are in."""
        request = self._client.build_request("POST", url, content=body, headers=dict(headers))
        try:
            response = await self._client.send(request, stream=True)
        except httpx.ConnectTimeout as exc:
            raise UpstreamUnavailable("Timed out connecting to Keap") from exc
        except httpx.ConnectError as exc:
            raise UpstreamUnavailable(f"Could not connect to Keap: {_reason(exc)}") from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"Keap connection failed: {_reason(exc)}") from exc
        return UpstreamResponse(response.status_code, response.headers, response)

    async def token_grant(
        self,
        url: str,
        form: Mapping[str, str],
        now: float,
        *,
        basic: tuple[str, str] | None = None,
    ) -> TokenPair:
        """POST a form to the token endpoint; classify every failure (see shim.tokens)."""
        headers = {"Accept": "application/json"}
        if basic is not None:
            raw = f"{basic[0]}:{basic[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        try:
            response = await self._client.post(
                url, data=dict(form), headers=headers, timeout=self._token_timeout
            )
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
