"""One XML-RPC call's life: read, parse, check the key, route, forward, stream, finish.

Whatever goes wrong, a script gets a well-formed XML-RPC fault, never a stack trace; every
call ends in one access-log line and one audit record (key ids only, never a secret).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from shim import __version__, xmlrpc
from shim.access import keys
from shim.errors import (
    ClientStalled,
    InvalidKey,
    NoAccess,
    ParseError,
    RequestTimeout,
    RequestTooLarge,
    ShimError,
    UpstreamError,
)
from shim.keap import answers
from shim.keap.client import UpstreamResponse
from shim.models import Account, CallRecord, KeyRecord
from shim.serve import asgi
from shim.serve.asgi import Receive, Scope, Send
from shim.serve.audit import table_of
from shim.serve.services import Services
from shim.settings import Settings
from shim.store.offloop import off_loop, peek_or_read

#: Named for the app, as before the split: operators filter their logs by this name.
log = logging.getLogger("shim.serve.app")
access_log = logging.getLogger("shim.access")

ACCOUNT_CACHE_SECONDS = 2.0
#: How long a call waits for a stale account to be read again before it goes on with the one
#: it knows (the store may be locked by another process; the read lands in the cache later).
ACCOUNT_READ_DEADLINE = 0.2
#: Bodies larger than this are parsed in a worker thread, so one big upload (or a hostile
#: megabyte of nesting) does not stall every other caller on the event loop.
PARSE_IN_THREAD = 256 * 1024


@dataclass
class Trace:
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
    table_name: str | None = None


class Calls:
    """Handles XML-RPC calls for one app; keeps a short-lived cache of accounts."""

    def __init__(self, settings: Settings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self._accounts: dict[str, tuple[Account, float]] = {}
        #: Account reads under way (off the loop), one per account.
        self._reads: dict[str, asyncio.Future[Account | None]] = {}

    async def handle(self, services: Services, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        t = Trace(request_id=secrets.token_hex(6), at=self.clock())
        try:
            body = await asgi.read_body(
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
            t.table_name = table_of(call.method, call.params)
            local = _keyless_answer(call)
            if local is not None:
                t.outcome = "local"
                t.bytes_out = await asgi.xml(send, local)
                return
            key_text = _presented_key(scope, call)
            key_id = keys.key_id_of(key_text) if key_text is not None else None
            if key_id is None:
                raise InvalidKey("Invalid Key (the first parameter must be your keyshim key)")
            store = services.store
            found = await peek_or_read(store.peek_key, store.get_key, key_id)
            try:
                record = keys.verify(found, services.hmac_key, key_text or "", t.at)
            except InvalidKey:
                if found is not None and keys.matches(found, services.hmac_key, key_text or ""):
                    t.key_id = found.id  # a revoked or expired key's calls stay its own
                raise
            t.key_id = record.id
            keys.check_method(record, call.method)
            account = await self.admitted_account(services, record, t.at)
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
            await asgi.stream(
                send,
                response,
                t,
                http10=scope.get("http_version") == "1.0",
                limit=4 * self.settings.max_body,
                write_timeout=self.settings.client_write_timeout or None,
            )
        except ShimError as exc:
            t.outcome = exc.tag or "ParseError"
            if isinstance(exc, ClientStalled):
                t.outcome = "client_stalled"
                log.warning("request %s: %s; cut off", t.request_id, exc.message)
                asgi.abort_client(scope)
                await asyncio.sleep(0)  # the server sees the disconnect before the app ends
                return
            if t.started_response:
                t.outcome = "error"
                log.error("request %s: upstream broke mid-answer: %s", t.request_id, exc.message)
                return
            fault = xmlrpc.dumps_fault(exc.fault_code, exc.fault_string)
            close = isinstance(exc, RequestTooLarge | RequestTimeout)
            t.bytes_out = await asgi.xml(send, fault, close=close, status=exc.http_status)
        except Exception:
            t.outcome = "error"
            log.exception("request %s failed", t.request_id)
            if not t.started_response:
                err = ShimError(f"keyshim internal error (request {t.request_id})")
                t.bytes_out = await asgi.xml(
                    send, xmlrpc.dumps_fault(err.fault_code, err.fault_string)
                )
        finally:
            _finish(services, t, (time.perf_counter() - started) * 1000)

    async def _forward(
        self, services: Services, account: Account, body: bytes, scope: Scope
    ) -> UpstreamResponse:
        """Send upstream; return the answer if it is XML-RPC, else raise the right fault."""
        headers = {
            "Content-Type": "text/xml",
            "User-Agent": f"keyshim/{__version__}",
            "Accept-Encoding": asgi.header(scope, b"accept-encoding") or "identity",
        }
        response = await services.gateway.send(account, account.xmlrpc_url, body, headers)
        if response.status == 200 and b"xml" in response.headers.get("content-type", "").encode():
            return response
        await answers.raise_for_answer(response, answers.XMLRPC)
        raise AssertionError("unreachable")

    async def _routed(
        self,
        services: Services,
        account: Account,
        call: xmlrpc.Call,
        body: bytes,
        scope: Scope,
        send: Send,
        t: Trace,
    ) -> UpstreamResponse | None:
        """Accounts routed ``rest`` or ``auto`` (issue 6; the rules are in shim/rest/route.py):
        None once answered through REST v2, else XML-RPC's answer to stream on."""
        router = services.rest
        translation = router.translation(call)
        if account.route == "rest" or (translation is not None and router.is_down(account)):
            if translation is None:
                raise router.untranslated(call.method, " (routed to REST v2)", call.params)
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

    async def admitted_account(self, services: Services, key: KeyRecord, at: float) -> Account:
        """The key's account, once its rate admits the call (``[RateLimited]`` if not). For a
        key with a rate, the account is looked up while the store admits the call: each may
        wait a short deadline on a busy store, and a call should wait one, not both."""
        if key.rate_per_min is None:
            return await self._account(services, key.account)
        lookup = asyncio.ensure_future(self._account(services, key.account))
        try:
            await services.rates.check(key, at)
        except BaseException:
            lookup.cancel()  # the read itself goes on, and lands in the cache
            # Seen, whatever it ended with: the call's own fault is what the script gets.
            lookup.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise
        return await lookup

    async def _account(self, services: Services, name: str) -> Account:
        """The key's account: from memory for ``ACCOUNT_CACHE_SECONDS`` (no store call, no
        thread hop), then read again off the loop. A store that does not answer within
        ``ACCOUNT_READ_DEADLINE`` (locked by another process) does not hold the call: it goes
        on with the account it knows, and the read refreshes the cache when it lands."""
        now = time.monotonic()
        cached = self._accounts.get(name)
        if cached is not None and now - cached[1] < ACCOUNT_CACHE_SECONDS:
            return cached[0]
        read = self._reads.get(name)
        if read is not None and cached is not None:
            return cached[0]  # a read is under way: go on with the account known
        if read is None:
            read = self._reads[name] = asyncio.ensure_future(
                off_loop(services.store.get_account, name)
            )
            read.add_done_callback(lambda done: self._read_done(name, done, now))
        if cached is not None:
            await asyncio.wait([read], timeout=ACCOUNT_READ_DEADLINE)
            if not read.done():
                return cached[0]
        account = await asyncio.shield(read)
        if account is None:
            raise InvalidKey("Invalid Key (its account no longer exists)")
        return account

    def _read_done(self, name: str, read: asyncio.Future[Account | None], at: float) -> None:
        self._reads.pop(name, None)
        if read.cancelled() or read.exception() is not None:
            return  # the next call tries again (one that waits sees the error itself)
        account = read.result()
        if account is None:
            self._accounts.pop(name, None)
        else:
            self._accounts[name] = (account, at)


def _finish(services: Services, t: Trace, ms: float) -> None:
    """Log the call and queue its audit record (never a secret: key ids only)."""
    record = CallRecord(
        at=t.at, request_id=t.request_id, key_id=t.key_id, account=t.account,
        method=t.method, outcome=t.outcome, upstream_status=t.upstream_status,
        duration_ms=round(ms, 3), bytes_in=t.bytes_in, bytes_out=t.bytes_out, route=t.route,
        table_name=t.table_name,
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
    services.audit.add(record)
    services.metrics.call(record)


def _log_fields(r: CallRecord) -> dict[str, Any]:
    """The access log's fields: ``dataclasses.asdict(r)`` without its generic deep copy (every
    field is a scalar), in the same order."""
    return {
        "at": r.at, "request_id": r.request_id, "key_id": r.key_id, "account": r.account,
        "method": r.method, "outcome": r.outcome, "upstream_status": r.upstream_status,
        "duration_ms": r.duration_ms, "bytes_in": r.bytes_in, "bytes_out": r.bytes_out,
        "route": r.route, "table_name": r.table_name,
    }  # fmt: skip


def _presented_key(scope: Scope, call: xmlrpc.Call) -> str | None:
    """The local key: normally the first parameter.

    infusionsoft-php in ``apikey`` mode sends the key as an ``X-Keap-API-Key`` header (first
    parameter: a fixed string), and older OAuth SDKs as ``?access_token=``; both are accepted
    when they carry a keyshim key.
    """
    header = asgi.header(scope, b"x-keap-api-key")
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
