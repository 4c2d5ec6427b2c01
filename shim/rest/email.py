"""Email opt-in status: ``APIEmailService.optIn``, ``optOut`` and ``getOptStatus``.

The opt-status numbers are the proposal of keap-rest-v2 §3 (the translation is marked
approximate in the table).
"""

from __future__ import annotations

from urllib.parse import quote

from shim.errors import NotFound
from shim.rest.context import Ctx

#: REST opt-in statuses -> legacy getOptStatus: 2 confirmed, 1 marketable, 0 not.
OPT_STATUS = {"CONFIRMED": 2, "DOUBLE_OPT_IN": 2, "SINGLE_OPT_IN": 1, "UNENGAGED_MARKETABLE": 1}
#: REST requires a reason for every status change; legacy accepted an empty one.
DEFAULT_REASON = "Changed through the API (keyshim)"


def _status_path(email: str) -> str:
    return f"/emailAddresses/{quote(email, safe='@')}/status"


async def opt_in(ctx: Ctx, email: str, reason: str) -> bool:
    """True when the address is now marketable; REST (like legacy) leaves bounced,
    complained or list-unsubscribed addresses alone, and says so with ``opted_in: false``."""
    body = {"opted_in": True, "reason": reason or DEFAULT_REASON}
    try:
        answer = await ctx.client.json("PATCH", _status_path(email), json_body=body)
    except NotFound:
        return False  # an address Keap does not know cannot be opted in
    return bool(answer.get("opted_in")) if isinstance(answer, dict) else False


async def opt_out(ctx: Ctx, email: str, reason: str) -> bool:
    body = {"opted_in": False, "reason": reason or DEFAULT_REASON}
    try:
        await ctx.client.json("PATCH", _status_path(email), json_body=body)
    except NotFound:
        return False
    return True


async def get_opt_status(ctx: Ctx, email: str) -> int:
    try:
        answer = await ctx.client.get(_status_path(email))
    except NotFound:
        return 0
    status = str(answer.get("status", "")) if isinstance(answer, dict) else ""
    return OPT_STATUS.get(status.upper(), 0)
