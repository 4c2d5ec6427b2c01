"""APIEmailService: opt-in status (``optIn``, ``optOut``, ``getOptStatus``), ``sendEmail``
and ``getEmailTemplate``.

The opt-status numbers are the proposal of docs/keap.md#services (the translation is marked
approximate in the table).
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from shim.errors import InvalidParameter, NotFound, NoTranslation
from shim.rest.context import Ctx
from shim.xmlrpc import Value

#: REST opt-in statuses -> legacy getOptStatus: 2 confirmed, 1 marketable, 0 not.
OPT_STATUS = {"CONFIRMED": 2, "DOUBLE_OPT_IN": 2, "SINGLE_OPT_IN": 1, "UNENGAGED_MARKETABLE": 1}
#: REST requires a reason for every status change; legacy accepted an empty one.
DEFAULT_REASON = "Changed through the API (keyshim)"


def _status_path(email: str) -> str:
    return f"/emailAddresses/{quote(email, safe='@')}/status"


async def opt_in(ctx: Ctx, email: str, reason: str) -> bool:
    """True when the address is now marketable; REST (like legacy) leaves bounced,
    complained or list-unsubscribed addresses alone, and says so with ``opted_in: false``."""
    body = {"opted_in": True, "reason": reason or DEFAULT_REASON}
    try:
        answer = await ctx.client.json("PATCH", _status_path(email), json_body=body)
    except NotFound:
        return False  # an address Keap does not know cannot be opted in
    return bool(answer.get("opted_in")) if isinstance(answer, dict) else False


async def opt_out(ctx: Ctx, email: str, reason: str) -> bool:
    body = {"opted_in": False, "reason": reason or DEFAULT_REASON}
    try:
        await ctx.client.json("PATCH", _status_path(email), json_body=body)
    except NotFound:
        return False
    return True


async def get_opt_status(ctx: Ctx, email: str) -> int:
    try:
        answer = await ctx.client.get(_status_path(email))
    except NotFound:
        return 0
    status = str(answer.get("status", "")) if isinstance(answer, dict) else ""
    return OPT_STATUS.get(status.upper(), 0)


# --- sending -------------------------------------------------------------------------------

#: Legacy ``toAddress`` merge fields -> REST ``address_field``.
ADDRESS_FIELDS = {
    "~contact.email~": "Email",
    "~contact.emailaddress2~": "EmailAddress2",
    "~contact.emailaddress3~": "EmailAddress3",
}


async def send_email(
    ctx: Ctx,
    contacts: list[Value],
    sender: str,
    to: str,
    cc: str,
    bcc: str,
    content_type: str,
    subject: str,
    html: str,
    text: str,
) -> bool:
    """``sendEmail`` -> ``POST /emails:send``: contents Base64-encoded, ``toAddress``'s merge
    field as ``address_field``. What REST cannot send is refused, never dropped: cc/bcc, a
    literal to-address."""
    if cc.strip() or bcc.strip():
        raise NoTranslation(
            "APIEmailService.sendEmail with cc or bcc addresses has no REST v2 translation "
            "(POST /emails:send sends to contacts only)"
        )
    field = ADDRESS_FIELDS.get(to.strip().casefold() or "~contact.email~")
    if field is None:
        raise NoTranslation(
            f"APIEmailService.sendEmail to {to!r} has no REST v2 translation (REST sends to a "
            "contact's Email, EmailAddress2 or EmailAddress3: use ~Contact.Email~ etc.)"
        )
    ids: list[str] = []
    for contact in contacts:
        if isinstance(contact, bool) or not isinstance(contact, (int, str)):
            raise InvalidParameter(f"Invalid contact id: {contact!r}")
        ids.append(str(contact))
    kind = content_type.strip().casefold()
    body: dict[str, Any] = {"contacts": ids, "subject": subject, "from_address": sender}
    body["address_field"] = field
    if kind in ("html", "multipart") and html:
        body["html_content"] = base64.b64encode(html.encode()).decode("ascii")
    if kind in ("text", "multipart") and text:
        body["plain_content"] = base64.b64encode(text.encode()).decode("ascii")
    await ctx.client.json("POST", "/emails:send", json_body=body)
    return True


#: REST EmailTemplate -> legacy getEmailTemplate keys.
TEMPLATE_KEYS = {
    "piece_title": "pieceTitle", "categories": "categories", "from_address": "fromAddress",
    "to_address": "toAddress", "cc_address": "ccAddress", "bcc_address": "bccAddress",
    "subject": "subject", "text_body": "textBody", "html_body": "htmlBody",
    "content_type": "contentType", "merge_context": "mergeContext",
}  # fmt: skip


async def get_email_template(ctx: Ctx, template_id: int) -> Value:
    if template_id < 1:
        raise NotFound()
    answer = await ctx.client.get(f"/emails/templates/{template_id}")
    template = answer if isinstance(answer, dict) else {}
    out: dict[str, Value] = {}
    for rest, legacy in TEMPLATE_KEYS.items():
        value = template.get(rest)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if value not in (None, ""):
            out[legacy] = str(value)
    return out
