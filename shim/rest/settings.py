"""The connection and settings calls: ``DataService.echo``, ``getAppSetting``, ``getUserInfo``.

Where the legacy answer's shape is not documented anywhere keyshim could check (the
``getUserInfo`` keys) the mapping is the proposal of docs/keap.md#services and the translation is
marked approximate in the table.
"""

from __future__ import annotations

from typing import Any

from shim.errors import NoTranslation
from shim.rest.context import Ctx
from shim.xmlrpc import Value

#: (legacy module, setting) -> (REST configuration module, key); ``("application",
#: "enabled")`` is ``GET /settings/applications:isEnabled`` instead. Legacy module and
#: setting names compare case-insensitively (scripts send "Application" and "application").
#: Names the surveyed apps and client libraries read; those marked unverified in
#: ``UNVERIFIED`` were not seen in an app, only inferred from the REST model's meaning.
APP_SETTINGS: dict[tuple[str, str], tuple[str, str]] = {
    ("application", "enabled"): ("application", "enabled"),
    ("application", "timezone"): ("application", "time_zone"),
    ("contact", "optiontypes"): ("contact", "contact_types"),
    ("contact", "phonetypes"): ("contact", "phone_types"),
    ("contact", "faxtypes"): ("contact", "fax_types"),
    ("contact", "titletypes"): ("contact", "title_types"),
    ("contact", "suffixtypes"): ("contact", "suffix_types"),
    ("order", "optioncctypes"): ("ecommerce", "credit_card_types"),
    ("order", "optionpaymenttypes"): ("ecommerce", "payment_types"),
    ("order", "defaultmaxretry"): ("ecommerce", "default_charge_max_retry_attempts"),
    ("order", "defaultnumdaysbetween"): (
        "ecommerce",
        "default_number_of_days_between_charge_attempts",
    ),
    ("order", "currency"): ("ecommerce", "currency"),
    ("order", "defaultcountry"): ("ecommerce", "default_country"),
    ("invoice", "taxlabel"): ("invoice", "tax_label"),
}
UNVERIFIED = frozenset(
    {("application", "timezone"), ("order", "optionpaymenttypes"), ("order", "currency")}
    | {("order", "defaultcountry"), ("invoice", "taxlabel")}
)


async def echo(ctx: Ctx, text: str) -> str:
    return text


def _key(module: str, setting: str) -> tuple[str, str]:
    return (module.casefold(), setting.casefold())


def setting_mapped(args: list[object]) -> bool:
    if len(args) != 2 or not all(isinstance(a, str) for a in args):
        return False
    return _key(str(args[0]), str(args[1])) in APP_SETTINGS


def unmapped_setting(args: list[object]) -> str:
    """The setting a call names, for the [NoRestTranslation] fault of an unmapped one."""
    if len(args) == 2 and all(isinstance(a, str) for a in args):
        return f" for setting {args[0]}.{args[1]}"
    return ""


def documented_settings() -> str:
    return ", ".join(
        f"{m}.{s}" + (" (name unverified)" if (m, s) in UNVERIFIED else "") for m, s in APP_SETTINGS
    )


async def get_app_setting(ctx: Ctx, module: str, setting: str) -> str:
    mapped = APP_SETTINGS.get(_key(module, setting))
    if mapped is None:
        raise NoTranslation(
            f"DataService.getAppSetting for setting {module}.{setting} has no REST v2 "
            "translation (no REST v2 setting is mapped to it)"
        )
    rest_module, key = mapped
    if (rest_module, key) == ("application", "enabled"):
        answer = await ctx.client.get("/settings/applications:isEnabled")
        enabled = answer.get("isEnabled") if isinstance(answer, dict) else None
        return "yes" if enabled is True else "no"
    params = [("fields", rest_module)]
    answer = await ctx.client.get("/settings/applications:getConfiguration", params)
    section = answer.get(rest_module) if isinstance(answer, dict) else None
    value = section.get(key) if isinstance(section, dict) else None
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


async def get_user_info(ctx: Ctx) -> Value:
    """Legacy keys (unverified: docs/keap.md#open-questions, question 9) from
    ``/oauth/connect/userinfo``."""
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
