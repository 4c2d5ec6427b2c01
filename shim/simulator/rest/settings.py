"""User info and application settings as REST v2 serves them.

Settings: ``application`` always, plus the modules ``fields`` names; the contact module's
values come from the same settings as legacy ``DataService.getAppSetting``.
"""

from __future__ import annotations

from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.rest.http import Call, bad

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
