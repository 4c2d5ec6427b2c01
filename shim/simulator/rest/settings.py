"""User info and application settings as REST v2 serves them.

Settings: ``application`` always, plus the modules ``fields`` names; the contact module's
values come from the same settings as legacy ``DataService.getAppSetting``.
"""

from __future__ import annotations

from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.rest.http import Call, bad

#: REST (module, setting) -> the legacy (module, setting) read by ``getAppSetting``: one
#: store of settings behind both APIs.
SETTINGS: dict[tuple[str, str], tuple[str, str]] = {
    ("application", "time_zone"): ("Application", "timezone"),
    ("contact", "contact_types"): ("Contact", "optiontypes"),
    ("contact", "phone_types"): ("Contact", "phonetypes"),
    ("contact", "fax_types"): ("Contact", "faxtypes"),
    ("contact", "title_types"): ("Contact", "titletypes"),
    ("contact", "suffix_types"): ("Contact", "suffixtypes"),
    ("ecommerce", "credit_card_types"): ("Order", "optioncctypes"),
    ("ecommerce", "payment_types"): ("Order", "optionpaymenttypes"),
    ("ecommerce", "default_charge_max_retry_attempts"): ("Order", "defaultmaxretry"),
    ("ecommerce", "default_number_of_days_between_charge_attempts"): (
        "Order",
        "defaultnumdaysbetween",
    ),
    ("ecommerce", "currency"): ("Order", "currency"),
    ("ecommerce", "default_country"): ("Order", "defaultcountry"),
    ("invoice", "tax_label"): ("Invoice", "taxlabel"),
}
#: Settings the SDK types as integers (StrictInt).
INT_SETTINGS = frozenset(
    {"default_charge_max_retry_attempts", "default_number_of_days_between_charge_attempts"}
)
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
            "default_view_locale": "en_US",
            "features_enabled": {"marketing": True},
        }
    }
    for module in wanted:
        answer.setdefault(module, {})
    for (module, key), (legacy_module, setting) in SETTINGS.items():
        value = call.db.setting(legacy_module, setting)
        if value is None or (module != "application" and module not in wanted):
            continue
        answer[module][key] = int(value) if key in INT_SETTINGS and value.isdigit() else value
    return json_answer(200, answer)


def is_enabled(call: Call) -> Answer:
    """``{"isEnabled": bool}`` (the SDK's GetApplicationEnabledStatusResponse)."""
    return json_answer(200, {"isEnabled": call.db.setting("Application", "enabled") == "yes"})


def contact_option_types(call: Call) -> Answer:
    types = call.db.setting("Contact", "optiontypes") or ""
    return json_answer(200, {"option_types": [t for t in types.split(",") if t]})
