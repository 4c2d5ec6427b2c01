"""Which protocol answers a call, and when ``auto`` may fall back to REST v2.

Routes (``Account.route``): ``xmlrpc`` forwards as before; ``rest`` answers every call with
a translation through REST v2 and refuses the others (``[NoRestTranslation]``, nothing sent);
``auto`` forwards to XML-RPC and falls back to REST only when XML-RPC is unavailable, never
running a call twice:

* Failures that prove XML-RPC did not run the call: connection refused, HTTP 404/410 (the
  gateway has no such service), 503, or an in-protocol brownout fault. Any translated method
  falls back, and the account counts as down for ``DOWN_HOLD`` seconds: translated calls go
  straight to REST meanwhile (one request instead of two, both billed to the same quota).
* Failures after the call may have run (a timeout, a 500 or other 5xx, a broken answer): only
  read-only or idempotent methods (see table.py) fall back; the others get the original fault.
* Anything else (429, 401 after a refresh, a Keap fault) is XML-RPC answering: passed on.

Every REST answer is recorded with ``route = "rest"`` and logged; ``shim status`` counts them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from shim import xmlrpc
from shim.errors import (
    NoTranslation,
    ShimError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamThrottled,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from shim.inflate import InflateError, inflater
from shim.keap.client import UpstreamResponse
from shim.keap.gateway import Gateway
from shim.models import Account
from shim.oauth.chains import Chains
from shim.rest.client import RestClient
from shim.rest.context import Ctx, RestState
from shim.rest.files import Streamed
from shim.rest.legacy import check_signature
from shim.rest.table import Translation, lookup, no_equivalent, untranslated_detail
from shim.store.protocol import Store

if TYPE_CHECKING:  # the ASGI types only; rest/ does not depend on serve/ at run time
    from shim.serve.asgi import Send

log = logging.getLogger("shim.rest")

#: After XML-RPC was found down, how long translated calls of that account skip it (seconds).
DOWN_HOLD = 30.0
#: What an in-protocol brownout fault says (Keap's real wording is unknown; docs/keap.md#sunset).
BROWNOUT = re.compile(
    rb"<fault>.*XML-?RPC[^<]{0,120}(unavailable|retired|disabled|brownout|sunset|shut)",
    re.IGNORECASE | re.DOTALL,
)
#: Statuses after which the call certainly did not run (the service is not there, or off).
DOWN_STATUSES = frozenset({404, 410, 503})
_XML_TYPE = b"text/xml; charset=UTF-8"
_SLOT = "KEYSHIM-BASE64-SLOT"


class Trace(Protocol):
    """The fields of app's per-call trace this module fills in."""

    request_id: str
    route: str
    upstream_status: int | None
    started_response: bool
    bytes_out: int


class Router:
    """Per-process: the translation table, the REST state, the fallback rules."""

    def __init__(self, gateway: Gateway, chains: Chains, store: Store) -> None:
        self.gateway = gateway
        self.chains = chains
        self.store = store
        self.state = RestState()
        self.clock: Callable[[], float] = time.monotonic

    def translation(self, call: xmlrpc.Call) -> Translation | None:
        return lookup(call.method, call.params)

    def untranslated(
        self, method: str, why: str = "", params: list[xmlrpc.Value] | None = None
    ) -> NoTranslation:
        """The fault of a call with no translation; it names the table or setting when that
        is what has none (``DataService.query on table Company``)."""
        reason = no_equivalent(method)
        if reason is not None:
            return NoTranslation(f"{method} has no REST v2 equivalent: {reason}{why}")
        what = method + (untranslated_detail(method, params) if params else "")
        return NoTranslation(
            f"{what} has no REST v2 translation in keyshim{why}; "
            "see docs/translation.md (an `auto` account still forwards it to XML-RPC)"
        )

    # -- auto: is XML-RPC down? -------------------------------------------------------------
    def is_down(self, account: Account) -> bool:
        return self.state.down_until.get(account.name, 0.0) > self.clock()

    async def brownout(self, response: UpstreamResponse) -> bool:
        """Whether a 200 XML-RPC answer is a brownout fault (peeked, never lost)."""
        head = await response.peek(2048)
        decoder = inflater(response.headers.get("content-encoding", ""))
        if decoder is not None:
            try:
                head = decoder.head(head, 8192)
            except InflateError:
                return False
        if BROWNOUT.search(head) is None:
            return False
        await response.aclose()
        return True

    def fallback(
        self, account: Account, call: xmlrpc.Call, translation: Translation | None, exc: ShimError
    ) -> Translation:
        """The translation to answer with after XML-RPC failed with ``exc``, or raise."""
        down = _proves_not_run(exc)
        if not down and not _may_have_run(exc):
            raise exc
        if down:
            if not self.is_down(account):
                log.warning(
                    "account %s: Keap's XML-RPC API is unavailable (%s); translated calls "
                    "go to REST v2 for %.0fs",
                    account.name,
                    exc.message,
                    DOWN_HOLD,
                )
            self.state.down_until[account.name] = self.clock() + DOWN_HOLD
        if translation is None:
            if down:
                raise self.untranslated(
                    call.method,
                    f", and Keap's XML-RPC API is unavailable ({exc.message})",
                    call.params,
                )
            raise exc
        if not down and not translation.repeatable:
            raise exc  # it may have run: never twice
        return translation

    # -- answering through REST -------------------------------------------------------------
    async def answer(
        self, account: Account, call: xmlrpc.Call, translation: Translation, t: Trace, send: Send
    ) -> None:
        """Run the translation and send its answer; the trace records route and statuses."""
        t.route = "rest"
        client = RestClient(self.gateway, account)
        ctx = Ctx(client, self.state, self.store, self.chains.owner)
        try:
            check_signature(call.params, translation.signatures)
            result = await translation.handler(ctx, *call.params[1:])
        finally:
            t.upstream_status = client.last_status
        if isinstance(result, Streamed):
            await _send_streamed(send, result, t)
        else:
            body = xmlrpc.dumps_response(result)
            await send(_start([(b"content-length", str(len(body)).encode())]))
            await send({"type": "http.response.body", "body": body})
            t.bytes_out = len(body)


def _proves_not_run(exc: ShimError) -> bool:
    if isinstance(exc, UpstreamUnavailable):
        return True
    return isinstance(exc, UpstreamError) and exc.status in DOWN_STATUSES


def _may_have_run(exc: ShimError) -> bool:
    if isinstance(exc, UpstreamTimeout):
        return True
    if isinstance(exc, (UpstreamThrottled, UpstreamAuthError)) or not isinstance(
        exc, UpstreamError
    ):
        return False
    return exc.status is None or exc.status >= 500


def _start(extra: list[tuple[bytes, bytes]]) -> MutableMapping[str, Any]:
    headers = [(b"content-type", _XML_TYPE), *extra]
    return {"type": "http.response.start", "status": 200, "headers": headers}


async def _send_streamed(send: Send, result: Streamed, t: Trace) -> None:
    """A base64 string answer streamed from REST as it arrives. Its length is known when
    REST sends the file's (unencoded) length, so even HTTP/1.0 clients get a framed answer."""
    head, tail = xmlrpc.dumps_response(_SLOT).split(_SLOT.encode("ascii"))
    headers = result.response.headers
    size = headers.get("content-length", "")
    extra = []
    if size.isdigit() and "content-encoding" not in headers:
        length = len(head) + 4 * ((int(size) + 2) // 3) + len(tail)
        extra.append((b"content-length", str(length).encode()))
    t.started_response = True
    await send(_start(extra))
    await send({"type": "http.response.body", "body": head, "more_body": True})
    t.bytes_out = len(head)
    async for chunk in result.base64_chunks():
        t.bytes_out += len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": tail, "more_body": False})
    t.bytes_out += len(tail)
