"""Every REST v2 request keyshim makes, with the rules forwarded XML-RPC calls follow.

Each request goes through the gateway (shim/keap/gateway.py), the path forwarded XML-RPC
calls take, so it gets:

* the same credential: the account's bearer token from its chain, picked after the budget
  wait, or its service key as ``X-Keap-API-Key`` (Keap documents that header for PATs and
  SAKs on REST too);
* the same 401 rule: a 401 means Keap did not run the request, so one single-flight refresh
  and one retry; a second 401 is ``[UpstreamAuth]``, as for XML-RPC;
* the same quota budget: a call that fans out into three REST requests waits for three turns.

And:
* Keap's REST error answers become the legacy faults scripts already handle (keap-rest-v2
  §6): 400 ``[InvalidParameter]``, 403 ``[NoAccess]``, 404 ``[RecordNotFound]``, 409
  ``[DatabaseError]``, 429 ``[Throttled]``; anything else (5xx, 405, 501, a body that is not
  JSON) ``[UpstreamError]`` with Keap's status, as for XML-RPC.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shim import __version__
from shim.errors import (
    DatabaseError,
    InvalidParameter,
    NoAccess,
    NotFound,
    UpstreamAuthError,
    UpstreamError,
    UpstreamThrottled,
)
from shim.keap.client import UpstreamResponse
from shim.keap.gateway import Gateway, Multipart, Params
from shim.models import Account
from shim.oauth.token_policy import parse_retry_after

#: Largest JSON answer read into memory (a page of 1000 full contacts is a few MB).
MAX_JSON = 64 * 1024 * 1024
_TAG = re.compile(r"^\[\w+\]")


class RestClient:
    """The REST requests of one legacy call for one account; counts them (fan-out)."""

    def __init__(self, gateway: Gateway, account: Account) -> None:
        self.gateway = gateway
        self.account = account
        self.requests = 0
        self.last_status: int | None = None

    async def open(
        self,
        method: str,
        path: str,
        *,
        params: Params = (),
        json_body: object = None,
        multipart: Multipart | None = None,
    ) -> UpstreamResponse:
        """A 2xx answer with its body unread; any other status raises the mapped fault."""
        url = self.account.rest_url.rstrip("/") + path
        headers = {"Accept": "application/json", "User-Agent": f"keyshim/{__version__}"}
        self.requests += 1
        response = await self.gateway.request(
            self.account,
            method,
            url,
            headers=headers,
            params=list(params) or None,
            json=json_body,
            multipart=multipart,
        )
        self.last_status = response.status
        if 200 <= response.status < 300:
            return response
        await raise_for_answer(response)
        raise AssertionError("unreachable")

    async def json(
        self,
        method: str,
        path: str,
        *,
        params: Params = (),
        json_body: object = None,
        multipart: Multipart | None = None,
    ) -> Any:
        """The decoded JSON answer (None for an empty 204)."""
        response = await self.open(
            method, path, params=params, json_body=json_body, multipart=multipart
        )
        body = await response.body(MAX_JSON)
        await response.aclose()
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise UpstreamError(
                f"Keap REST answered HTTP {response.status} with a body that is not JSON",
                status=response.status,
            ) from None

    async def get(self, path: str, params: Params = ()) -> Any:
        return await self.json("GET", path, params=params)


async def raise_for_answer(response: UpstreamResponse) -> None:
    """Raise the legacy fault for a REST answer that is not a success."""
    status = response.status
    snippet = await response.read(4096)
    await response.aclose()
    message = _message(snippet)
    if status == 400:
        raise InvalidParameter(message or "Keap refused the request (HTTP 400)")
    if status == 401:
        raise UpstreamAuthError(
            f"Keap rejected the credential (HTTP 401{': ' + message if message else ''})",
            status=status,
        )
    if status == 403:
        raise NoAccess(message or "Keap denied access (HTTP 403)")
    if status == 404:
        raise NotFound()
    if status == 409:
        raise DatabaseError(message or "Keap reported a conflict (HTTP 409)")
    if status == 429:
        retry = parse_retry_after(response.headers.get("retry-after"))
        wait = f"; retry after {retry:g}s" if retry is not None else ""
        detail = f": {message}" if message else ""
        raise UpstreamThrottled(
            f"Keap is throttling calls (HTTP 429{detail}){wait}", retry_after=retry
        )
    detail = f": {message}" if message else ""
    raise UpstreamError(f"Keap REST answered HTTP {status}{detail}", status=status)


def _message(body: bytes) -> str:
    """The human part of a REST error body (``message``) or a gateway fault (``faultstring``),
    without a leading ``[Tag]`` (the legacy tag is keyshim's to choose)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    fault = data.get("fault")
    text = fault.get("faultstring") if isinstance(fault, dict) else data.get("message")
    return _TAG.sub("", str(text or ""))[:300]
