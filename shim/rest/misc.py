"""The small translations: echo, app settings, user info, email opt-in status, goals.

Where the legacy answer's shape is not documented anywhere keyshim could check (the
``getUserInfo`` keys, ``achieveGoal``'s flow items, the opt-status numbers) the mapping is
keyshim's proposal (docs/keap.md#services) and the translation is marked approximate in the table.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from shim.errors import NotFound, NoTranslation
from shim.rest.context import Ctx
from shim.xmlrpc import Value

#: (legacy module, setting) -> (REST configuration module, key).
APP_SETTINGS: dict[tuple[str, str], tuple[str, str]] = {
    ("Contact", "optiontypes"): ("contact", "contact_types"),
    ("Contact", "phonetypes"): ("contact", "phone_types"),
    ("Contact", "faxtypes"): ("contact", "fax_types"),
    ("Contact", "titletypes"): ("contact", "title_types"),
    ("Contact", "suffixtypes"): ("contact", "suffix_types"),
}
#: REST opt-in statuses -> legacy getOptStatus: 2 confirmed, 1 marketable, 0 not.
OPT_STATUS = {"CONFIRMED": 2, "DOUBLE_OPT_IN": 2, "SINGLE_OPT_IN": 1, "UNENGAGED_MARKETABLE": 1}
#: REST requires a reason for every status change; legacy accepted an empty one.
DEFAULT_REASON = "Changed through the API (keyshim)"


async def echo(ctx: Ctx, text: str) -> str:
    return text


def setting_mapped(args: list[object]) -> bool:
    return len(args) == 2 and (args[0], args[1]) in APP_SETTINGS


async def get_app_setting(ctx: Ctx, module: str, setting: str) -> str:
    mapped = APP_SETTINGS.get((module, setting))
    if mapped is None:
        raise NoTranslation(
            f"DataService.getAppSetting({module}, {setting}) has no REST v2 mapping"
        )
    rest_module, key = mapped
    params = [("fields", rest_module)]
    answer = await ctx.client.get("/settings/applications:getConfiguration", params)
    section = answer.get(rest_module) if isinstance(answer, dict) else None
    value = section.get(key) if isinstance(section, dict) else None
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


async def get_user_info(ctx: Ctx) -> Value:
    """Legacy keys (unverified: docs/keap.md#open-questions, 9) from ``/oauth/connect/userinfo``."""
    info = await ctx.client.get("/oauth/connect/userinfo")
    info = info if isinstance(info, dict) else {}
    name = " ".join(str(info[k]) for k in ("given_name", "family_name") if info.get(k))
    tenant = info.get("tenant_id")
    out: dict[str, Value] = {
        "globalUserId": _number(info.get("id")),
        "localUserId": _number(info.get("keap_id")),
        "displayName": name or None,
        "casUsername": info.get("email"),
        "appAlias": tenant,
        "appUrl": f"https://{tenant}.infusionsoft.com" if tenant else None,
    }
    return {k: v for k, v in out.items() if v not in (None, "")}


def _number(value: Any) -> Value:
    text = "" if value is None else str(value)
    return int(text) if text.isdigit() else (text or None)


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


async def achieve_goal(ctx: Ctx, integration: str, call_name: str, contact_id: int) -> Value:
    """Legacy answer: one struct per goal, ``{success, msg, funnelId, goalId, flowStart,
    flowStop}`` (flow items unverified: ``{success, msg, flowId}``)."""
    if contact_id < 1:
        raise NotFound()
    body = {"integration": integration, "call_name": call_name, "contact_id": contact_id}
    answer = await ctx.client.json("POST", "/automations/goals/achieve", json_body=body)
    results = answer.get("results") if isinstance(answer, dict) else None
    return [_goal(r) for r in results or [] if isinstance(r, dict)]


def _goal(result: dict[str, Any]) -> Value:
    out: dict[str, Value] = {
        "success": bool(result.get("success")),
        "msg": result.get("message"),
        "funnelId": result.get("automation_id"),
        "goalId": result.get("goal_id"),
        "flowStart": _flows(result.get("flow_start_results")),
        "flowStop": _flows(result.get("flow_stop_results")),
    }
    return {k: v for k, v in out.items() if v is not None}


def _flows(items: Any) -> Value:
    if not isinstance(items, list):
        return None
    flows: list[Value] = []
    for item in items:
        if isinstance(item, dict):
            flow = {"success": bool(item.get("success")), "msg": item.get("message")}
            flow["flowId"] = item.get("flow_id")
            flows.append({k: v for k, v in flow.items() if v is not None})
    return flows
