"""The legacy XML-RPC methods the simulator answers (after the privateKey parameter).

Each method is registered with the argument types it accepts, in a small signature language
(``i`` int, ``s`` string, ``S`` struct, ``L`` list of strings, ``b`` boolean, ``B`` file data
as a base64 string or ``<base64>``, ``d`` dateTime, ``f`` double, ``A`` any array,
``*`` any scalar; after ``|`` optional). Like Keap's Java
dispatcher, a call whose arguments fit no signature gets "No method matching arguments".
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from shim.simulator import query as q
from shim.simulator.data import ACTION_SETS, DUPLICATE_KEYS, Database, to_datetime
from shim.simulator.faults import invalid, no_matching_method, no_such_handler, not_found
from shim.simulator.rest.contacts import FIELD_TYPES
from shim.simulator.rest.files import rename, replace_content
from shim.simulator.rest.goals import achieve
from shim.simulator.rest.settings import user_record
from shim.simulator.rest.store import (
    LINK_TYPES,
    TEMPLATES,
    add_custom_field,
    custom_fields,
    known_status,
    opt_in,
    opt_out,
    relabel_custom_field,
    rest_store,
)
from shim.simulator.rest.webforms import WEBFORMS
from shim.simulator.schema import fields_of
from shim.xmlrpc import Value


@dataclass(frozen=True)
class Context:
    db: Database
    now: float


@dataclass(frozen=True)
class FileData:
    """``FileService.getFile``'s answer: raw bytes the endpoint streams as a base64 string."""

    data: bytes


Handler = Callable[..., Value | FileData]
H = TypeVar("H", bound=Handler)
_HANDLERS: dict[str, tuple[list[str], Handler]] = {}


def method(name: str, *signatures: str) -> Callable[[H], H]:
    def register(fn: H) -> H:
        _HANDLERS[name] = (list(signatures), fn)
        return fn

    return register


def dispatch(ctx: Context, name: str, params: list[Value]) -> Value | FileData:
    """Run ``name`` with ``params`` (privateKey first, already checked present)."""
    entry = _HANDLERS.get(name)
    if entry is None:
        raise no_such_handler(name)
    signatures, fn = entry
    args = params[1:]
    if not any(_fits(sig, args) for sig in signatures):
        raise no_matching_method(params)
    return fn(ctx, *args)


def _fits(signature: str, args: list[Value]) -> bool:
    required, _, optional = signature.partition("|")
    if not len(required) <= len(args) <= len(required) + len(optional):
        return False
    return all(_is(code, arg) for code, arg in zip(required + optional, args, strict=False))


def _is(code: str, value: Value) -> bool:
    if code == "i":
        return isinstance(value, int) and not isinstance(value, bool)
    if code == "s":
        return isinstance(value, str)
    if code == "b":
        return isinstance(value, bool)
    if code == "S":
        return isinstance(value, dict)
    if code == "L":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if code == "A":
        return isinstance(value, list)
    if code == "B":
        return isinstance(value, (str, bytes))
    if code in "df":  # dateTime, double (an int is widened, as Java does)
        kinds = {"d": (datetime.datetime,), "f": (float, int)}[code]
        return isinstance(value, kinds) and not isinstance(value, bool)
    return isinstance(value, (int, float, str, datetime.datetime))  # "*"


# --- ContactService ---


@method("ContactService.add", "S")
def contact_add(ctx: Context, data: dict[str, Value]) -> int:
    return ctx.db.add("Contact", data, ctx.now)


@method("ContactService.load", "iL")
def contact_load(ctx: Context, contact_id: int, fields: list[str]) -> Value:
    return data_load(ctx, "Contact", contact_id, fields)


@method("ContactService.update", "iS")
def contact_update(ctx: Context, contact_id: int, data: dict[str, Value]) -> int:
    return ctx.db.update("Contact", contact_id, data, ctx.now)


@method("ContactService.addToGroup", "ii")
def contact_add_to_group(ctx: Context, contact_id: int, tag_id: int) -> bool:
    ctx.db.assign(contact_id, tag_id, ctx.now, on=True)
    return True


@method("ContactService.removeFromGroup", "ii")
def contact_remove_from_group(ctx: Context, contact_id: int, tag_id: int) -> bool:
    ctx.db.assign(contact_id, tag_id, ctx.now, on=False)
    return True


@method("ContactService.findByEmail", "sL")
def contact_find_by_email(ctx: Context, email: str, fields: list[str]) -> Value:
    q.check_fields("Contact", fields_of("Contact", ctx.db.config.custom_fields), fields)
    wanted = email.casefold()
    emails = ("Email", "EmailAddress2", "EmailAddress3")
    return [
        q.project(row, fields)
        for row in ctx.db.rows("Contact")
        if any(str(row.get(name) or "").casefold() == wanted for name in emails)
    ]


# --- DataService ---


@method("DataService.echo", "s")
def data_echo(ctx: Context, text: str) -> str:
    return text


@method("DataService.add", "sS")
def data_add(ctx: Context, table: str, data: dict[str, Value]) -> int:
    return ctx.db.add(table, data, ctx.now)


@method("DataService.load", "siL")
def data_load(ctx: Context, table: str, record_id: int, fields: list[str]) -> Value:
    q.check_fields(table, fields_of(table, ctx.db.config.custom_fields), fields)
    return q.project(ctx.db.get(table, record_id), fields)


@method("DataService.update", "siS")
def data_update(ctx: Context, table: str, record_id: int, data: dict[str, Value]) -> int:
    return ctx.db.update(table, record_id, data, ctx.now)


@method("DataService.delete", "si")
def data_delete(ctx: Context, table: str, record_id: int) -> bool:
    ctx.db.delete(table, record_id)
    return True


@method("DataService.query", "siiSL|sb")
def data_query(
    ctx: Context,
    table: str,
    limit: int,
    page: int,
    query: dict[str, Value],
    fields: list[str],
    order_by: str | None = None,
    ascending: bool = True,
) -> Value:
    spec = fields_of(table, ctx.db.config.custom_fields)
    q.check_fields(table, spec, fields)  # unknown return fields fault even if nothing matches
    rows = q.select(table, spec, ctx.db.rows(table), query)
    rows = q.page(q.order(table, spec, rows, order_by, ascending), limit, page)
    return [q.project(row, fields) for row in rows]


@method("DataService.findByField", "siis*L")
def data_find_by_field(
    ctx: Context,
    table: str,
    limit: int,
    page: int,
    field: str,
    value: Any,
    fields: list[str],
) -> Value:
    return data_query(ctx, table, limit, page, {field: value}, fields)


@method("DataService.count", "sS")
def data_count(ctx: Context, table: str, query: dict[str, Value]) -> int:
    spec = fields_of(table, ctx.db.config.custom_fields)
    return len(q.select(table, spec, ctx.db.rows(table), query))


@method("DataService.getAppSetting", "ss")
def data_get_app_setting(ctx: Context, module: str, setting: str) -> str:
    """Unknown settings answer an empty string (what Keap does is not documented)."""
    return ctx.db.setting(module, setting) or ""


# --- FileService ---


@method("FileService.uploadFile", "isB", "sB")
def file_upload(ctx: Context, *args: Any) -> int:
    """Both forms: ``(contactId, fileName, data)`` and ``(fileName, data)``."""
    contact_id: int | None = args[0] if len(args) == 3 else None
    name: str = args[-2]
    data = _file_bytes(args[-1])
    return ctx.db.add_file(contact_id or None, name, data)


@method("APIEmailService.sendEmail", "Assssssss")
def email_send(
    ctx: Context,
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
    """Records what it sent; ``to`` is a merge field naming the contact's address field."""
    ids = tuple(int(str(c)) for c in contacts)
    for contact in ids:
        if contact not in ctx.db.tables["Contact"]:
            raise not_found()
    field = to.strip("~").removeprefix("Contact.") or "Email"
    kind = content_type.casefold()
    html = html if kind in ("html", "multipart") else ""
    text = text if kind in ("text", "multipart") else ""
    rest_store(ctx.db).sent.append((ids, sender, field, subject, html, text))
    return True


@method("APIEmailService.getEmailTemplate", "i")
def email_get_template(ctx: Context, template_id: int) -> Value:
    template = TEMPLATES.get(template_id)
    if template is None:
        raise not_found()
    names = {"piece_title": "pieceTitle", "categories": "categories",
             "from_address": "fromAddress", "to_address": "toAddress",
             "cc_address": "ccAddress", "bcc_address": "bccAddress", "subject": "subject",
             "text_body": "textBody", "html_body": "htmlBody", "content_type": "contentType",
             "merge_context": "mergeContext"}  # fmt: skip
    out: dict[str, Value] = {}
    for rest, legacy in names.items():
        value = template.get(rest)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if value not in (None, ""):
            out[legacy] = str(value)
    return out


@method("WebFormService.getMap", "")
def webform_get_map(ctx: Context) -> Value:
    return {str(i): name for i, (name, _kind, _html) in sorted(WEBFORMS.items())}


@method("WebFormService.getHTML", "i")
def webform_get_html(ctx: Context, form_id: int) -> str:
    if form_id not in WEBFORMS:
        raise not_found()
    return WEBFORMS[form_id][2]


@method("FileService.replaceFile", "iB")
def file_replace(ctx: Context, file_id: int, data: str | bytes) -> bool:
    if file_id not in ctx.db.tables["FileBox"]:
        raise not_found()
    replace_content(ctx.db, file_id, _file_bytes(data))
    return True


@method("FileService.renameFile", "is")
def file_rename(ctx: Context, file_id: int, name: str) -> bool:
    if file_id not in ctx.db.tables["FileBox"]:
        raise not_found()
    if not name.strip():
        raise invalid("fileName must not be empty")
    rename(ctx.db, file_id, name)
    return True


@method("FileService.getFile", "i")
def file_get(ctx: Context, file_id: int) -> FileData:
    data = ctx.db.files.get(file_id)
    if data is None:
        raise not_found()
    return FileData(data)


def _file_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        raise invalid("fileData is not valid base64") from None


# --- ContactService: duplicate check and merge ---


@method("ContactService.addWithDupCheck", "Ss")
def contact_add_with_dup_check(ctx: Context, data: dict[str, Value], dup_check_type: str) -> int:
    """A contact matching ``data`` on ``dupCheckType``'s fields (Email, EmailAndName,
    EmailAndNameAndCompany; case-insensitive) is updated and its id returned; else a new one."""
    if dup_check_type not in DUPLICATE_KEYS:
        raise invalid(f"dupCheckType must be one of {', '.join(DUPLICATE_KEYS)}")
    existing = ctx.db.find_duplicate(dup_check_type, ctx.db.checked("Contact", data))
    if existing is None:
        return ctx.db.add("Contact", data, ctx.now)
    return ctx.db.update("Contact", existing, data, ctx.now)


@method("ContactService.merge", "ii")
def contact_merge(ctx: Context, contact_id: int, duplicate_id: int) -> bool:
    ctx.db.merge(contact_id, duplicate_id, ctx.now)
    return True


# --- APIEmailService (opt-in status shared with REST's /emailAddresses) ---


@method("APIEmailService.optIn", "ss")
def email_opt_in(ctx: Context, email: str, reason: str) -> bool:
    """True when the address is now marketable; bounced, complained... addresses stay out.
    An address Keap does not know (see ``rest_unknown_email``) answers false."""
    now = to_datetime(ctx.now)
    if known_status(ctx.db, email, now) is None:
        return False
    return opt_in(ctx.db, email, reason or DEFAULT_REASON, now).opted_in


@method("APIEmailService.optOut", "ss")
def email_opt_out(ctx: Context, email: str, reason: str) -> bool:
    now = to_datetime(ctx.now)
    if known_status(ctx.db, email, now) is None:
        return False
    opt_out(ctx.db, email, reason or DEFAULT_REASON, now)
    return True


#: Opt-in status -> legacy ``getOptStatus``: 2 confirmed, 1 marketable, 0 not
#: (docs/keap.md#services).
OPT_STATUS = {"CONFIRMED": 2, "DOUBLE_OPT_IN": 2, "SINGLE_OPT_IN": 1, "UNENGAGED_MARKETABLE": 1}
DEFAULT_REASON = "Changed through the API"


@method("APIEmailService.getOptStatus", "s")
def email_get_opt_status(ctx: Context, email: str) -> int:
    status = known_status(ctx.db, email, to_datetime(ctx.now))
    return 0 if status is None else OPT_STATUS.get(status.status, 0)


# --- FunnelService and DataService.getUserInfo ---


@method("FunnelService.achieveGoal", "ssi")
def funnel_achieve_goal(ctx: Context, integration: str, call_name: str, contact_id: int) -> Value:
    """One struct per goal: ``{success, msg, funnelId, goalId, flowStart, flowStop}``; a goal
    that matches nothing is one ``success: false`` struct (flow items ``{success, msg,
    flowId}``, unverified)."""
    if contact_id not in ctx.db.tables["Contact"]:
        raise not_found()
    store = rest_store(ctx.db)
    result = achieve(store, (integration, call_name), contact_id, f"{integration}/{call_name}")
    goal: dict[str, Value] = {"success": result["success"], "msg": result["message"]}
    if "automation_id" in result:
        goal["funnelId"] = result["automation_id"]
        goal["goalId"] = result["goal_id"]
        goal["flowStart"] = [_flow(f) for f in result["flow_start_results"]]
        goal["flowStop"] = [_flow(f) for f in result["flow_stop_results"]]
    return [goal]


def _flow(item: dict[str, Any]) -> Value:
    return {"success": item["success"], "msg": item["message"], "flowId": item["flow_id"]}


@method("ContactService.runActionSequence", "ii")
def contact_run_action_sequence(ctx: Context, contact_id: int, set_id: int) -> Value:
    """One struct per action, ``{Action, Message, IsError}`` (legacy's keys unverified)."""
    steps = ACTION_SETS.get(set_id)
    if steps is None or contact_id not in ctx.db.tables["Contact"]:
        raise not_found()
    results: list[Value] = []
    for step in steps:
        op, message = step["op"], "OK"
        if op == "apply_tag":
            ctx.db.assign(contact_id, int(str(step["tag"])), ctx.now, on=True)
            action = f"Apply tag {step['tag']}"
        elif op == "remove_tag":
            ctx.db.assign(contact_id, int(str(step["tag"])), ctx.now, on=False)
            action = f"Remove tag {step['tag']}"
        elif op == "achieve_goal":
            key = (str(step["integration"]), str(step["call_name"]))
            action = f"Achieve goal {key[0]}/{key[1]}"
            result = achieve(rest_store(ctx.db), key, contact_id, "/".join(key))
            message = "OK" if result["success"] else str(result["message"])
        else:
            action = f"Add note {step['title']!r}"
            values = {"ContactId": contact_id, "ObjectType": "Note", "UserID": 1}
            values |= {"ActionDescription": step["title"], "CreationNotes": step["text"]}
            ctx.db.add("ContactAction", values, ctx.now)  # type: ignore[arg-type]
        results.append({"Action": action, "Message": message, "IsError": message != "OK"})
    return results


@method("DataService.addCustomField", "sssi")
def data_add_custom_field(
    ctx: Context, form: str, display: str, data_type: str, header_id: int
) -> int:
    """A new custom field (only Contact ones are simulated); its Name is the label without
    spaces or punctuation."""
    if form.casefold() != "contact":
        raise invalid(f"Only Contact custom fields are simulated, not {form}")
    kind = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", data_type).upper()
    if kind not in FIELD_TYPES:
        raise invalid(f"Invalid custom field type: {data_type}")
    try:
        return add_custom_field(ctx.db, display, kind)
    except ValueError as exc:
        raise invalid(str(exc)) from None


@method("DataService.updateCustomField", "iS")
def data_update_custom_field(ctx: Context, field_id: int, values: dict[str, Value]) -> bool:
    """Only ``Label`` is simulated (and translated)."""
    unknown = sorted(set(values) - {"Label"})
    if unknown:
        raise invalid(f"Unsupported custom field values: {', '.join(unknown)}")
    try:
        if values.get("Label"):
            relabel_custom_field(ctx.db, field_id, str(values["Label"]))
        elif field_id not in dict(custom_fields(ctx.db)):
            raise KeyError(field_id)
    except KeyError:
        raise not_found() from None
    return True


@method("ContactService.linkContacts", "iii")
def contact_link_contacts(ctx: Context, first: int, second: int, link_type: int) -> bool:
    for contact in (first, second):
        if contact not in ctx.db.tables["Contact"]:
            raise not_found()
    if link_type not in LINK_TYPES:
        raise invalid(f"Invalid link type: {link_type}")
    rest_store(ctx.db).links.add((first, second, link_type))
    return True


@method("DataService.getUserInfo", "")
def data_get_user_info(ctx: Context) -> Value:
    """Legacy key names unverified (docs/keap.md#open-questions, 9); keyshim's translator uses
    the same."""
    user = user_record(ctx.db.config.app_name)
    app = user["tenant_id"]
    return {
        "globalUserId": int(user["id"]),
        "localUserId": int(user["keap_id"]),
        "displayName": f"{user['given_name']} {user['family_name']}",
        "casUsername": user["email"],
        "appAlias": app,
        "appUrl": f"https://{app}.infusionsoft.com",
    }


from shim.simulator import (  # noqa: E402  (modules registering their services' methods)
    commerce_services,  # noqa: F401  (InvoiceService, OrderService)
    search_services,  # noqa: F401  (SearchService)
)
