"""WebFormService: ``getMap`` over ``GET /webforms`` and ``getHTML`` over
``GET /webforms/{id}:data`` (SDK ``Webform``; the HTML comes back as text).

Legacy ``getMap`` answered a struct of form id (as the struct's string key) -> form name.
REST lists every webform of the app, legacy and newer kinds alike, so the map may hold forms
the legacy API did not list: approximate.
"""

from __future__ import annotations

import json

from shim.errors import NotFound
from shim.rest.context import Ctx
from shim.rest.listing import REST_PAGE
from shim.rest.spec import int_id
from shim.xmlrpc import Value

#: Largest form HTML keyshim reads (bytes).
HTML_LIMIT = 4 * 1024 * 1024
#: Most webforms listed.
MAP_LIMIT = 5_000


async def get_map(ctx: Ctx) -> Value:
    out: dict[str, Value] = {}
    token = ""
    while len(out) < MAP_LIMIT:
        params = [("page_size", str(REST_PAGE))] + ([("page_token", token)] if token else [])
        data = await ctx.client.get("/webforms", params)
        items = data.get("webforms") if isinstance(data, dict) else None
        for item in items or []:
            form_id = int_id(item.get("id")) if isinstance(item, dict) else None
            if form_id is not None:
                out[str(form_id)] = str(item.get("name") or "")
        token = str(data.get("next_page_token") or "") if isinstance(data, dict) else ""
        if not token or not items:
            break
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


async def get_html(ctx: Ctx, form_id: int) -> str:
    if form_id < 1:
        raise NotFound()
    response = await ctx.client.open("GET", f"/webforms/{form_id}:data")
    body = (await response.body(HTML_LIMIT)).decode("utf-8", "replace")
    if "json" in response.headers.get("content-type", ""):
        decoded = json.loads(body)  # a JSON string, as the SDK's "str" answer may be
        return decoded if isinstance(decoded, str) else body
    return body
