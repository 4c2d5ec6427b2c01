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
from shim.simulator.endpoint import INVALID_TOKEN, XmlRpcEndpoint
from shim.simulator.failures import FailureQueue, deliver
from shim.simulator.faults import CODES, KeapFault
from shim.simulator.quota import limits_for
from shim.simulator.rest import contacts, files, other, tags
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
    ("/contacts/model", {"GET": contacts.model}),
    (
        "/contacts/{contact_id}",
        {"GET": contacts.get, "PATCH": contacts.update, "DELETE": contacts.delete},
    ),
    ("/contacts/{contact_id}/tags", {"GET": tagged.contact_tags}),
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
    ("/files", {"POST": files.create}),
    ("/files/{file_id}", {"GET": files.get, "DELETE": files.delete}),
    ("/files/{file_id}:data", {"GET": files.data}),
    (
        "/emailAddresses/{email}/status",
        {"GET": other.get_email_status, "PATCH": other.update_email_status},
    ),
    ("/automations/goals/achieve", {"POST": other.achieve_goal}),
    ("/oauth/connect/userinfo", {"GET": other.user_info}),
    ("/settings/applications:getConfiguration", {"GET": other.get_configuration}),
    ("/settings/contactOptionTypes", {"GET": other.contact_option_types}),
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
