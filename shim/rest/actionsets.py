"""``ContactService.runActionSequence`` through REST v2, for action sets the operator mapped.

REST v2 cannot run a legacy action set. An operator who knows what action set N does can map
it to REST steps (``shim actionset map ACCOUNT N --apply-tag 100 --remove-tag 101 ...``,
kept in the store); the translation then runs those steps in order for the contact. An
unmapped id gets ``[NoRestTranslation]`` saying how to map it.

Steps (JSON objects in the store):

* ``{"op": "apply_tag", "tag": 100}``: ``POST /tags/100/contacts:applyTags``
* ``{"op": "remove_tag", "tag": 101}``: ``POST /tags/101/contacts:removeTags``
* ``{"op": "achieve_goal", "integration": "x", "call_name": "y"}``:
  ``POST /automations/goals/achieve``
* ``{"op": "add_note", "title": "t", "text": "..."}``: ``POST /contacts/{id}/notes`` by the
  authenticated user

The answer is one struct per step, ``{Action, Message, IsError}`` (legacy returned one result
per action; its exact keys are unverified, so the translation is approximate).
"""

from __future__ import annotations

from typing import Any

from shim.errors import NotFound, NoTranslation, ShimError
from shim.rest.context import Ctx
from shim.xmlrpc import Value

OPS = ("apply_tag", "remove_tag", "achieve_goal", "add_note")


def describe(step: dict[str, Any]) -> str:
    """A step in words (the answer's ``Action``, and ``shim actionset list``)."""
    op = step.get("op")
    if op == "apply_tag":
        return f"Apply tag {step.get('tag')}"
    if op == "remove_tag":
        return f"Remove tag {step.get('tag')}"
    if op == "achieve_goal":
        return f"Achieve goal {step.get('integration')}/{step.get('call_name')}"
    if op == "add_note":
        return f"Add note {step.get('title')!r}"
    return f"Unknown step {op!r}"


def unmapped(account: str, set_id: int) -> NoTranslation:
    return NoTranslation(
        f"ContactService.runActionSequence: action set {set_id} is not mapped to REST v2 steps "
        f"for account {account} (REST v2 cannot run action sets); map it with `shim actionset "
        f"map {account} {set_id} --apply-tag ID --remove-tag ID --achieve-goal INTEGRATION:CALL "
        "--add-note TITLE`"
    )


async def run_action_sequence(ctx: Ctx, contact_id: int, set_id: int) -> Value:
    steps = ctx.store.get_action_set(ctx.account, set_id)
    if steps is None:
        raise unmapped(ctx.account, set_id)
    if contact_id < 1:
        raise NotFound()
    await ctx.client.get(f"/contacts/{contact_id}", [("fields", "id")])  # RecordNotFound
    results: list[Value] = []
    for step in steps:
        try:
            message = await _run(ctx, contact_id, step)
            error = message != "OK"
        except NotFound as exc:
            message, error = exc.message, True
        except ShimError as exc:
            message, error = exc.fault_string, True
        results.append({"Action": describe(step), "Message": message, "IsError": error})
    return results


async def _run(ctx: Ctx, contact_id: int, step: dict[str, Any]) -> str:
    op = step.get("op")
    ids = {"contact_ids": [str(contact_id)]}
    if op == "apply_tag":
        await ctx.client.json("POST", f"/tags/{step['tag']}/contacts:applyTags", json_body=ids)
    elif op == "remove_tag":
        await ctx.client.json("POST", f"/tags/{step['tag']}/contacts:removeTags", json_body=ids)
    elif op == "achieve_goal":
        body = {
            "integration": step.get("integration"),
            "call_name": step.get("call_name"),
            "contact_id": contact_id,
        }
        answer = await ctx.client.json("POST", "/automations/goals/achieve", json_body=body)
        results = answer.get("results") if isinstance(answer, dict) else None
        first = results[0] if isinstance(results, list) and results else {}
        if not isinstance(first, dict) or not first.get("success"):
            return str(first.get("message") if isinstance(first, dict) else "") or "No goal"
    elif op == "add_note":
        info = await ctx.client.get("/oauth/connect/userinfo")
        user = str(info.get("id") or "") if isinstance(info, dict) else ""
        body = {"title": step.get("title") or "Note", "text": step.get("text"), "user_id": user}
        body = {k: v for k, v in body.items() if v is not None}
        await ctx.client.json("POST", f"/contacts/{contact_id}/notes", json_body=body)
    else:
        return f"Unknown step {op!r}"
    return "OK"
