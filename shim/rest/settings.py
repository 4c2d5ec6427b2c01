"""The connection and settings calls: ``DataService.echo``, ``getAppSetting``, ``getUserInfo``.

Where the legacy answer's shape is not documented anywhere keyshim could check (the
``getUserInfo`` keys) the mapping is the proposal of keap-rest-v2 §2 and the translation is
marked approximate in the table.
"""

from __future__ import annotations

from typing import Any

from shim.errors import NoTranslation
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
    """Legacy keys (unverified, keap-rest-v2 §8.9) from ``/oauth/connect/userinfo``."""
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
