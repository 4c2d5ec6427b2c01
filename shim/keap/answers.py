"""Keap's answers that are not what the call asked for, turned into keyshim's faults."""

from __future__ import annotations

import json

from shim.errors import UpstreamAuthError, UpstreamError, UpstreamThrottled
from shim.keap.client import UpstreamResponse
from shim.oauth.token_policy import parse_retry_after


async def raise_for_xmlrpc_answer(response: UpstreamResponse) -> None:
    """Turn an upstream answer that is not XML-RPC into the right error."""
    status = response.status
    snippet = await response.read(4096)
    await response.aclose()
    detail = _fault_text(snippet)
    if status == 401:
        raise UpstreamAuthError(f"Keap rejected the credential (HTTP 401{detail})", status=status)
    if status == 429:
        retry = parse_retry_after(response.headers.get("retry-after"))
        wait = f"; retry after {retry:g}s" if retry is not None else ""
        raise UpstreamThrottled(
            f"Keap is throttling calls (HTTP 429{detail}){wait}", retry_after=retry
        )
    raise UpstreamError(f"Keap answered HTTP {status}{detail}", status=status)


def _fault_text(body: bytes) -> str:
    """The human part of Keap's JSON error bodies, if any (``fault.faultstring`` etc.)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return ""
    if isinstance(data, dict):
        fault = data.get("fault")
        if isinstance(fault, dict) and fault.get("faultstring"):
            return f": {str(fault['faultstring'])[:160]}"
        if data.get("message"):
            return f": {str(data['message'])[:160]}"
    return ""
