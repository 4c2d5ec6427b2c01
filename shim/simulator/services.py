"""The legacy XML-RPC methods the simulator answers (after the privateKey parameter).

Each method is registered with the argument types it accepts, in a small signature language
(``i`` int, ``s`` string, ``S`` struct, ``L`` list of strings, ``b`` boolean, ``B`` file data
as a base64 string or ``<base64>``, ``*`` any scalar; after ``|`` optional). Like Keap's Java
dispatcher, a call whose arguments fit no signature gets "No method matching arguments".
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from shim.simulator import query as q
from shim.simulator.data import DUPLICATE_KEYS, Database, to_datetime
from shim.simulator.faults import invalid, no_matching_method, no_such_handler, not_found
from shim.simulator.rest.other import achieve, user_record
from shim.simulator.rest.store import known_status, opt_in, opt_out, rest_store
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
    if code == "B":
        return isinstance(value, (str, bytes))
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
    return ctx.db.settings.get((module, setting), "")


# --- FileService ---


@method("FileService.uploadFile", "isB", "sB")
def file_upload(ctx: Context, *args: Any) -> int:
    """Both forms: ``(contactId, fileName, data)`` and ``(fileName, data)``."""
    contact_id: int | None = args[0] if len(args) == 3 else None
    name: str = args[-2]
    data = _file_bytes(args[-1])
    return ctx.db.add_file(contact_id or None, name, data)


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
