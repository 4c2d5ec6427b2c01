"""The ASGI application: one XML-RPC endpoint in front of Keap, plus health.

Raw ASGI on purpose: the hot path is small (read the body, parse, check the key, splice in a
placeholder, stream Keap's answer back) and every layer added here is paid on every call.
Whatever goes wrong, a script gets a well-formed XML-RPC fault, never a stack trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from shim import __version__, xmlrpc
from shim.access import keys
from shim.access.rate_enforcer import KeyRates
from shim.errors import (
    InvalidKey,
    NoAccess,
    ParseError,
    RequestTimeout,
    RequestTooLarge,
    ShimError,
    UnsupportedContentType,
    UpstreamAuthError,
    UpstreamError,
    UpstreamThrottled,
)
from shim.keap.budget import Budget, quota_figures
from shim.keap.client import Upstream, UpstreamResponse
from shim.models import Account, CallRecord
from shim.oauth.alerts import Alerter
from shim.oauth.chains import Chains
from shim.oauth.health import account_healths
from shim.oauth.scheduler import Scheduler
from shim.oauth.token_policy import parse_retry_after
from shim.rest.route import Router
from shim.serve.audit import AuditLog, fault_tag
from shim.serve.metrics import CONTENT_TYPE as METRICS_TYPE
from shim.serve.metrics import Metrics
from shim.settings import Settings
from shim.store.copy import SERVING
from shim.store.protocol import HeldLock, Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("shim.serve.app")
access_log = logging.getLogger("shim.access")

XMLRPC_PATHS = frozenset({"/api/xmlrpc", "/api/xmlrpc/", "/api/xmlrpc/v1"})
ACCOUNT_CACHE_SECONDS = 2.0
#: Bodies larger than this are parsed in a worker thread, so one big upload (or a hostile
#: megabyte of nesting) does not stall every other caller on the event loop.
PARSE_IN_THREAD = 256 * 1024
#: Response headers of Keap's that reach the script (quota figures help people tune).
PASS_HEADERS = (b"content-type", b"content-length", b"content-encoding")


@dataclass
class _Trace:
    """What one call did, filled in as it goes; becomes a CallRecord and a log line."""

    request_id: str
    at: float
    key_id: str | None = None
    account: str | None = None
    method: str | None = None
    outcome: str = "ok"
    upstream_status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    started_response: bool = False
    #: "rest" when answered through REST v2 (route rest, or an auto fallback).
    route: str = "xmlrpc"


class Services:
    """The per-process resources the app needs; built at startup inside the event loop."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        upstream: Upstream,
        chains: Chains,
        alerter: Alerter,
        audit: AuditLog,
        budget: Budget,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.hmac_key = store.server_secret("key-hmac")
        self.upstream = upstream
        self.chains = chains
        self.alerter = alerter
        self.audit = audit
        self.rates = KeyRates(store)
        self.budget = budget
        self.metrics = metrics
        chains.observer = metrics.refresh
        self.quota: dict[str, tuple[dict[str, str], float]] = {}
        #: REST v2 translation (accounts routed rest or auto); its requests come back here.
        self.rest = Router(self, chains, store)
        audit.after_flush.append(self._share_budget)
        audit.after_flush.append(self._publish_quota)

    async def send(
        self, account: Account, url: str, body: bytes, headers: dict[str, str]
    ) -> UpstreamResponse:
        """A forwarded XML-RPC call (see ``request``); takes the upstream's lean POST path."""

        def post(sent: dict[str, str]) -> Awaitable[UpstreamResponse]:
            return self.upstream.open(url, body, sent)

        return await self._authenticated(account, headers, post)

    async def request(
        self,
        account: Account,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        params: Sequence[tuple[str, str]] | None = None,
        json: object = None,
        multipart: Mapping[str, str | tuple[str, bytes, str]] | None = None,
    ) -> UpstreamResponse:
        """Any request upstream (each REST v2 request of a translated call; see
        ``_authenticated``)."""

        def send(sent: dict[str, str]) -> Awaitable[UpstreamResponse]:
            return self.upstream.request(
                method,
                url,
                headers=sent,
                params=params,
                json=json,
                multipart=multipart,
            )

        return await self._authenticated(account, headers, send)

    async def _authenticated(
        self,
        account: Account,
        headers: dict[str, str],
        send: Callable[[dict[str, str]], Awaitable[UpstreamResponse]],
    ) -> UpstreamResponse:
        """Every request upstream goes through here: forwarded XML-RPC calls and each REST v2
        request of a translated call alike (so a call fanning out into 3 requests pays 3).

        The quota budget is waited for first and the credential is picked after the wait, so
        a token cannot expire in the queue. A 401 means Keap did not run the call: refresh
        (single-flight) and send once more; nothing else is ever retried.
        """
        response, generation = await self._send_once(account, headers, send)
        if response.status == 401 and generation is not None:
            await response.aclose()
            await self.chains.refresh(account, seen_generation=generation, reason="401")
            response, _ = await self._send_once(account, headers, send)
        return response

    async def _send_once(
        self,
        account: Account,
        headers: dict[str, str],
        send: Callable[[dict[str, str]], Awaitable[UpstreamResponse]],
    ) -> tuple[UpstreamResponse, int | None]:
        started = time.perf_counter()
        await self.budget.acquire(account)
        sent = time.perf_counter()
        if sent - started > 0.001:
            self.metrics.budget_wait.inc(sent - started)
        credential, generation = await self.credential(account)
        response = await send({**headers, **credential})
        self.metrics.observe_upstream(time.perf_counter() - sent)
        figures = quota_figures(response.headers)
        if figures:
            self.quota[account.name] = (figures, time.time())
        if response.status == 429:
            self.budget.pause(account, parse_retry_after(response.headers.get("retry-after")))
        return response, generation

    async def credential(self, account: Account) -> tuple[dict[str, str], int | None]:
        """The header that authenticates to Keap, and the token generation it came from."""
        if account.kind == "oauth":
            token, generation = await self.chains.access_token(account)
            return {"Authorization": f"Bearer {token}"}, generation
        return {"X-Keap-API-Key": account.service_key or ""}, None

    def _share_budget(self, now: float) -> None:
        """Publish this process's upstream calls per Keap credential and take in the other
        processes' and hosts' (off the hot path, after each audit flush)."""
        usage = self.budget.usage(now)
        if usage:
            self.store.publish_rates(self.chains.owner, usage, int(now // 60) - 2)
        credentials = self.budget.credentials()
        if credentials:
            minute = int(now // 60)
            self.budget.sync(self.store.others_rates(credentials, minute, self.chains.owner), now)

    def _publish_quota(self, now: float) -> None:
        if self.quota:
            figures, self.quota = self.quota, {}
            self.store.put_quota(figures)


ServicesFactory = Callable[[Settings], Services]


class KeyshimApp:
    """ASGI callable. ``factory`` builds Services (tests inject transports and stores)."""

    def __init__(
        self, settings: Settings, factory: ServicesFactory, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self._factory = factory
        self.clock = clock
        self.services: Services | None = None
        self._accounts: dict[str, tuple[Account, float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serving: HeldLock | None = None

    # -- lifecycle ----------------------------------------------------------------------
    async def startup(self) -> Services:
        if self.services is None:
            services = self.services = self._factory(self.settings)
            # Held shared while this server runs: `shim store copy` refuses a busy source.
            self._serving = services.store.try_lock(SERVING, services.chains.owner, shared=True)
            self._spawn(services.chains.recover(services.store.list_accounts()))
            self._spawn(services.audit.run())
            if self.settings.scheduler_interval > 0:
                scheduler = Scheduler(services.chains, interval=self.settings.scheduler_interval)
                self._spawn(scheduler.run())
        return self.services

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        if self.services is None:
            return
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.services.alerter.drain()
        self.services.audit.flush_now()
        await self.services.upstream.aclose()
        if self._serving is not None:
            self._serving.release()
            self._serving = None
        self.services.store.close()
        self.services = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path in XMLRPC_PATHS:
            if scope["method"] != "POST":
                await _plain(send, 405, b"XML-RPC endpoint: use POST\n", [(b"allow", b"POST")])
                return
            await self._xmlrpc(scope, receive, send)
        elif path == "/healthz" and scope["method"] in ("GET", "HEAD"):
            await self._healthz(send)
        elif path == "/metrics" and scope["method"] == "GET":
            services = await self.startup()
            body = services.metrics.render(account_healths(services.store, self.clock()))
            await _plain(send, 200, body, [(b"content-type", METRICS_TYPE.encode())])
        else:
            await _plain(send, 404, b"not found\n")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _healthz(self, send: Send) -> None:
        services = await self.startup()
        healths = account_healths(services.store, self.clock())
        usable = all(h.usable for h in healths)
        body = json.dumps(
            {
                "status": "ok" if usable else "unhealthy",
                "version": __version__,
                "accounts": {
                    h.account: {"kind": h.kind, "state": h.state, **h.facts} for h in healths
                },
            }
        )
        await _plain(
            send, 200 if usable else 503, body.encode(), [(b"content-type", b"application/json")]
        )

    # -- the XML-RPC endpoint -----------------------------------------------------------
    async def _xmlrpc(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = await self.startup()
        services.metrics.in_flight.inc()
        try:
            await self._handle(services, scope, receive, send)
        finally:
            services.metrics.in_flight.dec()

    async def _handle(self, services: Services, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        t = _Trace(request_id=secrets.token_hex(6), at=self.clock())
        try:
            body = await _read_body(
                scope, receive, self.settings.max_body, self.settings.body_timeout
            )
            t.bytes_in = len(body)
            call = (
                await asyncio.to_thread(xmlrpc.parse_call, body)
                if len(body) > PARSE_IN_THREAD
                else xmlrpc.parse_call(body)
            )
            t.method = call.method[:200]
            if not xmlrpc.is_method_name(call.method):
                raise ParseError(f"not a Service.method name: {call.method[:80]!r}")
            local = _keyless_answer(call)
            if local is not None:
                t.outcome = "local"
                t.bytes_out = await _xml(send, local)
                return
            key_text = _presented_key(scope, call)
            key_id = keys.key_id_of(key_text) if key_text is not None else None
            if key_id is None:
                raise InvalidKey("Invalid Key (the first parameter must be your keyshim key)")
            record = keys.verify(
                services.store.get_key(key_id), services.hmac_key, key_text or "", t.at
            )
            t.key_id = record.id
            keys.check_method(record, call.method)
            services.rates.check(record, t.at)
            account = self._account(record.account)
            t.account = account.name
            if account.route == "xmlrpc":
                forwarded = xmlrpc.replace_first_param(body, call, self.settings.placeholder)
                response = await self._forward(services, account, forwarded, scope)
            else:
                routed = await self._routed(services, account, call, body, scope, send, t)
                if routed is None:
                    return  # answered through REST v2
                response = routed
            t.upstream_status = response.status
            await _stream(
                send,
                response,
                t,
                http10=scope.get("http_version") == "1.0",
                limit=4 * self.settings.max_body,
            )
        except ShimError as exc:
            t.outcome = exc.tag or "ParseError"
            if t.started_response:
                t.outcome = "error"
                log.error("request %s: upstream broke mid-answer: %s", t.request_id, exc.message)
                return
            fault = xmlrpc.dumps_fault(exc.fault_code, exc.fault_string)
            close = isinstance(exc, RequestTooLarge | RequestTimeout)
            t.bytes_out = await _xml(send, fault, close=close, status=exc.http_status)
        except Exception:
            t.outcome = "error"
            log.exception("request %s failed", t.request_id)
            if not t.started_response:
                err = ShimError(f"keyshim internal error (request {t.request_id})")
                t.bytes_out = await _xml(send, xmlrpc.dumps_fault(err.fault_code, err.fault_string))
        finally:
            self._finish(t, (time.perf_counter() - started) * 1000)

    def _finish(self, t: _Trace, ms: float) -> None:
        """Log the call and queue its audit record (never a secret: key ids only)."""
        record = CallRecord(
            at=t.at, request_id=t.request_id, key_id=t.key_id, account=t.account,
            method=t.method, outcome=t.outcome, upstream_status=t.upstream_status,
            duration_ms=round(ms, 3), bytes_in=t.bytes_in, bytes_out=t.bytes_out, route=t.route,
        )  # fmt: skip
        if access_log.isEnabledFor(logging.INFO):
            # The record is made directly: Logger.info would also walk the stack to name the
            # calling line (findCaller), which costs as much as formatting the line and says
            # nothing an access line needs. Handlers and filters run as usual.
            line = access_log.makeRecord(
                access_log.name, logging.INFO, __file__, 0, "call", (), None,
                extra={"shim": _log_fields(record)},
            )  # fmt: skip
            access_log.handle(line)
        if self.services is not None:
            self.services.audit.add(record)
            self.services.metrics.call(record)

    async def _forward(
        self, services: Services, account: Account, body: bytes, scope: Scope
    ) -> UpstreamResponse:
        """Send upstream; return the answer if it is XML-RPC, else raise the right fault."""
        headers = {
            "Content-Type": "text/xml",
            "User-Agent": f"keyshim/{__version__}",
            "Accept-Encoding": _header(scope, b"accept-encoding") or "identity",
        }
        response = await services.send(account, account.xmlrpc_url, body, headers)
        if response.status == 200 and b"xml" in response.headers.get("content-type", "").encode():
            return response
        await _raise_for_answer(response)
        raise AssertionError("unreachable")

    async def _routed(
        self,
        services: Services,
        account: Account,
        call: xmlrpc.Call,
        body: bytes,
        scope: Scope,
        send: Send,
        t: _Trace,
    ) -> UpstreamResponse | None:
        """Accounts routed ``rest`` or ``auto`` (issue 6; the rules are in shim/rest/route.py):
        None once answered through REST v2, else XML-RPC's answer to stream on."""
        router = services.rest
        translation = router.translation(call)
        if account.route == "rest" or (translation is not None and router.is_down(account)):
            if translation is None:
                raise router.untranslated(call.method, " (this account is routed to REST v2)")
            if account.route != "rest":
                log.info("request %s: %s through REST v2 (XML-RPC down)", t.request_id, t.method)
            await router.answer(account, call, translation, t, send)
            return None
        forwarded = xmlrpc.replace_first_param(body, call, self.settings.placeholder)
        try:
            response = await self._forward(services, account, forwarded, scope)
            if await router.brownout(response):
                raise UpstreamError("Keap's XML-RPC API answered with a brownout fault", status=503)
        except ShimError as exc:
            translation = router.fallback(account, call, translation, exc)
            log.warning(
                "request %s: %s answered through REST v2 instead (XML-RPC: %s)",
                t.request_id,
                t.method,
                exc.message,
            )
            await router.answer(account, call, translation, t, send)
            return None
        return response

    def _account(self, name: str) -> Account:
        now = time.monotonic()
        cached = self._accounts.get(name)
        if cached is not None and now - cached[1] < ACCOUNT_CACHE_SECONDS:
            return cached[0]
        assert self.services is not None
        account = self.services.store.get_account(name)
        if account is None:
            raise InvalidKey("Invalid Key (its account no longer exists)")
        self._accounts[name] = (account, now)
        return account


def _log_fields(r: CallRecord) -> dict[str, Any]:
    """The access log's fields: ``dataclasses.asdict(r)`` without its generic deep copy (every
    field is a scalar), in the same order."""
    return {
        "at": r.at, "request_id": r.request_id, "key_id": r.key_id, "account": r.account,
        "method": r.method, "outcome": r.outcome, "upstream_status": r.upstream_status,
        "duration_ms": r.duration_ms, "bytes_in": r.bytes_in, "bytes_out": r.bytes_out,
        "route": r.route,
    }  # fmt: skip


def _presented_key(scope: Scope, call: xmlrpc.Call) -> str | None:
    """The local key: normally the first parameter.

    infusionsoft-php in ``apikey`` mode sends the key as an ``X-Keap-API-Key`` header (first
    parameter: a fixed string), and older OAuth SDKs as ``?access_token=``; both are accepted
    when they carry a keyshim key.
    """
    header = _header(scope, b"x-keap-api-key")
    if header is not None and keys.looks_like_key(header.strip()):
        return header.strip()
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    if "access_token=" in query:
        for value in parse_qs(query).get("access_token", []):
            if keys.looks_like_key(value):
                return value
    return call.first_param_text


def _keyless_answer(call: xmlrpc.Call) -> bytes | None:
    """Calls that legitimately arrive without a key (see README: keyless calls)."""
    if call.method == "DataService.echo" and len(call.params) == 1:
        text = call.params[0]
        if isinstance(text, str) and not keys.looks_like_key(text):
            return xmlrpc.dumps_response(text)  # old iSDK connectivity check; no data, no key
    if call.method == "DataService.getTemporaryKey":
        raise NoAccess(
            "DataService.getTemporaryKey (vendor login) is not supported by Keap any more; "
            "ask your keyshim admin for a key (shim key issue)"
        )
    return None


async def _raise_for_answer(response: UpstreamResponse) -> None:
    """Turn an upstream answer that is not XML-RPC into the right error."""
    status = response.status
    snippet = await response.read(4096)
    await response.aclose()
    detail = _fault_text(snippet)
    if status == 401:
        raise UpstreamAuthError(f"Keap rejected the credential (HTTP 401{detail})", status=status)
    if status == 429:
        retry = parse_retry_after(response.headers.get("retry-after"))
        wait = f"; retry after {retry:g}s" if retry is not None else ""
        raise UpstreamThrottled(
            f"Keap is throttling calls (HTTP 429{detail}){wait}", retry_after=retry
        )
    raise UpstreamError(f"Keap answered HTTP {status}{detail}", status=status)


def _fault_text(body: bytes) -> str:
    """The human part of Keap's JSON error bodies, if any (``fault.faultstring`` etc.)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return ""
    if isinstance(data, dict):
        fault = data.get("fault")
        if isinstance(fault, dict) and fault.get("faultstring"):
            return f": {str(fault['faultstring'])[:160]}"
        if data.get("message"):
            return f": {str(data['message'])[:160]}"
    return ""


#: Content types a legacy client may send. PHP's curl defaults to the form type for a string
#: body, and some hand-made clients send text/plain or nothing at all.
ACCEPTED_TYPES = frozenset(
    {"", "text/xml", "application/xml", "text/plain", "application/x-www-form-urlencoded"}
)


async def _read_body(scope: Scope, receive: Receive, limit: int, timeout: float) -> bytes:
    """The whole request body, within ``limit`` bytes (before and after gzip decoding) and
    ``timeout`` seconds (a slow sender gets 408 instead of holding memory and a task)."""
    ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if ctype not in ACCEPTED_TYPES:
        raise UnsupportedContentType(f"XML-RPC requests are text/xml, not {ctype[:60]!r}")
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request body of {declared} bytes is over the {limit}-byte limit")
    if sys.version_info >= (3, 11):  # one timer for the whole body, no extra task
        try:
            async with asyncio.timeout(timeout):
                chunks = await _receive_all(receive, limit)
        except TimeoutError:
            raise _late(timeout) from None
    else:
        try:
            chunks = await asyncio.wait_for(_receive_all(receive, limit), timeout)
        except asyncio.TimeoutError:
            raise _late(timeout) from None
    body = b"".join(chunks)
    encoding = (_header(scope, b"content-encoding") or "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        body = _decompress(body, limit, gzip=encoding != "deflate")
    elif encoding not in ("", "identity"):
        raise ParseError(f"unsupported Content-Encoding {encoding[:40]!r}")
    return body


def _late(timeout: float) -> RequestTimeout:
    return RequestTimeout(f"The request body did not arrive within {timeout:g}s")


async def _receive_all(receive: Receive, limit: int) -> list[bytes]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ParseError("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks


def _decompress(data: bytes, limit: int, *, gzip: bool) -> bytes:
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
    try:
        out = decoder.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ParseError(f"bad compressed body: {exc}") from None
    if len(out) > limit or decoder.unconsumed_tail:
        raise RequestTooLarge(f"Decompressed request body is over the {limit}-byte limit")
    if not decoder.eof:
        raise ParseError("truncated compressed body")
    return out


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _stream(
    send: Send, response: UpstreamResponse, t: _Trace, *, http10: bool, limit: int
) -> None:
    """Pass Keap's answer through as it arrives.

    An HTTP/1.0 client cannot read chunked encoding, and without a Content-Length from Keap
    the server would have to chunk; for that one case the answer is collected (up to
    ``limit``) and sent with its length.
    """
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in response.headers.items()
        if k.encode("latin-1").lower() in PASS_HEADERS or k.lower().startswith("x-keap-product-")
    ]
    identity = "content-encoding" not in response.headers
    buffer: list[bytes] | None = None
    if http10 and "content-length" not in response.headers:
        buffer = []
    else:
        t.started_response = True
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
    try:
        async for chunk in response.iter_raw():
            if not chunk:
                continue
            if t.bytes_out == 0 and identity:
                t.outcome = fault_tag(chunk[:4096]) or "ok"
            t.bytes_out += len(chunk)
            if buffer is None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                continue
            if t.bytes_out > limit:
                raise UpstreamError("Keap's answer is too large to send to an HTTP/1.0 client")
            buffer.append(chunk)
    finally:
        await response.aclose()
    if buffer is not None:
        body = b"".join(buffer)
        headers.append((b"content-length", str(len(body)).encode()))
        t.started_response = True
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _xml(send: Send, body: bytes, *, close: bool = False, status: int = 200) -> int:
    headers = [(b"content-type", b"text/xml; charset=UTF-8")]
    if close:
        headers.append((b"connection", b"close"))
    await _plain(send, status, body, headers)
    return len(body)


async def _plain(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = list(headers or [(b"content-type", b"text/plain; charset=utf-8")])
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
