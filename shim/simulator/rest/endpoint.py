"""The REST v2 endpoint (``/crm/rest/v2/...``), over the same data as the XML-RPC endpoint.

A contact added with ``ContactService.add`` is ``GET /contacts/{id}``, a tag applied with
``POST /tags/{id}/contacts:applyTags`` is in ``Contact.Groups``: both endpoints read and write
one ``Database``. Checks, outermost first, as a request meets Keap's gateway and then the app:

1. Credentials, exactly as XML-RPC: ``Authorization: Bearer``, ``?access_token=`` or
   ``X-Keap-API-Key``; otherwise Apigee's JSON 401.
2. Throttles, on the XML-RPC endpoint's own ``Quotas``: Keap's limits are per credential,
   not per protocol, so every REST request counts against the same minute and day, and every
   answer carries the usage headers.
3. The injected failure queue ``failures`` (same kinds as the other endpoints).
4. Routing: an unknown path is a 404 and a known path with another method a 405, both with
   the REST error body.

``xmlrpc_mode`` is never looked at: Keap's brownouts switch off XML-RPC, not REST.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from shim.serve.asgi import Send
from shim.simulator.asgi import Answer, Request, json_answer, send_answer
from shim.simulator.config import SimConfig
from shim.simulator.data import Database
from shim.simulator.endpoint import XmlRpcEndpoint
from shim.simulator.failures import INVALID_TOKEN, FailureQueue, deliver
from shim.simulator.faults import CODES, KeapFault
from shim.simulator.quota import limits_for
from shim.simulator.rest import (
    contacts,
    discounts,
    email_status,
    emails,
    files,
    goals,
    order_items,
    orders,
    products,
    reports,
    settings,
    subscription_update,
    tags,
    transactions,
    webforms,
)
from shim.simulator.rest import resources as res
from shim.simulator.rest import tag_contacts as tagged
from shim.simulator.rest.http import Call, RestError
from shim.simulator.rest.store import rest_store

PREFIX = "/crm/rest/v2"
Handler = Callable[[Call], Answer]

#: (path template, handlers by method). First match wins, so literal paths come before the
#: templates they would also match (``/contacts/model`` before ``/contacts/{contact_id}``).
_TABLE: list[tuple[str, dict[str, Handler]]] = [
    ("/contacts", {"GET": contacts.list_contacts, "POST": contacts.create}),
    ("/contacts:merge", {"POST": contacts.merge}),
    ("/contacts:link", {"POST": contacts.link}),
    ("/contacts/model", {"GET": contacts.model}),
    ("/contacts/model/customFields", {"POST": contacts.create_custom_field}),
    ("/contacts/model/customFields/groups", {"GET": contacts.custom_field_groups}),
    ("/contacts/model/customFields/tabs", {"GET": contacts.custom_field_tabs}),
    ("/contacts/model/customFields/{custom_field_id}", {"PATCH": contacts.update_custom_field}),
    (
        "/contacts/{contact_id}",
        {"GET": contacts.get, "PATCH": contacts.update, "DELETE": contacts.delete},
    ),
    ("/contacts/{contact_id}/tags", {"GET": tagged.contact_tags}),
    ("/contacts/{contact_id}/notes", res.NOTES.handlers()[0]),
    ("/contacts/{contact_id}/notes/{note_id}", res.NOTES.handlers()[1]),
    ("/notes", {"GET": res.NOTES.handlers()[0]["GET"]}),
    ("/tasks", res.TASKS.handlers()[0]),
    ("/tasks/{task_id}", res.TASKS.handlers()[1]),
    ("/tags", {"GET": tags.list_tags, "POST": tags.create_tag}),
    ("/tags/categories", {"GET": tags.list_categories, "POST": tags.create_category}),
    (
        "/tags/categories/{category_id}",
        {"GET": tags.get_category, "PATCH": tags.update_category, "DELETE": tags.delete_category},
    ),
    ("/tags/{tag_id}", {"GET": tags.get_tag, "PATCH": tags.update_tag, "DELETE": tags.delete_tag}),
    ("/tags/{tag_id}/contacts:applyTags", {"POST": tagged.apply_tags}),
    ("/tags/{tag_id}/contacts:removeTags", {"POST": tagged.remove_tags}),
    ("/tags/{tag_id}/contacts", {"GET": tagged.tagged_contacts}),
    ("/tags/{tag_id}/contacts/count", {"GET": tagged.count_tagged}),
    ("/leadSources", res.LEAD_SOURCES.handlers()[0]),
    ("/leadSources/{lead_source_id}", res.LEAD_SOURCES.handlers()[1]),
    ("/leadSourceCategories", res.LEAD_SOURCE_CATEGORIES.handlers()[0]),
    ("/leadSourceCategories/{lead_source_category_id}", res.LEAD_SOURCE_CATEGORIES.handlers()[1]),
    ("/companies", res.COMPANIES.handlers()[0]),
    ("/companies/{company_id}", res.COMPANIES.handlers()[1]),
    ("/users", res.USERS.handlers()[0]),
    ("/users/{user_id}", res.USERS.handlers()[1]),
    ("/opportunities/stages", res.STAGES.handlers()[0]),
    ("/opportunities/stages/{stage_id}", res.STAGES.handlers()[1]),
    ("/opportunities", res.OPPORTUNITIES.handlers()[0]),
    ("/opportunities/{opportunity_id}", res.OPPORTUNITIES.handlers()[1]),
    ("/files", {"POST": files.create}),
    ("/files/{file_id}", {"GET": files.get, "POST": files.update, "DELETE": files.delete}),
    ("/files/{file_id}:data", {"GET": files.data}),
    (
        "/emailAddresses/{email}/status",
        {"GET": email_status.get_email_status, "PATCH": email_status.update_email_status},
    ),
    ("/automations/goals/achieve", {"POST": goals.achieve_goal}),
    ("/emails:send", {"POST": emails.send}),
    ("/webforms", {"GET": webforms.list_webforms}),
    ("/webforms/{webform_id}:data", {"GET": webforms.webform_html}),
    ("/emails/templates/{email_template_id}", {"GET": emails.get_template}),
    ("/oauth/connect/userinfo", {"GET": settings.user_info}),
    ("/settings/applications:getConfiguration", {"GET": settings.get_configuration}),
    ("/settings/contactOptionTypes", {"GET": settings.contact_option_types}),
    ("/settings/applications:isEnabled", {"GET": settings.is_enabled}),
    ("/orders", {"GET": orders.list_orders, "POST": orders.create_order}),
    (
        "/orders/{order_id}",
        {"GET": orders.get_order, "PATCH": orders.update_order, "DELETE": orders.delete_order},
    ),
    ("/orders/{order_id}/items", {"POST": orders.create_item}),
    (
        "/orders/{order_id}/items/{order_item_id}",
        {"GET": order_items.get_item, "PATCH": order_items.update_item},
    ),
    (
        "/orders/{order_id}/payments",
        {"GET": orders.list_order_payments, "POST": orders.create_payment},
    ),
    ("/sales/payments", {"GET": orders.list_sales_payments}),
    ("/sales/transactions", {"GET": transactions.list_transactions}),
    ("/paymentMethods", {"GET": orders.list_payment_methods}),
    ("/contacts/{contact_id}/paymentMethods", {"GET": orders.contact_payment_methods}),
    (
        "/contacts/{contact_id}/paymentMethods/{payment_method_id}:deactivate",
        {"POST": orders.deactivate_payment_method},
    ),
    ("/subscriptions", {"GET": orders.list_subscriptions, "POST": orders.create_subscription}),
    (
        "/subscriptions/{subscription_id}",
        {"GET": orders.get_subscription, "PATCH": subscription_update.update_subscription},
    ),
    ("/subscriptions/{subscription_id}:invoice", {"POST": orders.invoice_subscription}),
    ("/products", {"GET": products.list_products, "POST": products.create_product}),
    (
        "/products/{product_id}",
        {
            "GET": products.get_product,
            "PATCH": products.update_product,
            "DELETE": products.delete_product,
        },
    ),
    (
        "/products/{product_id}/subscriptions",
        {"GET": products.product_plans, "POST": products.create_plan},
    ),
    ("/productCategories", {"GET": products.list_categories, "POST": products.create_category}),
    ("/productCategories/assignedProducts", {"GET": products.list_assigned_products}),
    ("/productCategories/{category_id}", {"GET": products.get_category}),
    ("/productCategories/{category_id}:assignProducts", {"POST": products.assign_products}),
    ("/affiliates", {"GET": products.list_affiliates}),
    ("/affiliates/{id}", {"GET": products.get_affiliate}),
    ("/referrals", {"GET": products.list_referrals, "POST": products.create_referral}),
    ("/discounts/products/{discount_id}", {"GET": discounts.get_product_discount}),
    ("/reporting/reports", {"GET": reports.list_reports}),
    ("/reporting/reports/{report_id}", {"GET": reports.get_report}),
    ("/reporting/reports/{report_id}/model", {"GET": reports.report_model}),
    ("/reporting/reports/{report_id}:run", {"POST": reports.run_report}),
]


def _pattern(template: str) -> re.Pattern[str]:
    """``{name}`` matches one path segment; ids also stop at ``:`` (``/files/7:data``)."""
    pieces = re.split(r"\{(\w+)\}", template)
    regex = "".join(
        re.escape(piece) if i % 2 == 0 else f"(?P<{piece}>[^/{'' if piece == 'email' else ':'}]+)"
        for i, piece in enumerate(pieces)
    )
    return re.compile(regex)


ROUTES = [(template, _pattern(template), methods) for template, methods in _TABLE]


class RestEndpoint:
    def __init__(
        self, config: SimConfig, db: Database, now: Callable[[], float], gateway: XmlRpcEndpoint
    ) -> None:
        """``gateway`` lends its credential rules and quotas: one gateway, two APIs."""
        self.config = config
        self.db = db
        self.now = now
        self.gateway = gateway
        self.store = rest_store(db)
        self.failures = FailureQueue()
        self.calls = 0
        self.unauthorized = 0
        self.throttled = 0
        #: Requests routed, by "METHOD /template" (for tests and benchmarks to look at).
        self.routes: Counter[str] = Counter()

    async def handle(self, request: Request, query_string: bytes, send: Send) -> None:
        """Answer one request under ``PREFIX``; ``query_string`` keeps repeated parameters."""
        now = self.now()
        credential = self.gateway._credential(request, now)
        if credential is None:
            self.unauthorized += 1
            await send_answer(send, json_answer(401, INVALID_TOKEN))
            return
        limits = limits_for(credential, self.config)
        verdict = self.gateway.quotas.check(credential, limits, now, enforce=self.config.throttle)
        if not verdict.allowed:
            self.throttled += 1
            await send_answer(send, json_answer(429, verdict.body, verdict.headers))
            return
        failure = self.failures.pop()
        if failure is not None and not failure.after:
            answer = Answer(200, b"", headers=verdict.headers)
        else:
            answer = self.route(request, query_string, now)
            answer.headers.extend(verdict.headers)
        await deliver(
            send, answer, failure, self.config.failure_timeout, self.config.failure_retry_after
        )

    def route(self, request: Request, query_string: bytes, now: float) -> Answer:
        self.calls += 1
        path = request.path[len(PREFIX) :]
        for template, pattern, methods in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                allow = [("Allow", ", ".join(methods))]
                return RestError(405, f"{request.method} is not allowed on {path}").answer(allow)
            self.routes[f"{request.method} {template}"] += 1
            params = match.groupdict()
            call = Call.build(self.db, self.store, self.config, now, request, params, query_string)
            try:
                return handler(call)
            except RestError as error:
                return error.answer()
            except KeapFault as fault:  # a legacy check in Database (coercion, ids)
                status = 404 if fault.code == CODES["RecordNotFound"] else 400
                return RestError(status, fault.fault_string).answer()
        return RestError(404, f"No resource at {request.method} {PREFIX}{path}").answer()
