"""``FunnelService.achieveGoal`` over ``POST /automations/goals/achieve``.

The flow items' legacy shape is unverified (docs/keap.md#services): marked approximate.
"""

from __future__ import annotations

from typing import Any

from shim.errors import NotFound
from shim.rest.context import Ctx
from shim.xmlrpc import Value


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
