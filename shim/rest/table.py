"""THE translation table: every legacy method keyshim can answer through REST v2.

Routing (``route.py``), ``shim readiness`` and ``docs/translation.md`` all read this table and
nothing else, so what the docs promise is what the code does. Regenerate the doc with::

    python -m shim.rest.table > docs/translation.md

(a test fails when the committed doc differs from the generated one).

Per method: its handler and legacy signatures; ``fidelity`` (``exact``: the same values,
types and faults as the legacy API for every input keyshim knows of; ``approximate``: the
notes say where it differs); ``read_only``/``idempotent``: whether a call may be sent again
after an XML-RPC attempt that may have run (timeout, 500), which ``auto`` routing needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from shim.rest import contact_map, dataservice, files, listing, misc
from shim.rest import contacts as c
from shim.xmlrpc import Value

Fidelity = Literal["exact", "approximate"]
Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Translation:
    method: str
    handler: Handler
    #: Legacy argument types after the key (see legacy.check_signature).
    signatures: tuple[str, ...]
    fidelity: Fidelity
    read_only: bool
    idempotent: bool
    rest: str
    notes: str = ""
    #: Which argument lists translate (None: all); the others get [NoRestTranslation].
    covers: Callable[[list[Any]], bool] | None = None
    #: Answered by keyshim itself, no REST request.
    local: bool = False

    @property
    def repeatable(self) -> bool:
        """Safe to send again when an earlier attempt may have run."""
        return self.read_only or self.idempotent


_DATA_TABLES = "Contact, ContactGroup, ContactGroupCategory, ContactGroupAssign (read-only)"
_CONTACT_WRITE = (
    "REST refuses a contact without an email, phone or address (legacy accepted a name "
    "alone), and a State without a Country; Country/State go as given (REST wants ISO codes); "
    "Birthday/Anniversary keep the date only"
)

TRANSLATIONS: list[Translation] = [
    Translation("ContactService.add", c.add, ("S",), "approximate", False, False,
                "POST /contacts", _CONTACT_WRITE),
    Translation("ContactService.addWithDupCheck", c.add_with_dup_check, ("Ss",), "approximate",
                False, False, "GET /contacts?filter=email==, then PATCH (as update) or POST",
                "the match is looked up and updated field by field (REST's duplicate_option "
                "would replace whole arrays); a duplicate created by another client between "
                "the lookup and the add is not excluded; " + _CONTACT_WRITE),
    Translation("ContactService.update", c.update, ("iS",), "approximate", False, True,
                "PATCH /contacts/{id} (arrays: GET, merge, PATCH, GET)",
                "arrays, custom fields and half a company are read-merge-written under a lock "
                "and re-checked; a concurrent change by another client inside that round trip "
                "can be lost (REST has no ETag); " + _CONTACT_WRITE),
    Translation("ContactService.load", c.load, ("iL",), "approximate", True, False,
                "GET /contacts/{id}?fields=",
                "fields with no REST equivalent (see the field map) are left out; dates are "
                "read as UTC"),
    Translation("ContactService.findByEmail", c.find_by_email, ("sL",), "approximate", True,
                False, "GET /contacts?filter=email==", "as load; exact match re-checked locally"),
    Translation("ContactService.merge", c.merge, ("ii",), "exact", False, False,
                "POST /contacts:merge"),
    Translation("ContactService.addToGroup", c.add_to_group, ("ii",), "exact", False, True,
                "POST /tags/{id}/contacts:applyTags"),
    Translation("ContactService.removeFromGroup", c.remove_from_group, ("ii",), "exact", False,
                True, "GET /contacts/{id}, POST /tags/{id}/contacts:removeTags",
                "the GET keeps legacy's RecordNotFound for an unknown contact"),
    Translation("DataService.query", dataservice.query, ("siiSL|sb",), "approximate", True,
                False, "GET /contacts, /tags, /tags/categories, /contacts/{id}/tags, "
                "/tags/{id}/contacts",
                f"tables: {_DATA_TABLES}; what REST cannot filter is filtered locally up to "
                f"{listing.SCAN_LIMIT} records, else refused; pages by cursor (tokens cached); "
                "ContactGroupAssign needs an exact ContactId or GroupId",
                covers=dataservice.covers),
    Translation("DataService.findByField", dataservice.find_by_field, ("siis*L",),
                "approximate", True, False, "as DataService.query", "as DataService.query",
                covers=dataservice.covers),
    Translation("DataService.count", dataservice.count, ("sS",), "approximate", True, False,
                "as DataService.query; GET /tags/{id}/contacts/count",
                f"REST has no count: pages through ids (up to {listing.COUNT_LIMIT}, or "
                f"{listing.SCAN_LIMIT} when filtering locally)", covers=dataservice.covers),
    Translation("DataService.load", dataservice.load, ("siL",), "approximate", True, False,
                "GET /contacts/{id}, /tags/{id}, /tags/categories/{id}",
                f"tables: {_DATA_TABLES}; Contact as ContactService.load",
                covers=dataservice.covers),
    Translation("DataService.add", dataservice.add, ("sS",), "approximate", False, False,
                "POST /contacts, /tags, /tags/categories",
                "tag and category names must be unique in REST ([DatabaseError]) and non-empty; "
                "Contact as ContactService.add", covers=dataservice.covers),
    Translation("DataService.update", dataservice.update, ("siS",), "approximate", False, True,
                "PATCH /contacts/{id}, /tags/{id}, /tags/categories/{id}",
                "as DataService.add; Contact as ContactService.update",
                covers=dataservice.covers),
    Translation("DataService.delete", dataservice.delete, ("si",), "exact", False, False,
                "DELETE /contacts/{id}, /tags/{id}, /tags/categories/{id}",
                covers=dataservice.covers),
    Translation("DataService.echo", misc.echo, ("s",), "exact", True, False, "(none)",
                "answered by keyshim", local=True),
    Translation("DataService.getAppSetting", misc.get_app_setting, ("ss",), "approximate",
                True, False, "GET /settings/applications:getConfiguration",
                "mapped: " + ", ".join(f"{m}.{s}" for m, s in misc.APP_SETTINGS),
                covers=misc.setting_mapped),
    Translation("DataService.getUserInfo", misc.get_user_info, ("",), "approximate", True,
                False, "GET /oauth/connect/userinfo",
                "legacy key names unverified: globalUserId, localUserId, displayName, "
                "casUsername, appAlias, appUrl"),
    Translation("FileService.getFile", files.get_file, ("i",), "exact", True, False,
                "GET /files/{id}:data", "streamed as base64, never held whole"),
    Translation("FileService.uploadFile", files.upload_file, ("isB", "sB"), "approximate",
                False, False, "POST /files (multipart)",
                "only with a contact id: the two-argument form has no REST association",
                covers=files.uploads_to_contact),
    Translation("APIEmailService.optIn", misc.opt_in, ("ss",), "approximate", False, True,
                "PATCH /emailAddresses/{email}/status",
                "an empty reason becomes a default one (REST requires it); unknown address: "
                "false"),
    Translation("APIEmailService.optOut", misc.opt_out, ("ss",), "exact", False, True,
                "PATCH /emailAddresses/{email}/status"),
    Translation("APIEmailService.getOptStatus", misc.get_opt_status, ("s",), "approximate",
                True, False, "GET /emailAddresses/{email}/status",
                "2 CONFIRMED/DOUBLE_OPT_IN, 1 SINGLE_OPT_IN/UNENGAGED_MARKETABLE, 0 others "
                "(proposed mapping)"),
    Translation("FunnelService.achieveGoal", misc.achieve_goal, ("ssi",), "approximate", False,
                False, "POST /automations/goals/achieve",
                "flowStart/flowStop item shape unverified"),
]  # fmt: skip
TABLE: dict[str, Translation] = {t.method: t for t in TRANSLATIONS}


def lookup(method: str, params: list[Value]) -> Translation | None:
    """The translation of a call (``params`` with the key first), or None."""
    entry = TABLE.get(method)
    if entry is None or (entry.covers is not None and not entry.covers(params[1:])):
        return None
    return entry


def fidelity(method: str) -> str:
    """ "exact", "approximate" or "no", for readiness reports."""
    entry = TABLE.get(method)
    return entry.fidelity if entry is not None else "no"


# --- the generated document --------------------------------------------------------------


def document() -> str:
    lines = [
        "# Legacy XML-RPC methods keyshim answers through REST v2",
        "",
        "Generated by `python -m shim.rest.table > docs/translation.md` from",
        "`shim/rest/table.py` and `shim/rest/contact_map.py`; do not edit by hand.",
        "",
        "Accounts routed `rest` use these for every call; accounts routed `auto` use them when",
        "Keap's XML-RPC endpoint is unavailable. Any other method (or a call the notes exclude)",
        "gets `[NoRestTranslation]` (fault 112) and nothing is sent. *Repeatable* methods may be",
        "sent through REST after an XML-RPC attempt that may have run (a timeout or a 500);",
        "the others only after failures that prove XML-RPC did not run them.",
        "",
        "| method | REST v2 | fidelity | repeatable | notes |",
        "|---|---|---|---|---|",
    ]
    for t in TRANSLATIONS:
        repeat = "read-only" if t.read_only else "idempotent" if t.idempotent else "no"
        lines.append(f"| `{t.method}` | {t.rest} | {t.fidelity} | {repeat} | {t.notes} |")
    exact = sum(t.fidelity == "exact" for t in TRANSLATIONS)
    lines += [
        "",
        f"{len(TRANSLATIONS)} methods: {exact} exact, {len(TRANSLATIONS) - exact} approximate.",
        "",
        "## Contact fields",
        "",
        "Custom fields: legacy `_Name` is the REST custom field whose `field_name` is `Name`",
        "(`GET /contacts/model`, cached, re-read when a name is missing).",
        "",
        "| legacy | REST v2 | filter | notes |",
        "|---|---|---|---|",
    ]
    for m in contact_map.FIELDS.values():
        where = "—" if m.prop is None else f"`{m.prop}`"
        if m.slot:
            where += f" `{m.slot}`.`{m.attr}`"
        elif m.attr:
            where += f".`{m.attr}`"
        flt = f"`{m.filter}`" + (" (prefix)" if m.wildcard else "") if m.filter else ""
        notes = [m.note] if m.note else []
        if not m.writable:
            notes.insert(0, "read-only")
        elif not m.rest_writable:
            notes.insert(0, "not writable through REST")
        lines.append(f"| {m.legacy} | {where} | {flt} | {'; '.join(notes)} |")
    lines += [
        "",
        "## Queries",
        "",
        "- A criterion REST can filter exactly (an exact value, or `v%` on a prefix filter) is",
        "  sent as a REST `filter`; the rest (`%v`, `%v%`, `~<>~`, `~null~`, comparisons other",
        "  than on Id and LastUpdated) are checked by keyshim on what REST returns, reading at",
        f"  most {listing.SCAN_LIMIT} records; a query needing more is refused with",
        "  `[NoRestTranslation]` (add a criterion REST can filter on).",
        "- Legacy pages map onto REST cursors when REST filters and orders exactly (Contact by",
        "  Id, or ascending by DateCreated, LastUpdated or Email); page tokens are cached per",
        "  query, so walking pages in order costs one request each.",
        f"- ContactGroup, ContactGroupCategory: read whole (up to {listing.SCAN_LIMIT}) and",
        "  ordered locally. ContactGroupAssign (ContactId, GroupId, DateCreated, ContactGroup and",
        "  `Contact.X` for every Contact field REST returns) needs an exact ContactId or GroupId.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(document(), end="")
