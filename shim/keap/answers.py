"""Keap's answers that are not what the call asked for, turned into keyshim's faults.

One table for both APIs: Keap's status → the shim.errors exception a legacy script already
handles (docs/keap.md#rest-v2-errors for REST). Forwarded XML-RPC calls map only 401 and 429
(any other non-XML-RPC answer is ``[UpstreamError]`` with Keap's status, which the ``auto``
route reads); REST requests map every row. Anything not in the table is ``[UpstreamError]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from shim.errors import (
    DatabaseError,
    InvalidParameter,
    NoAccess,
    NotFound,
    ShimError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamThrottled,
)
from shim.keap.client import UpstreamResponse
from shim.oauth.token_policy import parse_retry_after

#: How much of an error answer is read for its message.
SNIPPET = 4096
_TAG = re.compile(r"^\[\w+\]")


def _detail(message: str) -> str:
    return f": {message}" if message else ""


def _throttled(message: str, response: UpstreamResponse) -> ShimError:
    retry = parse_retry_after(response.headers.get("retry-after"))
    wait = f"; retry after {retry:g}s" if retry is not None else ""
    return UpstreamThrottled(
        f"Keap is throttling calls (HTTP 429{_detail(message)}){wait}", retry_after=retry
    )


#: Keap's status → the fault, given Keap's message (may be empty) and the answer.
FAULTS: dict[int, Callable[[str, UpstreamResponse], ShimError]] = {
    400: lambda m, r: InvalidParameter(m or "Keap refused the request (HTTP 400)"),
    401: lambda m, r: UpstreamAuthError(
        f"Keap rejected the credential (HTTP 401{_detail(m)})", status=401
    ),
    403: lambda m, r: NoAccess(m or "Keap denied access (HTTP 403)"),
    404: lambda m, r: NotFound(),
    409: lambda m, r: DatabaseError(m or "Keap reported a conflict (HTTP 409)"),
    429: _throttled,
}


@dataclass(frozen=True)
class Api:
    """How one of Keap's APIs is named in faults, which rows apply, how its message is cut."""

    name: str
    statuses: frozenset[int]
    #: Longest message kept, and whether a leading ``[Tag]`` is dropped (REST: the legacy tag
    #: is keyshim's to choose).
    limit: int
    strip_tag: bool


XMLRPC = Api("Keap", frozenset({401, 429}), limit=160, strip_tag=False)
REST = Api("Keap REST", frozenset(FAULTS), limit=300, strip_tag=True)


def fault_for(api: Api, response: UpstreamResponse, body: bytes) -> ShimError:
    """The fault for a non-success ``response`` whose body starts with ``body``."""
    message = keap_message(body)
    if api.strip_tag:
        message = _TAG.sub("", message)
    message = message[: api.limit]
    make = FAULTS.get(response.status) if response.status in api.statuses else None
    if make is not None:
        return make(message, response)
    return UpstreamError(
        f"{api.name} answered HTTP {response.status}{_detail(message)}", status=response.status
    )


async def raise_for_answer(response: UpstreamResponse, api: Api) -> None:
    """Read the head of an unwanted answer, close it, raise its fault."""
    snippet = await response.read(SNIPPET)
    await response.aclose()
    raise fault_for(api, response, snippet)


def keap_message(body: bytes) -> str:
    """The human part of Keap's JSON error bodies: a gateway fault's ``faultstring`` or a REST
    error's ``message``; empty when there is none."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    fault = data.get("fault")
    if isinstance(fault, dict) and fault.get("faultstring"):
        return str(fault["faultstring"])
    return str(data.get("message") or "")
