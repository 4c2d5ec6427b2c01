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

from shim.rest import (
    actionsets,
    contact_map,
    custom_fields,
    dataservice,
    discounts,
    email,
    files,
    goals,
    listing,
    people,
    saved_searches,
    settings,
    tables,
    webforms,
)
from shim.rest import contacts as c
from shim.rest import orders as o
from shim.rest.judging import READS, TABLE_METHODS, WRITES, Judgement, table_method, worse
from shim.rest.spec import TableSpec
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
    #: For a call ``covers`` excludes: what it names that has no translation (" on table
    #: Company"), for the [NoRestTranslation] fault.
    why_not: Callable[[list[Any]], str] | None = None

    @property
    def repeatable(self) -> bool:
        """Safe to send again when an earlier attempt may have run."""
        return self.read_only or self.idempotent


_DATA_TABLES = ", ".join(tables.TABLES)
#: Every DataService table method: which calls translate, and what the fault names if not.
_DS: dict[str, Any] = {"covers": dataservice.covers, "why_not": dataservice.untranslated_table}
_CONTACT_WRITE = (
    "REST refuses a contact without an email, phone or address (legacy accepted a name "
    "alone), and a State without a Country; Country/State go as given (REST wants ISO codes); "
    "Birthday/Anniversary keep the date only"
)

_SEARCH = (
    "rows keyed by column name, every value a string as REST gives it (legacy's value types "
    "unverified), empty ones left out; legacy pages of 1000 from page 0 map onto REST's page "
    "tokens (cached: pages in order cost one run each, a cold jump to page N costs N+1); the "
    "report is read first for its user_ids: a user not listed (nor ALL_USERS) gets "
    "[RecordNotFound] (legacy's fault unverified); Keap marks the reporting endpoints "
    "deprecated"
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
    Translation("ContactService.runActionSequence", actionsets.run_action_sequence, ("ii",),
                "approximate", False, False,
                "the mapped steps: POST /tags/{id}/contacts:applyTags, :removeTags, "
                "/automations/goals/achieve, /contacts/{id}/notes",
                "only action sets the operator mapped (`shim actionset map`); others get "
                "[NoRestTranslation] saying how; one {Action, Message, IsError} per step (legacy "
                "keys unverified)"),
    Translation("DataService.query", dataservice.query, ("siiSL|sb",), "approximate", True,
                False, "GET on the table's REST resource (see the table sections below)",
                f"tables: {_DATA_TABLES}; what REST cannot filter is filtered locally up to "
                f"{listing.SCAN_LIMIT} records, else refused; pages by cursor (tokens cached); "
                "ContactGroupAssign needs an exact ContactId or GroupId", **_DS),
    Translation("DataService.findByField", dataservice.find_by_field, ("siis*L",),
                "approximate", True, False, "as DataService.query", "as DataService.query",
                **_DS),
    Translation("DataService.count", dataservice.count, ("sS",), "approximate", True, False,
                "as DataService.query; GET /tags/{id}/contacts/count",
                f"REST has no count: pages through ids (up to {listing.COUNT_LIMIT}, or "
                f"{listing.SCAN_LIMIT} when filtering locally)", **_DS),
    Translation("DataService.load", dataservice.load, ("siL",), "approximate", True, False,
                "GET on the table's item path", f"tables: {_DATA_TABLES}; Contact as "
                "ContactService.load", **_DS),
    Translation("DataService.add", dataservice.add, ("sS",), "approximate", False, False,
                "POST on the table's REST resource",
                "per table (see its section); Contact as ContactService.add", **_DS),
    Translation("DataService.update", dataservice.update, ("siS",), "approximate", False, True,
                "PATCH on the table's item path",
                "as DataService.add; Contact as ContactService.update", **_DS),
    Translation("DataService.delete", dataservice.delete, ("si",), "exact", False, False,
                "DELETE on the table's item path", **_DS),
    Translation("DataService.addCustomField", custom_fields.add_custom_field, ("sssi",),
                "approximate", False, False,
                "POST /{contacts,companies,opportunities}/model/customFields",
                "dataType WholeNumber -> field_type WHOLE_NUMBER; headerId 0 -> REST's default "
                "group; option lists are not set"),
    Translation("DataService.updateCustomField", custom_fields.update_custom_field, ("iS",),
                "approximate", False, True,
                "GET /contacts/model, PATCH /contacts/model/customFields/{id}",
                "contact fields, Label only (other keys are refused naming them)"),
    Translation("ContactService.linkContacts", people.link_contacts, ("iii",), "exact", False,
                False, "POST /contacts:link"),
    Translation("DataService.echo", settings.echo, ("s",), "exact", True, False, "(none)",
                "answered by keyshim", local=True),
    Translation("DataService.getAppSetting", settings.get_app_setting, ("ss",), "approximate",
                True, False, "GET /settings/applications:getConfiguration",
                "mapped: " + settings.documented_settings() + "; application.enabled is "
                "yes/no from GET /settings/applications:isEnabled; module and setting names "
                "compare case-insensitively; any other setting is refused naming it",
                covers=settings.setting_mapped, why_not=settings.unmapped_setting),
    Translation("DataService.getUserInfo", settings.get_user_info, ("",), "approximate", True,
                False, "GET /oauth/connect/userinfo",
                "legacy key names unverified: globalUserId, localUserId, displayName, "
                "casUsername, appAlias, appUrl"),
    Translation("FileService.getFile", files.get_file, ("i",), "exact", True, False,
                "GET /files/{id}:data", "streamed as base64, never held whole"),
    Translation("FileService.uploadFile", files.upload_file, ("isB", "sB"), "approximate",
                False, False, "POST /files (multipart)",
                "without a contact (two arguments, or contact 0) the file is the authenticated "
                "user's (file_association USER), like legacy's file box"),
    Translation("FileService.replaceFile", files.replace_file, ("iB",), "exact", False, True,
                "GET /files/{id}, POST /files/{id} (multipart, update_mask=file)"),
    Translation("FileService.renameFile", files.rename_file, ("is",), "exact", False, True,
                "POST /files/{id} (multipart, update_mask=file_name)"),
    Translation("APIEmailService.sendEmail", email.send_email, ("Assssssss",), "approximate",
                False, False, "POST /emails:send",
                "toAddress must be ~Contact.Email~, ~Contact.EmailAddress2~ or "
                "~Contact.EmailAddress3~ (REST sends to contacts); cc/bcc are refused (REST has "
                "none); fromAddress must be an authenticated sender in REST; merge fields "
                "untested"),
    Translation("APIEmailService.getEmailTemplate", email.get_email_template, ("i",),
                "approximate", True, False, "GET /emails/templates/{id}",
                "legacy key names unverified; categories joined with commas"),
    Translation("WebFormService.getMap", webforms.get_map, ("",), "approximate", True, False,
                "GET /webforms", "REST lists every webform of the app (newer kinds too), "
                f"up to {webforms.MAP_LIMIT}"),
    Translation("WebFormService.getHTML", webforms.get_html, ("i",), "exact", True, False,
                "GET /webforms/{id}:data"),
    Translation("APIEmailService.optIn", email.opt_in, ("ss",), "approximate", False, True,
                "PATCH /emailAddresses/{email}/status",
                "an empty reason becomes a default one (REST requires it); unknown address: "
                "false"),
    Translation("APIEmailService.optOut", email.opt_out, ("ss",), "exact", False, True,
                "PATCH /emailAddresses/{email}/status"),
    Translation("APIEmailService.getOptStatus", email.get_opt_status, ("s",), "approximate",
                True, False, "GET /emailAddresses/{email}/status",
                "2 CONFIRMED/DOUBLE_OPT_IN, 1 SINGLE_OPT_IN/UNENGAGED_MARKETABLE, 0 others "
                "(proposed mapping)"),
    Translation("FunnelService.achieveGoal", goals.achieve_goal, ("ssi",), "approximate", False,
                False, "POST /automations/goals/achieve",
                "flowStart/flowStop item shape unverified"),
    Translation("InvoiceService.createBlankOrder", o.create_blank_order, ("isdii",),
                "approximate", False, False, "POST /orders",
                "returns the invoice id (REST order id != invoice id; the pair is cached); "
                "order_type OFFLINE; REST refuses an empty description ([InvalidParameter])"),
    Translation("InvoiceService.addOrderItem", o.add_order_item, ("iiifiss",), "approximate",
                False, False, "GET /orders?filter=invoice_id== (cached), POST /orders/{id}/items",
                "types 5 (upsell) and 8 (program) read back as 4 and 3; prices below a cent are "
                "rounded to cents where REST reads them; a description or notes of "
                "whitespace alone is left out (REST refuses it); type 9 (subscription) "
                "needs a plan id legacy never sent: not translated", covers=o.item_covered,
                why_not=o.item_why_not),
    Translation("InvoiceService.addManualPayment", o.add_manual_payment, ("ifdssb",),
                "approximate", False, False, "POST /orders/{id}/payments (payment_method_type)",
                "REST accepts only the app's configured manual payment types and no more than "
                "the balance ([InvalidParameter]); legacy took any type and overpayments"),
    Translation("InvoiceService.chargeInvoice", o.charge_invoice, ("isiib",), "approximate",
                False, False, "GET /orders/{id}, GET /paymentMethods?filter=credit_card_id==, "
                "POST /orders/{id}/payments (payment_method_id)",
                "charges the balance; a decline (HTTP 400 or a declined status) is the result "
                "struct {Successful: false, Code: DECLINED}, never a fault; merchantAccountId "
                "cannot be chosen through REST (the card's merchant is used)"),
    Translation("InvoiceService.calculateAmountOwed", o.calculate_amount_owed, ("i",),
                "approximate", True, False, "GET /orders/{id}",
                "total - total_paid, in cents (REST's minor units) / 100: a legacy balance "
                "below a cent is rounded"),
    Translation("InvoiceService.getPayments", o.get_payments, ("i",), "approximate", True,
                False, "GET /sales/payments?filter=order_id==",
                "Payment fields Id, PayDate, PayAmt, PayType, ContactId, PayNote, InvoiceId"),
    Translation("InvoiceService.deleteInvoice", o.delete_invoice, ("i",), "exact", False,
                False, "DELETE /orders/{id}"),
    Translation("InvoiceService.getOrderId", o.get_order_id, ("i",), "exact", True, False,
                "GET /orders?filter=invoice_id== (cached)"),
    Translation("InvoiceService.addRecurringOrder", o.add_recurring_order, ("ibiiiii",),
                "approximate", False, False, "GET /paymentMethods, POST /subscriptions",
                "only daysTillCharge 0 (a later first bill would need keyshim's clock to agree "
                "with Keap's); merchantAccountId is ignored; the 10-argument form (quantity, "
                "price, tax) is not translated", covers=o.recurring_covered,
                why_not=o.recurring_why_not),
    Translation("InvoiceService.createInvoiceForRecurring", o.create_invoice_for_recurring,
                ("i",), "exact", False, False, "POST /subscriptions/{id}:invoice"),
    Translation("InvoiceService.updateJobRecurringNextBillDate", o.update_next_bill_date,
                ("id",), "approximate", False, True, "PATCH /subscriptions/{id}",
                "next_bill_date is a date (the time of day is dropped); REST refuses a date in "
                "the past with [InvalidParameter]"),
    Translation("ProductService.getInventory", o.get_inventory, ("i",), "exact", True, False,
                "GET /products/{id}", "inventory.inventory_count; none: 0"),
    Translation("InvoiceService.addPaymentPlan", o.add_payment_plan, ("ibiiiifddii",),
                "approximate", False, True, "GET /orders/{id}, GET /paymentMethods, "
                "PATCH /orders/{id} (payment_plan)",
                "dates are sent as days; merchantAccountId cannot be chosen through REST (the "
                "card's merchant is used)"),
    Translation("ProductService.deactivateCreditCard", o.deactivate_credit_card, ("i",),
                "exact", False, True, "GET /paymentMethods?filter=credit_card_id==, "
                "POST /contacts/{id}/paymentMethods/{pm}:deactivate"),
    Translation("OrderService.placeOrder", o.place_order, ("iiiAAbA", "iiiAAbAii"),
                "approximate", False, False,
                "POST /orders (with items), GET /paymentMethods, POST /orders/{id}/payments",
                "products only (pay plans, subscription plans, promo codes: not translated); "
                "the order time is keyshim's clock; result values are strings (unverified); "
                "an unknown product fails the whole order (legacy left an empty order)",
                covers=o.place_covered, why_not=o.place_why_not),
    # -- discounts (rest-commerce3) --
    Translation("DiscountService.getProductTotalDiscount", discounts.get_product_total_discount,
                ("i",), "approximate", True, False, "GET /discounts/products/{id}",
                "legacy keys and types unverified (after getFreeTrial's documented answer): "
                "name, description, applyDiscountToCommission (0/1), productId, percentOrAmt "
                "(1 percent, 0 amount), amt; REST's criteria are not part of it"),
    # -- SearchService: saved searches are REST reports --
    Translation("SearchService.getSavedSearchResultsAllFields", saved_searches.all_fields,
                ("iii",), "approximate", True, False,
                "GET /reporting/reports/{id}, POST /reporting/reports/{id}:run", _SEARCH),
    Translation("SearchService.getSavedSearchResults", saved_searches.some_fields, ("iiiL",),
                "approximate", True, False,
                "GET /reporting/reports/{id}, POST /reporting/reports/{id}:run (fields)",
                _SEARCH + "; the columns asked for, in the order asked"),
    Translation("SearchService.getAllReportColumns", saved_searches.report_columns, ("ii",),
                "approximate", True, False,
                "GET /reporting/reports/{id}, GET /reporting/reports/{id}/model",
                "{column name: label} from the report model (legacy's answer shape "
                "unverified); the user check as getSavedSearchResultsAllFields"),
]  # fmt: skip
TABLE: dict[str, Translation] = {t.method: t for t in TRANSLATIONS}

#: Legacy methods REST v2 cannot do at all, and why: a call gets [NoRestTranslation] saying
#: so (an ``auto`` account still forwards them to XML-RPC while it lasts), and readiness
#: reports show "no".
NO_EQUIVALENT: dict[str, str] = {
    "DataService.authenticateUser": "REST v2 has no user/password check (Keap removed this "
    "method in 2025; sign users in with OAuth)",
    "DataService.getTemporaryKey": "the vendor-key login flow exists only in the legacy API; "
    "REST v2 authenticates with OAuth tokens or service account keys",
    "InvoiceService.validateCreditCard": "REST v2 cannot check a card without charging it",
    "ContactService.pauseCampaign": "REST v2 cannot pause a contact in a campaign",
    "ContactService.resumeCampaignForContact": "REST v2 cannot resume a contact in a campaign",
    "ContactService.rescheduleCampaignStep": "REST v2 has no per-contact campaign steps",
    "ContactService.getNextCampaignStep": "REST v2 has no per-contact campaign steps",
    "APIEmailService.attachEmail": "REST v2 cannot attach an email to a contact's history",
    "FileService.getDownloadUrl": "REST v2 file metadata carries no download URL (download "
    "the bytes with FileService.getFile)",
    "WebTrackingService.getWebTrackingScriptTag": "REST v2 does not serve the tracking script",
    "WebTrackingService.getWebTrackingServiceDomain": "REST v2 does not serve tracking domains",
    # -- SearchService quick searches (saved searches translate: see above) --
    "SearchService.quickSearch": "REST v2 has no quick search (list the resource with a "
    "filter instead: DataService.query)",
    "SearchService.getAvailableQuickSearches": "REST v2 has no quick searches",
    "SearchService.getDefaultQuickSearch": "REST v2 has no quick searches",
}


def lookup(method: str, params: list[Value]) -> Translation | None:
    """The translation of a call (``params`` with the key first), or None."""
    entry = TABLE.get(method)
    if entry is None or (entry.covers is not None and not entry.covers(params[1:])):
        return None
    return entry


def untranslated_detail(method: str, params: list[Value]) -> str:
    """What in a call (``params`` with the key first) has no translation, for the fault:
    "" when it is the method itself."""
    entry = TABLE.get(method)
    if entry is None or entry.why_not is None:
        return ""
    return entry.why_not(params[1:])


def no_equivalent(method: str) -> str | None:
    """Why REST v2 cannot do ``method`` at all, or None."""
    return NO_EQUIVALENT.get(method)


def fidelity(method: str) -> Judgement:
    """ "exact", "approximate" or "no" for a method, whatever its arguments."""
    entry = TABLE.get(method)
    return entry.fidelity if entry is not None else "no"


@dataclass(frozen=True)
class TableSupport:
    """What a translated DataService table supports, for ``judge`` and the docs."""

    table: str
    #: DataService methods that translate on it (short names: "query", "add"...).
    methods: tuple[str, ...]
    #: Its fields' fidelity; a call's is the worse of this and the method's.
    fidelity: Fidelity
    rest: str
    notes: str = ""


#: Tables written by hand (not a ``spec.TableSpec``) say what they support here.
_HAND_MADE: dict[str, tuple[tuple[str, ...], Fidelity, str, str]] = {
    "Contact": (TABLE_METHODS, "approximate", "/contacts", "fields as the contact field map"),
    "ContactGroupAssign": (
        READS, "approximate", "/contacts/{id}/tags, /tags/{id}/contacts",
        "read-only, as in the legacy API; needs an exact ContactId or GroupId",
    ),
}  # fmt: skip


def _support(name: str, table: object) -> TableSupport:
    if name in _HAND_MADE:
        return TableSupport(name, *_HAND_MADE[name])
    parts: list[TableSpec] = (
        [table] if isinstance(table, TableSpec) else list(getattr(table, "parts", ()))
    )
    if not parts:  # a hand-made table that says nothing: judged by method alone
        return TableSupport(name, TABLE_METHODS, "approximate", "", "")
    writes = {w for p in parts if not p.legacy_read_only for w in p.writes}
    reads = tuple(r for r in READS if r != "load" or all(p.loads for p in parts))
    methods = reads + tuple(w for w in WRITES if w in writes)
    exact = all(p.fidelity == "exact" for p in parts)
    notes = parts[0].notes if len(parts) == 1 else str(getattr(table, "notes", ""))
    return TableSupport(
        name,
        methods,
        "exact" if exact else "approximate",
        ", ".join(p.path for p in parts),
        notes,
    )


def translated_tables() -> dict[str, TableSupport]:
    """The DataService tables that translate, and for which methods: read from the registry
    DataService dispatches on (``tables.TABLES``), so a new table spec counts the moment it
    is registered there."""
    return {name: _support(name, t) for name, t in sorted(tables.TABLES.items())}


def judge(method: str, table: str | None = None, args: list[Value] | None = None) -> Judgement:
    """Whether keyshim answers a call through REST v2: "exact", "approximate" or "no".

    ``table``: the DataService table (first argument after the key) when known; a table
    method on a table with no translation is "no". Unknown (None), the method alone decides.
    ``args`` (after the key), when known, are checked against the translation's ``covers``
    (e.g. which getAppSetting settings are mapped).
    """
    entry = TABLE.get(method)
    if entry is None:
        return "no"
    if args is not None and entry.covers is not None and not entry.covers(args):
        return "no"
    short = table_method(method)
    if short is None or table is None:
        return entry.fidelity
    spec = translated_tables().get(table)
    if spec is None or short not in spec.methods:
        return "no"
    return worse(entry.fidelity, spec.fidelity)


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
        "## No REST v2 equivalent",
        "",
        "These get `[NoRestTranslation]` with the reason; an `auto` account still forwards them",
        "to XML-RPC while it lasts.",
        "",
        "| method | why |",
        "|---|---|",
        *(f"| `{m}` | {why} |" for m, why in NO_EQUIVALENT.items()),
    ]
    lines += [
        "",
        "## DataService tables",
        "",
        "DataService methods on any other table get `[NoRestTranslation]`; `shim readiness`",
        "and `shim scan` judge a DataService call by its table as well as its method.",
        "",
        "| table | REST v2 | methods | fields | notes |",
        "|---|---|---|---|---|",
    ]
    for spec in translated_tables().values():
        methods = ", ".join(spec.methods)
        lines.append(
            f"| {spec.table} | `{spec.rest}` | {methods} | {spec.fidelity} | {spec.notes} |"
        )
    lines += _table_specs()
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


def _table_specs() -> list[str]:
    """One field table per DataService table declared by a ``spec.TableSpec``."""
    lines: list[str] = []
    for spec in tables.specs():
        writes = ", ".join(sorted(spec.writes)) if not spec.legacy_read_only else "none"
        lines += [
            "",
            f"## {spec.title or spec.table}",
            "",
            f"REST v2: `{spec.rest}`; fidelity: {spec.fidelity}; writes: {writes or 'none'}."
            + (f" {spec.notes}." if spec.notes else ""),
            "",
            "| legacy | type | REST v2 | filter | notes |",
            "|---|---|---|---|---|",
        ]
        for name, col in spec.columns.items():
            where = f"`{col.prop}`" if col.prop else "—"
            flt = ""
            if col.filter:
                flt = f"`{col.filter}`"
                extras = [
                    x
                    for x, on in (("prefix", col.wildcard), ("NONE", col.none), ("<>", col.compare))
                    if on
                ]
                flt += f" ({', '.join(extras)})" if extras else ""
            notes = [col.note] if col.note else []
            if not col.writable:
                notes.insert(0, "read-only")
            elif col.prop is not None and not col.rest_writable:
                notes.insert(0, "not writable through REST")
            lines.append(f"| {name} | {col.type} | {where} | {flt} | {'; '.join(notes)} |")
    return lines


if __name__ == "__main__":
    print(document(), end="")
