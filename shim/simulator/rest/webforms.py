"""Webforms: ``GET /webforms`` (SDK ``ListWebformsResponse``) and
``GET /webforms/{id}:data`` (the form's HTML, as text), from the same seeded forms as
legacy ``WebFormService.getMap``/``getHTML``."""

from __future__ import annotations

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.rest.http import Call, missing
from shim.simulator.rest.query import listing, paginate

#: Seeded web forms: id -> (name, type, HTML).
WEBFORMS: dict[int, tuple[str, str, str]] = {
    7: ("Contact Us", "LEGACY", '<form action="/app/form/process/7"><input name="Email"></form>'),
    9: ("Newsletter", "LEGACY", '<form action="/app/form/process/9"><input name="Email"></form>'),
}


def list_webforms(call: Call) -> Answer:
    forms = [
        {"id": str(i), "xid": f"x{i}", "name": name, "webform_type": kind}
        for i, (name, kind, _html) in WEBFORMS.items()
    ]
    page, token = paginate(call, forms, lambda f: [int(f["id"])], False)
    return json_answer(200, listing(call, "webforms", page, token))


def webform_html(call: Call) -> Answer:
    form_id = call.path_id("webform_id", "webform")
    if form_id not in WEBFORMS:
        raise missing("webform", form_id)
    return Answer(200, WEBFORMS[form_id][2].encode(), "text/html; charset=utf-8")
