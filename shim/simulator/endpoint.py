"""The OAuth XML-RPC endpoint (``/crm/xmlrpc/v1``): gateway checks, then the legacy methods.

Order of checks, outermost first, as a request meets Keap's API gateway and then the app:

1. ``xmlrpc_mode`` brownout (the service is switched off before anything else looks):
   ``"503"`` Apigee JSON 503; ``"404"`` Apigee's "no proxy" JSON 404; ``"410"`` JSON 410 Gone;
   ``"off"`` an XML-RPC fault (HTTP 200) ``[Unexpected]The XML-RPC API is unavailable``,
   for a brownout that answers in-protocol. What Keap's brownouts really send is unknown.
2. Credentials: ``Authorization: Bearer``, ``?access_token=`` or ``X-Keap-API-Key``; else the
   gateway's JSON 401.
3. Throttles per credential (429 JSON, ``Retry-After``); usage headers on every answer.
4. The injected failure queue (same kinds as the token endpoint's).
5. The XML-RPC call itself: HTTP 200 always, faults as ``[Tag]message``.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable

from shim.errors import ParseError
from shim.serve.asgi import Send
from shim.simulator.asgi import Answer, Request, gateway_fault, json_answer, send_answer
from shim.simulator.config import SimConfig
from shim.simulator.data import Database
from shim.simulator.failures import INVALID_TOKEN, SERVICE_UNAVAILABLE, FailureQueue, deliver
from shim.simulator.faults import KeapFault, invalid
from shim.simulator.quota import Quotas, limits_for
from shim.simulator.services import Context, FileData, dispatch
from shim.simulator.state import AuthState, Credential
from shim.xmlrpc import Value, dumps_fault, dumps_response, parse_call

XML_TYPE = "text/xml;charset=UTF-8"
_SLOT = "SIMULATOR-FILE-DATA-SLOT"
_B64_CHUNK = 3 * 1024 * 1024  # raw bytes per streamed chunk (a multiple of 3: no padding)
_MAX_KEYS_SEEN = 100


class XmlRpcEndpoint:
    def __init__(
        self, config: SimConfig, auth: AuthState, db: Database, now: Callable[[], float]
    ) -> None:
        self.config = config
        self.auth = auth
        self.db = db
        self.now = now
        self.quotas = Quotas()
        self.failures = FailureQueue()
        self.calls = 0
        self.unauthorized = 0
        self.throttled = 0
        self.methods: Counter[str] = Counter()
        self.last_private_key: Value = None
        self.private_keys_seen: list[str] = []

    async def handle(self, request: Request, send: Send) -> None:
        brownout = self._brownout(request.path)
        if brownout is not None:
            await send_answer(send, brownout)
            return
        now = self.now()
        credential = self._credential(request, now)
        if credential is None:
            self.unauthorized += 1
            await send_answer(send, json_answer(401, INVALID_TOKEN))
            return
        limits = limits_for(credential, self.config)
        verdict = self.quotas.check(credential, limits, now, enforce=self.config.throttle)
        if not verdict.allowed:
            self.throttled += 1
            await send_answer(send, json_answer(429, verdict.body, verdict.headers))
            return
        failure = self.failures.pop()
        if failure is not None and not failure.after:
            answer = Answer(200, b"", XML_TYPE, verdict.headers)
        else:
            answer = self._call(request.body, now)
            answer.headers.extend(verdict.headers)
        await deliver(
            send, answer, failure, self.config.failure_timeout, self.config.failure_retry_after
        )

    def _brownout(self, path: str) -> Answer | None:
        mode = self.config.xmlrpc_mode
        if mode == "503":
            return json_answer(503, SERVICE_UNAVAILABLE)
        if mode == "404":
            text = f"Unable to identify proxy for host: default and url: {path}"
            code = "messaging.adaptors.http.flow.ApplicationNotFound"
            return json_answer(404, gateway_fault(text, code))
        if mode == "410":
            gone = {"code": "410", "message": "The XML-RPC API has been retired", "status": "Gone"}
            return json_answer(410, gone)
        if mode == "off":
            fault = KeapFault("Unexpected", "The XML-RPC API is unavailable")
            return Answer(200, dumps_fault(fault.code, fault.fault_string), XML_TYPE)
        return None

    def _credential(self, request: Request, now: float) -> Credential | None:
        api_key = request.headers.get("x-keap-api-key")
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" else request.query.get("access_token")
        return self.auth.credential(bearer or None, api_key, now)

    def _call(self, body: bytes, now: float) -> Answer:
        self.calls += 1
        try:
            call = parse_call(body)
            self.methods[call.method] += 1
            if not call.params:
                raise invalid("The first parameter (privateKey) is missing")
            self._saw_key(call.params[0])
            result = dispatch(Context(self.db, now), call.method, call.params)
        except ParseError as exc:
            return Answer(200, dumps_fault(exc.fault_code, exc.fault_string), XML_TYPE)
        except KeapFault as fault:
            return Answer(200, dumps_fault(fault.code, fault.fault_string), XML_TYPE)
        if isinstance(result, FileData):
            return _file_answer(result.data)
        return Answer(200, dumps_response(result), XML_TYPE)

    def _saw_key(self, key: Value) -> None:
        self.last_private_key = key
        text = key if isinstance(key, str) else repr(key)
        if text not in self.private_keys_seen and len(self.private_keys_seen) < _MAX_KEYS_SEEN:
            self.private_keys_seen.append(text)


def _file_answer(data: bytes) -> Answer:
    """A base64 string answer streamed in chunks: one encode, no join of a 40 MB document.

    The envelope comes from the codec (so it matches every other answer); base64 text needs
    no XML escaping, so the chunks go between its two halves as they are.
    """
    head, tail = dumps_response(_SLOT).split(_SLOT.encode("ascii"))
    view = memoryview(data)
    chunks = [head]
    chunks.extend(
        base64.b64encode(view[i : i + _B64_CHUNK]) for i in range(0, len(data), _B64_CHUNK)
    )
    chunks.append(tail)
    return Answer(200, chunks, XML_TYPE)
