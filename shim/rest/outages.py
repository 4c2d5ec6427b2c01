"""Whether an account still forwarding to XML-RPC is meeting Keap's brownouts.

Keap switches XML-RPC off for hours at a time through 2026 (brownouts), then for good. An
account routed ``xmlrpc`` passes those failures on to its scripts. The audit records them:
``UpstreamUnavailable`` (no connection), ``UpstreamError`` (HTTP 404/410/5xx from the
gateway) and ``Brownout`` (an XML-RPC fault saying the service is unavailable; see
``route.BROWNOUT``). ``shim status`` counts them over ``WINDOW`` and suggests ``auto``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: The outcomes that mean Keap's XML-RPC endpoint did not answer the call.
OUTAGE_OUTCOMES = frozenset({"UpstreamUnavailable", "UpstreamError", "Brownout"})
#: How far back ``shim status`` looks (seconds).
WINDOW = 86_400.0


def xmlrpc_outages(usage: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Calls per account that XML-RPC failed to answer, from ``Store.usage`` rows."""
    out: dict[str, int] = {}
    for row in usage:
        account = row.get("account")
        tags = row.get("fault_tags") or {}
        failed = sum(int(n) for tag, n in tags.items() if tag in OUTAGE_OUTCOMES)
        if account and failed:
            out[account] = out.get(account, 0) + failed
    return out


def advice(account: str, failed: int) -> str:
    return (
        f"XML-RPC failed {failed} calls in the last 24 h (Keap brownouts?); "
        f"`shim account set {account} --route auto` answers translated calls through REST v2 "
        "while XML-RPC is down"
    )
