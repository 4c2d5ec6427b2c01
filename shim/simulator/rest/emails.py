"""Emails as REST v2 sends them: ``POST /emails:send`` (202) and
``GET /emails/templates/{id}`` (SDK ``EmailSendRequest``, ``EmailTemplate``)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.rest.http import Call, bad, check_keys, missing, parse_id
from shim.simulator.rest.store import TEMPLATES

ADDRESS_FIELDS = ("Email", "EmailAddress2", "EmailAddress3")


def send(call: Call) -> Answer:
    data = call.body()
    allowed = {"contacts", "subject", "attachments", "user_id", "from_address"}
    check_keys(data, allowed | {"html_content", "plain_content", "address_field"}, "email")
    contacts = data.get("contacts")
    if not isinstance(contacts, list) or not contacts:
        raise bad("contacts is required", "email")
    ids = tuple(parse_id(c, "contact") for c in contacts)
    for contact in ids:
        if contact not in call.db.tables["Contact"]:
            raise missing("contact", contact)
    subject = data.get("subject")
    if not isinstance(subject, str) or not subject:
        raise bad("subject is required", "email")
    sender = data.get("from_address") or ""
    if bool(sender) == bool(data.get("user_id")):
        raise bad("Exactly one of user_id or from_address is required", "email")
    field = data.get("address_field") or "Email"
    if field not in ADDRESS_FIELDS:
        raise bad(f"Invalid address_field: {field}", "email")
    html, text = _b64(data, "html_content"), _b64(data, "plain_content")
    call.store.sent.append((ids, str(sender), str(field), subject, html, text))
    return Answer(202, b"")


def _b64(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value in (None, ""):
        return ""
    try:
        return base64.b64decode(str(value), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise bad(f"{key} must be Base64-encoded UTF-8", key) from None


def get_template(call: Call) -> Answer:
    template_id = call.path_id("email_template_id", "email template")
    template = TEMPLATES.get(template_id)
    if template is None:
        raise missing("email template", template_id)
    return json_answer(200, {"id": template_id, **template})
