"""API goals (``POST /automations/goals/achieve``): a seeded table of goals. A goal that
matches nothing answers 200 with one ``success: false`` result, as legacy ``achieveGoal`` did
(docs/keap.md#open-questions, question 5).
"""

from __future__ import annotations

from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.rest.http import Call, bad, check_keys, missing
from shim.simulator.rest.store import RestStore

#: Seeded API goals: (integration, call_name) -> (automation_id, goal_id, flow ids started).
GOALS: dict[tuple[str, str], tuple[int, int, tuple[int, ...]]] = {
    ("keyshim", "signup"): (30, 3, (31,)),
    ("keyshim", "purchase"): (40, 5, (41, 42)),
}


def achieve_goal(call: Call) -> Answer:
    data = call.body()
    check_keys(data, {"integration", "call_name", "automation_id", "goal_id", "contact_id"}, "goal")
    contact_id = _int(data.get("contact_id"), "contact_id")
    if contact_id not in call.db.tables["Contact"]:
        raise missing("contact", contact_id)
    integration, call_name = data.get("integration"), data.get("call_name")
    by_name = integration is not None or call_name is not None
    by_id = data.get("automation_id") is not None or data.get("goal_id") is not None
    if by_name == by_id:
        raise bad("Give either integration and call_name, or automation_id and goal_id", "goal")
    if by_name:
        if not isinstance(integration, str) or not isinstance(call_name, str):
            raise bad("integration and call_name must both be strings", "goal")
        key = (integration, call_name)
    else:
        automation_id = _int(data.get("automation_id"), "automation_id")
        wanted = (automation_id, _int(data.get("goal_id"), "goal_id"))
        key = next((k for k, v in GOALS.items() if v[:2] == wanted), ("", ""))
    label = f"{integration}/{call_name}" if by_name else "/".join(map(str, wanted))
    return json_answer(200, {"results": [achieve(call.store, key, contact_id, label)]})


def achieve(store: RestStore, key: tuple[str, str], contact_id: int, label: str) -> dict[str, Any]:
    """One goal achievement as a REST result (``success: false`` when no goal matches)."""
    goal = GOALS.get(key)
    if goal is None:
        return {"success": False, "message": f"No goal found for {label}"}
    store.goals_achieved.append((key[0], key[1], contact_id))
    automation_id, goal_id, flows = goal
    started = [{"success": True, "message": "Started", "flow_id": flow} for flow in flows]
    return {
        "success": True,
        "message": "Goal achieved",
        "automation_id": automation_id,
        "goal_id": goal_id,
        "flow_start_results": started,
        "flow_stop_results": [],
    }


def _int(value: Any, name: str) -> int:
    """An int request property (the SDK types ``contact_id`` as an integer; digit strings are
    accepted too, as Keap's JSON binding would)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad(f"{name} must be an integer", name)
    return value
