"""The smaller REST v2 resources: email opt-in status, goals, user info, app settings.

* Email status: an address is known if it is on a contact or has a status record. Addresses
  on a contact that never opted in are NON_MARKETABLE. An API opt-out makes an address
  MANUAL (a bounced or otherwise blocked one keeps its status). An API opt-in moves only
  NON_MARKETABLE, UNENGAGED_NON_MARKETABLE and MANUAL addresses back (to SINGLE_OPT_IN).
  Any other status stays, and the PATCH answers 200 with ``opted_in: false``, the REST form
  of legacy ``optIn`` answering false.
* Goals: a seeded table of API goals. A goal that matches nothing answers 200 with one
  ``success: false`` result, as legacy ``achieveGoal`` did (docs/keap.md#open-questions, 5).
* Settings: ``application`` always, plus the modules ``fields`` names; the contact module's
  values come from the same settings as legacy ``DataService.getAppSetting``.
"""

from __future__ import annotations

from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.data import to_datetime
from shim.simulator.rest.http import Call, bad, check_keys, iso, missing
from shim.simulator.rest.store import EmailStatus, RestStore, known_status, opt_in, opt_out

#: Seeded API goals: (integration, call_name) -> (automation_id, goal_id, flow ids started).
GOALS: dict[tuple[str, str], tuple[int, int, tuple[int, ...]]] = {
    ("keyshim", "signup"): (30, 3, (31,)),
    ("keyshim", "purchase"): (40, 5, (41, 42)),
}
#: REST settings -> the legacy (module, setting) read by ``getAppSetting``.
CONTACT_SETTINGS = {
    "contact_types": ("Contact", "optiontypes"),
    "phone_types": ("Contact", "phonetypes"),
    "fax_types": ("Contact", "faxtypes"),
    "title_types": ("Contact", "titletypes"),
    "suffix_types": ("Contact", "suffixtypes"),
}
MODULES = frozenset(
    {"affiliate", "appointment", "application", "contact", "ecommerce", "email", "forms"}
    | {"fulfillment", "invoice", "note", "opportunity", "task", "template"}
)


# --- email addresses ---


def get_email_status(call: Call) -> Answer:
    email = call.params["email"]
    return json_answer(200, _status_json(email, _email_status(call, email)))


def update_email_status(call: Call) -> Answer:
    email = call.params["email"]
    data = call.body()
    check_keys(data, {"opted_in", "reason"}, "email status")
    opted_in, reason = data.get("opted_in"), data.get("reason")
    if not isinstance(opted_in, bool) or not isinstance(reason, str) or not reason:
        raise bad("opted_in (boolean) and reason (string) are required", "email", email)
    _email_status(call, email)  # 404 for an unknown address
    change = opt_in if opted_in else opt_out
    status = change(call.db, email, reason, to_datetime(call.now))
    return json_answer(200, _status_json(email, status))


def _email_status(call: Call, email: str) -> EmailStatus:
    """The address's record, made NON_MARKETABLE on first look; 404 for an unknown address."""
    status = known_status(call.db, email, to_datetime(call.now))
    if status is None:
        raise missing("email address", email)
    return status


def _status_json(email: str, status: EmailStatus) -> dict[str, Any]:
    return {
        "email": email,
        "opted_in": status.opted_in,
        "status": status.status,
        "create_time": iso(status.create_time),
    }


# --- goals ---


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


# --- user info and settings ---


def user_info(call: Call) -> Answer:
    return json_answer(200, user_record(call.config.app_name))


def user_record(app: str) -> dict[str, Any]:
    """The simulated app's one (admin) user, as ``/oauth/connect/userinfo`` answers it."""
    return {
        "email": f"admin@{app}.example.com",
        "sub": "1",
        "id": "1",
        "keap_id": "1",
        "given_name": "Sim",
        "family_name": "Admin",
        "is_admin": True,
        "tenant_id": app,
    }


def get_configuration(call: Call) -> Answer:
    wanted = call.args("fields") or []
    unknown = sorted(set(wanted) - MODULES)
    if unknown:
        raise bad(f"Invalid fields: {', '.join(unknown)}", "fields", unknown[0])
    app = call.config.app_name
    answer: dict[str, Any] = {
        "application": {
            "company": {"name": f"{app} (simulated)", "country": "USA"},
            "time_zone": "America/New_York",
            "default_view_locale": "en_US",
            "features_enabled": {"marketing": True},
        }
    }
    for module in wanted:
        answer.setdefault(module, {})
    if "contact" in wanted:
        settings = call.db.settings
        contact = {
            k: settings[legacy] for k, legacy in CONTACT_SETTINGS.items() if legacy in settings
        }
        answer["contact"] = contact
    return json_answer(200, answer)


def contact_option_types(call: Call) -> Answer:
    types = call.db.settings.get(("Contact", "optiontypes"), "")
    return json_answer(200, {"option_types": [t for t in types.split(",") if t]})
