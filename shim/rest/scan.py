"""``shim scan``: find the legacy XML-RPC calls in script sources, before they reach keyshim.

Keap cannot see which integrations call XML-RPC; the usage records only see scripts that run
while keyshim is in front of them. This reads sources (PHP, Python, JavaScript, Ruby) and lists
each legacy call with its file and line, its DataService table where it is a literal, and
whether keyshim answers it through REST v2 (``table.judge``: exact, approximate, no).

Pure: ``scan_text(text, path)`` takes a file's text; the CLI does the reading. What it knows:

* **PHP iSDK** (Infusionsoft's ``isdk.php``, 1.x): its short wrapper names, ``->dsQuery(`` and
  the like, mapped to the methods they call (``ISDK``, built from the iSDK's source).
  ``cfgCon``/``vendorCon`` count as ``DataService.getAppSetting('Application', 'enabled')``,
  the connection test they send; ``addCon`` as ``ContactService.add`` and, when the data has an
  Email, ``APIEmailService.optIn``.
* **infusionsoft-php** (the official SDK): service objects, ``->data()->query(``,
  ``->contacts('xml')->add(``. ``->contacts()`` without ``'xml'`` (also emails, files, orders,
  products) is its REST API and is not a legacy call.
* **Python**: attribute calls on a known legacy service, ``server.DataService.query(key,
  'Contact', ...)`` (``xmlrpc.client``), ``infusionsoft.ContactService.add(...)``
  (infusionsoft-client); infusionsoft-api's ``infusionsoft.ContactService('add', data)``;
  the PyPI ``infusionsoft`` package's helpers (``Infusionsoft(name, key).apply_tag(...)``) on
  a variable assigned from ``Infusionsoft(``.
* **JavaScript**: the same attribute form (``api.DataService.query(...)``, infusionsoft-api).
* **Ruby**: the infusionsoft gem's ``Infusionsoft.data_query(...)`` names (prefix names the
  service, the rest is camel-cased, with the gem's exceptions in ``RUBY_EXCEPTIONS``).
* **Any language**: a quoted ``'Service.method'`` string (raw XML-RPC clients).

A DataService table is reported when it is a string literal: the first quoted argument for the
wrappers whose table comes first; for raw and attribute forms, the first quoted string within
the call's next 300 characters that names a legacy table (the key, when it is a literal, never
does). Calls through a variable method name, and tables in variables, are not found: the
report says how many DataService calls had no literal table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from shim.rest import legacy
from shim.rest.judging import Judgement, table_method
from shim.rest.table import judge, translated_tables

LANGUAGES = {
    ".php": "php", ".phtml": "php", ".inc": "php",
    ".py": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".ts": "javascript",
    ".rb": "ruby",
}  # fmt: skip

SERVICES = frozenset(
    {"APIAffiliateService", "APIEmailService", "AffiliateProgramService", "AffiliateService"}
    | {"ContactService", "CreditCardSubmissionService", "DataService", "DiscountService"}
    | {"FileService", "FunnelService", "InvoiceService", "OrderService", "ProductService"}
    | {"SearchService", "ServiceCallService", "ShippingService", "WebFormService"}
    | {"WebTrackingService"}
)

#: The PHP iSDK's wrapper methods -> the legacy methods each sends (iSDK 1.9, isdk.php).
ISDK: dict[str, tuple[str, ...]] = {
    "cfgCon": ("DataService.getAppSetting",),
    "vendorCon": ("DataService.getTemporaryKey", "DataService.getAppSetting"),
    "appEcho": ("DataService.echo",),
    "getAffiliatesByProgram": ("AffiliateProgramService.getAffiliatesByProgram",),
    "getProgramsForAffiliate": ("AffiliateProgramService.getProgramsForAffiliate",),
    "getAffiliatePrograms": ("AffiliateProgramService.getAffiliatePrograms",),
    "getResourcesForAffiliateProgram": ("AffiliateProgramService.getResourcesForAffiliateProgram",),
    "affClawbacks": ("APIAffiliateService.affClawbacks",),
    "affCommissions": ("APIAffiliateService.affCommissions",),
    "affPayouts": ("APIAffiliateService.affPayouts",),
    "affRunningTotals": ("APIAffiliateService.affRunningTotals",),
    "affSummary": ("APIAffiliateService.affSummary",),
    "getRedirectLinksForAffiliate": ("AffiliateService.getRedirectLinksForAffiliate",),
    "addCon": ("ContactService.add", "APIEmailService.optIn"),
    "updateCon": ("ContactService.update",),
    "mergeCon": ("ContactService.merge",),
    "findByEmail": ("ContactService.findByEmail",),
    "loadCon": ("ContactService.load",),
    "grpAssign": ("ContactService.addToGroup",),
    "grpRemove": ("ContactService.removeFromGroup",),
    "resumeCampaignForContact": ("ContactService.resumeCampaignForContact",),
    "campAssign": ("ContactService.addToCampaign",),
    "getNextCampaignStep": ("ContactService.getNextCampaignStep",),
    "getCampaigneeStepDetails": ("ContactService.getCampaigneeStepDetails",),
    "rescheduleCampaignStep": ("ContactService.rescheduleCampaignStep",),
    "campRemove": ("ContactService.removeFromCampaign",),
    "campPause": ("ContactService.pauseCampaign",),
    "runAS": ("ContactService.runActionSequence",),
    "applyActivityHistoryTemplate": ("ContactService.applyActivityHistoryTemplate",),
    "getActivityHistoryTemplateMap": ("ContactService.getActivityHistoryTemplateMap",),
    "addWithDupCheck": ("ContactService.addWithDupCheck",),
    "requestCcSubmissionToken": ("CreditCardSubmissionService.requestSubmissionToken",),
    "requestCreditCardId": ("CreditCardSubmissionService.requestCreditCardId",),
    "dsGetSetting": ("DataService.getAppSetting",),
    "dsAdd": ("DataService.add",),
    "dsAddWithImage": ("DataService.add",),
    "dsDelete": ("DataService.delete",),
    "dsUpdate": ("DataService.update",),
    "dsUpdateWithImage": ("DataService.update",),
    "dsLoad": ("DataService.load",),
    "dsFind": ("DataService.findByField",),
    "dsQuery": ("DataService.query",),
    "dsQueryOrderBy": ("DataService.query",),
    "dsCount": ("DataService.count",),
    "addCustomField": ("DataService.addCustomField",),
    "authenticateUser": ("DataService.authenticateUser",),
    "updateCustomField": ("DataService.updateCustomField",),
    "addFreeTrial": ("DiscountService.addFreeTrial",),
    "getFreeTrial": ("DiscountService.getFreeTrial",),
    "addOrderTotalDiscount": ("DiscountService.addOrderTotalDiscount",),
    "getOrderTotalDiscount": ("DiscountService.getOrderTotalDiscount",),
    "addCategoryDiscount": ("DiscountService.addCategoryDiscount",),
    "getCategoryDiscount": ("DiscountService.getCategoryDiscount",),
    "addCategoryAssignmentToCategoryDiscount": (
        "DiscountService.addCategoryAssignmentToCategoryDiscount",
    ),
    "getCategoryAssignmentsForCategoryDiscount": (
        "DiscountService.getCategoryAssignmentsForCategoryDiscount",
    ),
    "addProductTotalDiscount": ("DiscountService.addProductTotalDiscount",),
    "getProductTotalDiscount": ("DiscountService.getProductTotalDiscount",),
    "addShippingTotalDiscount": ("DiscountService.addShippingTotalDiscount",),
    "getShippingTotalDiscount": ("DiscountService.getShippingTotalDiscount",),
    "attachEmail": ("APIEmailService.attachEmail",),
    "getAvailableMergeFields": ("APIEmailService.getAvailableMergeFields",),
    "sendEmail": ("APIEmailService.sendEmail",),
    "sendTemplate": ("APIEmailService.sendEmail",),
    "createEmailTemplate": ("APIEmailService.addEmailTemplate",),
    "addEmailTemplate": ("APIEmailService.addEmailTemplate",),
    "getEmailTemplate": ("APIEmailService.getEmailTemplate",),
    "updateEmailTemplate": ("APIEmailService.updateEmailTemplate",),
    "optStatus": ("APIEmailService.getOptStatus",),
    "optIn": ("APIEmailService.optIn",),
    "optOut": ("APIEmailService.optOut",),
    "getFile": ("FileService.getFile",),
    "uploadFile": ("FileService.uploadFile",),
    "replaceFile": ("FileService.replaceFile",),
    "renameFile": ("FileService.renameFile",),
    "getDownloadUrl": ("FileService.getDownloadUrl",),
    "achieveGoal": ("FunnelService.achieveGoal",),
    "deleteInvoice": ("InvoiceService.deleteInvoice",),
    "deleteSubscription": ("InvoiceService.deleteSubscription",),
    "getPayments": ("InvoiceService.getPayments",),
    "setInvoiceSyncStatus": ("InvoiceService.setInvoiceSyncStatus",),
    "setPaymentSyncStatus": ("InvoiceService.setPaymentSyncStatus",),
    "getPluginStatus": ("InvoiceService.getPluginStatus",),
    "getAllPaymentOptions": ("InvoiceService.getAllPaymentOptions",),
    "manualPmt": ("InvoiceService.addManualPayment",),
    "commOverride": ("InvoiceService.addOrderCommissionOverride",),
    "addOrderItem": ("InvoiceService.addOrderItem",),
    "payPlan": ("InvoiceService.addPaymentPlan",),
    "addRecurring": ("InvoiceService.addRecurringOrder",),
    "addRecurringAdv": ("InvoiceService.addRecurringOrder",),
    "amtOwed": ("InvoiceService.calculateAmountOwed",),
    "getInvoiceId": ("InvoiceService.getInvoiceId",),
    "getOrderId": ("InvoiceService.getOrderId",),
    "chargeInvoice": ("InvoiceService.chargeInvoice",),
    "blankOrder": ("InvoiceService.createBlankOrder",),
    "recurringInvoice": ("InvoiceService.createInvoiceForRecurring",),
    "locateCard": ("InvoiceService.locateExistingCard",),
    "validateCard": ("InvoiceService.validateCreditCard",),
    "updateSubscriptionNextBillDate": ("InvoiceService.updateJobRecurringNextBillDate",),
    "recalculateTax": ("InvoiceService.recalculateTax",),
    "placeOrder": ("OrderService.placeOrder",),
    "getInventory": ("ProductService.getInventory",),
    "incrementInventory": ("ProductService.incrementInventory",),
    "decrementInventory": ("ProductService.decrementInventory",),
    "increaseInventory": ("ProductService.increaseInventory",),
    "decreaseInventory": ("ProductService.decreaseInventory",),
    "deactivateCreditCard": ("ProductService.deactivateCreditCard",),
    "savedSearchAllFields": ("SearchService.getSavedSearchResultsAllFields",),
    "savedSearch": ("SearchService.getSavedSearchResults",),
    "getAvailableFields": ("SearchService.getAllReportColumns",),
    "getDefaultQuickSearch": ("SearchService.getDefaultQuickSearch",),
    "getQuickSearches": ("SearchService.getAvailableQuickSearches",),
    "quickSearch": ("SearchService.quickSearch",),
    "addMoveNotes": ("ServiceCallService.addMoveNotes",),
    "moveTicketStage": ("ServiceCallService.moveTicketStage",),
    "getAllShippingOptions": ("ShippingService.getAllShippingOptions",),
    "getAllConfiguredShippingOptions": ("ShippingService.getAllShippingOptions",),
    "getFlatRateShippingOption": ("ShippingService.getFlatRateShippingOption",),
    "getOrderTotalShippingOption": ("ShippingService.getOrderTotalShippingOption",),
    "getOrderTotalShippingRanges": ("ShippingService.getOrderTotalShippingRanges",),
    "getProductBasedShippingOption": ("ShippingService.getProductBasedShippingOption",),
    "getProductShippingPricesForProductShippingOption": (
        "ShippingService.getProductShippingPricesForProductShippingOption",
    ),
    "getOrderQuantityShippingOption": ("ShippingService.getOrderQuantityShippingOption",),
    "getWeightBasedShippingOption": ("ShippingService.getWeightBasedShippingOption",),
    "getWeightBasedShippingRanges": ("ShippingService.getWeightBasedShippingRanges",),
    "getUpsShippingOption": ("ShippingService.getUpsShippingOption",),
    "getWebFormMap": ("WebFormService.getMap",),
    "getWebFormHtml": ("WebFormService.getHTML",),
    "getWebTrackingServiceTag": ("WebTrackingService.getWebTrackingScriptTag",),
    "getWebTrackingScriptUrl": ("WebTrackingService.getWebTrackingScriptUrl",),
}
#: Arguments an iSDK wrapper sends on its own (cfgCon's connection test).
ISDK_ARGS: dict[str, list[Any]] = {
    "cfgCon": ["Application", "enabled"],
    "vendorCon": ["Application", "enabled"],
}
#: iSDK wrappers whose first argument is the table.
ISDK_TABLE_FIRST = frozenset(
    {"dsAdd", "dsAddWithImage", "dsDelete", "dsUpdate", "dsUpdateWithImage", "dsLoad", "dsFind"}
    | {"dsQuery", "dsQueryOrderBy", "dsCount"}
)

#: infusionsoft-php's service accessors that are XML-RPC whatever their argument...
PHP_XMLRPC_SERVICES = {
    "affiliatePrograms": "AffiliateProgramService",
    "affiliates": "APIAffiliateService",
    "data": "DataService",
    "discounts": "DiscountService",
    "funnels": "FunnelService",
    "invoices": "InvoiceService",
    "search": "SearchService",
    "shipping": "ShippingService",
    "webForms": "WebFormService",
    "webTracking": "WebTrackingService",
}
#: ... and those that are REST unless called with 'xml'.
PHP_DUAL_SERVICES = {
    "contacts": "ContactService",
    "emails": "APIEmailService",
    "files": "FileService",
    "orders": "OrderService",
    "products": "ProductService",
}

#: The PyPI ``infusionsoft`` package (``Infusionsoft(name, key)``): helper -> (method, table).
PY_HELPERS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "find_by_email": (("ContactService.findByEmail", None),),
    "find_by_first_and_last_name": (("SearchService.quickSearch", None),),
    "get_by_id": (("ContactService.load", None),),
    "add": (("ContactService.add", None), ("APIEmailService.optIn", None)),
    "remove": (("DataService.delete", "Contact"),),
    "get_list_of_owners": (("DataService.query", "User"),),
    "apply_tag": (("ContactService.addToGroup", None),),
    "add_note": (("DataService.add", "ContactAction"),),
    "set_owner": (("ContactService.update", None),),
    "get_owner": (("ContactService.load", None),),
    "place_order": (("OrderService.placeOrder", None),),
    "get_opportunities": (("DataService.query", "Lead"),),
    "create_opportunity": (("DataService.add", "Lead"),),
    "move_opportunity_stage": (("DataService.query", "Lead"), ("DataService.update", "Lead")),
}

#: The infusionsoft gem: ``<prefix>_<rest>`` -> Service.<camelCase rest>, except these.
RUBY_PREFIXES = {
    "affiliate_program": "AffiliateProgramService",
    "affiliate": "APIAffiliateService",
    "contact": "ContactService",
    "credit_card_submission": "CreditCardSubmissionService",
    "data": "DataService",
    "discount": "DiscountService",
    "email": "APIEmailService",
    "file": "FileService",
    "funnel": "FunnelService",
    "invoice": "InvoiceService",
    "order": "OrderService",
    "product": "ProductService",
    "search": "SearchService",
    "shipping": "ShippingService",
    "web_form": "WebFormService",
    "web_tracking": "WebTrackingService",
}
RUBY_EXCEPTIONS = {
    "data_query_order_by": "DataService.query",
    "contact_run_action_set": "ContactService.runActionSequence",
    "contact_resume_campaign": "ContactService.resumeCampaignForContact",
    "email_optin": "APIEmailService.optIn",
    "email_optout": "APIEmailService.optOut",
    "email_send": "APIEmailService.sendEmail",
    "email_send_template": "APIEmailService.sendEmail",
    "email_get_opt_status": "APIEmailService.getOptStatus",
    "email_get_template": "APIEmailService.getEmailTemplate",
    "email_add": "APIEmailService.addEmailTemplate",
    "email_attach": "APIEmailService.attachEmail",
    "email_update_template": "APIEmailService.updateEmailTemplate",
    "file_upload": "FileService.uploadFile",
    "file_get": "FileService.getFile",
    "file_url": "FileService.getDownloadUrl",
    "file_rename": "FileService.renameFile",
    "file_replace": "FileService.replaceFile",
    "invoice_validate_creditcard": "InvoiceService.validateCreditCard",
    "invoice_update_recurring_next_bill_date": "InvoiceService.updateJobRecurringNextBillDate",
    "order_place_order": "OrderService.placeOrder",
    "web_form_get_html": "WebFormService.getHTML",
    # the gem's search names (lib/infusionsoft/client/search.rb)
    "search_get_saved_search_results": "SearchService.getSavedSearchResultsAllFields",
    "search_get_default_search_type": "SearchService.getDefaultQuickSearch",
}

_QUOTED = r"""(?:'(?P<s1>[^'\\\n]*)'|"(?P<s2>[^"\\\n]*)")"""
_LITERAL = re.compile(_QUOTED)
_FIRST_ARG = re.compile(r"\s*" + _QUOTED)
_SERVICE_NAMES = "|".join(sorted(SERVICES))
_RAW = re.compile(r"""(['"])(?P<svc>""" + _SERVICE_NAMES + r""")\.(?P<m>[A-Za-z]\w*)\1""")
_ATTR = re.compile(r"(?<![\w'\"])(?P<svc>" + _SERVICE_NAMES + r")\.(?P<m>[A-Za-z]\w*)\s*\(")
#: infusionsoft-api (PyPI): ``infusionsoft.ContactService('add', data)``.
_CALL_STYLE = re.compile(
    r"(?<![\w'\".])(?:\w+\.)?(?P<svc>" + _SERVICE_NAMES + r")\(\s*['\"](?P<m>[A-Za-z]\w*)['\"]"
)
_PHP_WRAPPER = re.compile(r"->\s*(?P<name>[A-Za-z]\w*)\s*\(")
_PHP_SERVICE = re.compile(
    r"->\s*(?P<acc>[A-Za-z]\w*)\(\s*(?P<xml>['\"]xml['\"])?\s*\)\s*->\s*(?P<m>[A-Za-z]\w*)\s*\("
)
_PY_INSTANCE = re.compile(r"(?P<var>[A-Za-z_][\w.]*)\s*=\s*(?:[\w.]+\.)?Infusionsoft\(")
_RUBY = re.compile(r"\bInfusionsoft\.(?P<name>[a-z]\w*)")
#: Legacy table names a literal may be (translated or not).
KNOWN_TABLES = frozenset(legacy.OTHER_TABLES) | frozenset(translated_tables())
_LOOKAHEAD = 300


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    #: What the source says (``dsQuery``, ``DataService.query``, ``data_query``...).
    source: str
    method: str
    table: str | None
    translation: Judgement
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def language(path: str) -> str | None:
    """The language of a file by its name, or None for files not scanned."""
    dot = path.rfind(".")
    return LANGUAGES.get(path[dot:].lower()) if dot >= 0 else None


def _literal(m: re.Match[str]) -> str:
    return m.group("s1") if m.group("s1") is not None else m.group("s2") or ""


def _first_arg(text: str, at: int) -> str | None:
    """The first argument after ``(`` at ``at`` when it is a string literal."""
    m = _FIRST_ARG.match(text, at)
    return _literal(m) if m else None


def _table_nearby(text: str, at: int) -> str | None:
    """The first quoted legacy table name in the call's next characters (raw/attribute form)."""
    window = text[at : at + _LOOKAHEAD]
    stop = _RAW.search(window)  # the next call's method string ends the search
    if stop:
        window = window[: stop.start()]
    for m in _LITERAL.finditer(window):
        if _literal(m) in KNOWN_TABLES:
            return _literal(m)
    return None


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def ruby_method(name: str) -> str | None:
    """The legacy method an infusionsoft gem call names, or None."""
    if name in RUBY_EXCEPTIONS:
        return RUBY_EXCEPTIONS[name]
    for prefix in sorted(RUBY_PREFIXES, key=len, reverse=True):
        if name.startswith(prefix + "_"):
            return f"{RUBY_PREFIXES[prefix]}.{_camel(name[len(prefix) + 1 :])}"
    return None


class _Lines:
    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def of(self, offset: int) -> int:
        lo, hi = 0, len(self.starts)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.starts[mid] <= offset:
                lo = mid
            else:
                hi = mid
        return lo + 1


def _finding(
    path: str,
    line: int,
    source: str,
    method: str,
    table: str | None,
    args: list[Any] | None = None,
    note: str = "",
) -> Finding:
    if table_method(method) is not None and table is None and not note:
        note = "table not a literal"
    return Finding(path, line, source, method, table, judge(method, table, args), note)


def scan_text(text: str, path: str, lang: str | None = None) -> list[Finding]:
    """Every legacy call found in one file's text, in order of position."""
    lang = lang or language(path) or ""
    lines = _Lines(text)
    found: list[tuple[int, Finding]] = []
    claimed: set[int] = set()  # PHP: offsets of method names already reported

    def add(offset: int, *args: Any, **kw: Any) -> None:
        found.append((offset, _finding(path, lines.of(offset), *args, **kw)))

    if lang == "php":
        for m in _PHP_SERVICE.finditer(text):
            claimed.add(m.start("m"))
            acc, name = m.group("acc"), m.group("m")
            service = PHP_XMLRPC_SERVICES.get(acc)
            if service is None and m.group("xml"):
                service = PHP_DUAL_SERVICES.get(acc)
            if service is None:
                continue  # REST (contacts()) or not infusionsoft-php at all
            method = f"{service}.{name}"
            table = _first_arg(text, m.end()) if table_method(method) else None
            arg = "'xml'" if m.group("xml") else ""
            add(m.start("m"), f"{acc}({arg})->{name}", method, table)
        for m in _PHP_WRAPPER.finditer(text):
            name = m.group("name")
            if m.start("name") in claimed or name not in ISDK:
                continue
            claimed.add(m.start("name"))
            table = _first_arg(text, m.end()) if name in ISDK_TABLE_FIRST else None
            for method in ISDK[name]:
                args = ISDK_ARGS.get(name) if method == "DataService.getAppSetting" else None
                note = "when the data has an Email" if method == "APIEmailService.optIn" else ""
                if args:
                    note = "connection test: getAppSetting('Application', 'enabled')"
                add(m.start("name"), name, method, table, args, note=note)
    if lang == "python":
        names = {m.group("var") for m in _PY_INSTANCE.finditer(text)}
        for var in sorted(names):
            helper = re.compile(re.escape(var) + r"\.(?P<h>[a-z_]+)\s*\(")
            for m in helper.finditer(text):
                for method, table in PY_HELPERS.get(m.group("h"), ()):
                    add(m.start("h"), m.group("h"), method, table)
    if lang == "ruby":
        for m in _RUBY.finditer(text):
            gem_method = ruby_method(m.group("name"))
            if gem_method is None:
                continue
            method = gem_method
            rest = text[m.end() :]
            paren = re.match(r"\s*\(?", rest)
            at = m.end() + (paren.end() if paren else 0)
            table = _first_arg(text, at) if table_method(method) else None
            add(m.start("name"), m.group("name"), method, table)
    for m in _ATTR.finditer(text):
        method = f"{m.group('svc')}.{m.group('m')}"
        table = _table_nearby(text, m.end()) if table_method(method) else None
        add(m.start("svc"), method, method, table)
    for m in _CALL_STYLE.finditer(text):
        method = f"{m.group('svc')}.{m.group('m')}"
        table = _table_nearby(text, m.end()) if table_method(method) else None
        add(m.start("svc"), f"{m.group('svc')}('{m.group('m')}')", method, table)
    for m in _RAW.finditer(text):
        method = f"{m.group('svc')}.{m.group('m')}"
        table = _table_nearby(text, m.end()) if table_method(method) else None
        add(m.start("svc"), method, method, table)
    found.sort(key=lambda f: (f[0], f[1].method))
    return [f for _, f in found]


def summary(findings: Iterable[Finding]) -> dict[str, Any]:
    """Counts by judgement, the untranslated methods (with tables), files."""
    items = list(findings)
    counts = {"exact": 0, "approximate": 0, "no": 0}
    missing: dict[str, int] = {}
    for f in items:
        counts[f.translation] += 1
        if f.translation == "no":
            name = f.method + (f" {f.table}" if f.table else "")
            missing[name] = missing.get(name, 0) + 1
    return {
        "calls": len(items),
        **counts,
        "files": len({f.path for f in items}),
        "no_literal_table": sum(f.note == "table not a literal" for f in items),
        "untranslated": dict(sorted(missing.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def lines(findings: list[Finding]) -> list[str]:
    """The human form: one line per call, then the summary."""
    out = []
    for f in findings:
        name = f.method + (f" {f.table}" if f.table else "")
        via = f" (via {f.source})" if f.source != f.method else ""
        note = f"  [{f.note}]" if f.note else ""
        out.append(f"{f.path}:{f.line}: {name}{via}: {f.translation}{note}")
    s = summary(findings)
    out.append(
        f"{s['calls']} legacy calls in {s['files']} files: {s['exact']} exact, "
        f"{s['approximate']} approximate, {s['no']} with no REST v2 translation"
    )
    if s["no_literal_table"]:
        out.append(f"{s['no_literal_table']} DataService calls name their table in a variable")
    for name, n in s["untranslated"].items():
        out.append(f"  no translation: {name} ({n})")
    return out
