"""Every REST v2 request keyshim makes, with the rules forwarded XML-RPC calls follow.

Each request goes through the gateway (shim/keap/gateway.py), the path forwarded XML-RPC
calls take, so it gets:

* the same credential: the account's bearer token from its chain, picked after the budget
  wait, or its service key as ``X-Keap-API-Key`` (Keap documents that header for PATs and
  SAKs on REST too);
* the same 401 rule: a 401 means Keap did not run the request, so one single-flight refresh
  and one retry; a second 401 is ``[InvalidKey]`` naming the account, as for XML-RPC;
* the same quota budget: a call that fans out into three REST requests waits for three turns.

And:
* Keap's REST error answers become the legacy faults scripts already handle
  (docs/keap.md#rest-v2-errors): 400 ``[InvalidParameter]``, 403 ``[NoAccess]``, 404
  ``[RecordNotFound]``, 409 ``[DatabaseError]``, 429 ``[Throttled]``; anything else (5xx, 405,
  501, a body that is not JSON) ``[UpstreamError]`` with Keap's status, as for XML-RPC. The
  table is the one in shim/keap/answers.py.
"""

from __future__ import annotations

import json
from typing import Any

from shim import __version__
from shim.errors import UpstreamError
from shim.keap import answers
from shim.keap.client import UpstreamResponse
from shim.keap.gateway import Gateway, Multipart, Params
from shim.models import Account

#: Largest JSON answer read into memory (a page of 1000 full contacts is a few MB).
MAX_JSON = 64 * 1024 * 1024


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
        await answers.raise_for_answer(response, answers.REST)
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
