"""REST pass-through: ``/crm/rest/v2/...`` (and ``/crm/rest/v1/...``) with a keyshim key.

Code rewritten for REST v2 keeps its keyshim key, and with it revocation, expiry, per-key
rates, allowlists, Keap's quota budget, the 401 rule and the audit (issue 17). One request's
life, in this order; a refused request sends nothing upstream:

1. the path: only ``/crm/rest/v1/`` and ``/crm/rest/v2/``; no ``.`` or ``..`` segment, no
   encoded dot, slash or backslash, no control character (400);
2. the query: a key in it (``?access_token=``) is refused (400): URLs end up in logs;
3. the key: ``Authorization: Bearer shk_...`` (the Python SDK) or ``X-Keap-API-Key: shk_...``
   (the PHP SDK with a personal access token); checked as for XML-RPC (401);
4. the allowlist's REST patterns (``GET /contacts*``) (403), then the key's rate (429);
5. the body, read whole within ``SHIM_MAX_BODY`` (413);
6. the request goes through the gateway (budget, the account's credential, one refresh and
   one retry on a 401) with its method, path, query and body unchanged and only the request
   headers in ``FORWARDED``: never the local key, cookies or hop-by-hop headers;
7. Keap's answer is streamed back unchanged (status, body, the headers in ``RETURNED``).

keyshim's own refusals have Keap's REST error shape, ``{"code", "message", "status",
"details"}``, with the HTTP status from ``STATUS`` (docs/keap.md#errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

from shim import __version__
from shim.access import keys
from shim.errors import (
    ChainError,
    ClientStalled,
    InvalidKey,
    InvalidParameter,
    NoAccess,
    NotFound,
    ParseError,
    RateLimited,
    ReauthorizationRequired,
    RequestTimeout,
    RequestTooLarge,
    ShimError,
    UnsupportedContentType,
    UpstreamAuthError,
    UpstreamError,
    UpstreamThrottled,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from shim.models import Account
from shim.serve import asgi
from shim.serve.asgi import Receive, Scope, Send
from shim.serve.call import Calls, Trace, _finish
from shim.serve.services import Services
from shim.settings import Settings
from shim.store.offloop import peek_or_read

log = logging.getLogger("shim.serve.rest")

#: The paths this module answers (the version is kept: v1 goes to v1, v2 to v2).
PREFIXES = ("/crm/rest/v1/", "/crm/rest/v2/")
#: Audit records of passed-through requests carry this route (``shim usage`` counts them).
ROUTE = "rest-pass"

#: Request headers that go upstream (lower-case); everything else stays here.
FORWARDED = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "content-encoding",
        "content-type",
        "if-match",
        "if-none-match",
        "user-agent",
    }
)
#: Answer headers that come back; Set-Cookie never does (keyshim carries no state).
RETURNED = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "content-disposition",
        "cache-control",
        "etag",
        "last-modified",
        "location",
        "retry-after",
    }
)

#: keyshim's error -> (HTTP status, the REST ``status`` word); the first match wins.
STATUS: tuple[tuple[type[ShimError], int, str], ...] = (
    (InvalidKey, 401, "UNAUTHENTICATED"),
    (NoAccess, 403, "PERMISSION_DENIED"),
    (RateLimited, 429, "RESOURCE_EXHAUSTED"),
    (NotFound, 404, "NOT_FOUND"),
    (RequestTooLarge, 413, "PAYLOAD_TOO_LARGE"),
    (RequestTimeout, 408, "DEADLINE_EXCEEDED"),
    (UnsupportedContentType, 415, "INVALID_ARGUMENT"),
    (ParseError, 400, "INVALID_ARGUMENT"),
    (InvalidParameter, 400, "INVALID_ARGUMENT"),
    (ReauthorizationRequired, 503, "UNAVAILABLE"),
    (ChainError, 503, "UNAVAILABLE"),
    (UpstreamThrottled, 429, "RESOURCE_EXHAUSTED"),
    (UpstreamTimeout, 504, "DEADLINE_EXCEEDED"),
    (UpstreamUnavailable, 502, "UNAVAILABLE"),
    (UpstreamAuthError, 502, "UNAVAILABLE"),
    (UpstreamError, 502, "UNAVAILABLE"),
    (ShimError, 500, "INTERNAL"),
)

#: ``%2e`` (dot), ``%2f`` (slash), ``%5c`` (backslash) and ``%00`` in the raw path.
_ENCODED = re.compile(rb"%(2e|2f|5c|00)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
#: Path segments that are ids, for the audit's method name (``/contacts/{id}``).
_ID = re.compile(r"^(\d+|[^/:]*@[^/:]*)(?=:|$)")


class UnknownVersion(NotFound):
    """A REST path keyshim does not pass through (``/crm/rest/v3/...``, ``/crm/rest/``)."""


def error_body(exc: ShimError) -> tuple[int, bytes]:
    """The HTTP status and Keap's REST error body for ``exc`` (the ``STATUS`` table)."""
    status, word = next((s, w) for cls, s, w in STATUS if isinstance(exc, cls))
    body = {"code": status, "message": exc.message, "status": word, "details": []}
    return status, json.dumps(body).encode()


def is_rest_path(path: str) -> bool:
    """True for the paths this module answers (any version: an unknown one gets a REST 404)."""
    return path.startswith("/crm/rest/")


def template(path: str) -> str:
    """``/contacts/7/tags`` -> ``/contacts/{id}/tags``: one audit method per endpoint."""
    return "/".join(_ID.sub("{id}", segment) for segment in path.split("/"))[:160]


class RestPassthrough:
    """Answers REST requests for one app; shares the XML-RPC handler's account cache."""

    def __init__(self, settings: Settings, clock: Callable[[], float], calls: Calls) -> None:
        self.settings = settings
        self.clock = clock
        self._calls = calls

    async def handle(self, services: Services, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        t = Trace(request_id=secrets.token_hex(6), at=self.clock(), route=ROUTE)
        try:
            verb = str(scope["method"])
            version, path = _checked_path(scope)
            t.method = f"REST {verb} {template(path)}"
            try:
                _check_query(scope)
            except KeyInUrl as exc:
                await _attribute(services, t, exc.key_text)
                raise
            key_text = _presented_key(scope)
            key_id = keys.key_id_of(key_text) if key_text is not None else None
            if key_id is None:
                raise InvalidKey(
                    "No keyshim key: send it as 'Authorization: Bearer shk_...' or "
                    "'X-Keap-API-Key: shk_...'"
                )
            store = services.store
            found = await peek_or_read(store.peek_key, store.get_key, key_id)
            try:
                record = keys.verify(found, services.hmac_key, key_text or "", t.at)
            except InvalidKey:
                if found is not None and keys.matches(found, services.hmac_key, key_text or ""):
                    t.key_id = found.id
                raise
            t.key_id = record.id
            keys.check_request(record, verb, path)
            account = await self._calls.admitted_account(services, record, t.at)
            t.account = account.name
            headers = _forwarded_headers(scope)
            body = await asgi.read_raw(
                scope, receive, self.settings.max_body, self.settings.body_timeout
            )
            t.bytes_in = len(body)
            url = _upstream_url(account, version, scope)
            response = await services.gateway.request(
                account, verb, url, headers=headers, content=body or None
            )
            t.upstream_status = response.status
            t.outcome = "ok" if response.status < 400 else f"HTTP {response.status}"
            await asgi.stream(
                send,
                response,
                t,
                http10=scope.get("http_version") == "1.0",
                limit=4 * self.settings.max_body,
                write_timeout=self.settings.client_write_timeout or None,
                passes=_returned,
            )
        except ShimError as exc:
            t.outcome = exc.tag or "ParseError"
            if isinstance(exc, ClientStalled):
                t.outcome = "client_stalled"
                log.warning("request %s: %s; cut off", t.request_id, exc.message)
                asgi.abort_client(scope)
                await asyncio.sleep(0)
                return
            if t.started_response:
                t.outcome = "error"
                log.error("request %s: upstream broke mid-answer: %s", t.request_id, exc.message)
                return
            t.bytes_out = await _refuse(send, exc)
        except Exception:
            t.outcome = "error"
            log.exception("request %s failed", t.request_id)
            if not t.started_response:
                err = ShimError(f"keyshim internal error (request {t.request_id})")
                t.bytes_out = await _refuse(send, err)
        finally:
            _finish(services, t, (time.perf_counter() - started) * 1000)


async def _refuse(send: Send, exc: ShimError) -> int:
    status, body = error_body(exc)
    headers = [(b"content-type", b"application/json")]
    if isinstance(exc, RequestTooLarge | RequestTimeout):
        headers.append((b"connection", b"close"))
    await asgi.plain(send, status, body, headers)
    return len(body)


def _returned(name: str) -> bool:
    return name in RETURNED or name.startswith("x-keap-product-")


def _checked_path(scope: Scope) -> tuple[str, str]:
    """The version (``v2``) and the path below it (``/contacts/7``), or a refusal."""
    raw = bytes(scope.get("raw_path") or scope["path"].encode("utf-8")).split(b"?", 1)[0]
    path = str(scope["path"])
    if _ENCODED.search(raw) or _CONTROL.search(path):
        raise InvalidParameter(
            "The path holds an encoded dot, slash or backslash, or a control character: "
            "keyshim does not pass such paths through"
        )
    segments = path.split("/")
    if any(s in (".", "..") for s in segments):
        raise InvalidParameter("The path holds a '.' or '..' segment")
    prefix = next((p for p in PREFIXES if path.startswith(p)), None)
    if prefix is None:
        raise UnknownVersion(
            f"keyshim passes REST requests through at /crm/rest/v2/ and /crm/rest/v1/, "
            f"not {path[:80]}"
        )
    return prefix.split("/")[3], path[len(prefix) - 1 :]


class KeyInUrl(InvalidParameter):
    """A key in the query string; ``key_text`` is the keyshim key there, if one is."""

    def __init__(self, message: str, key_text: str | None) -> None:
        super().__init__(message)
        self.key_text = key_text


def _check_query(scope: Scope) -> None:
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        leaked = keys.looks_like_key(value.strip())
        if leaked or name.lower() in ("access_token", "api_key", "apikey"):
            raise KeyInUrl(
                f"A key in the URL ({name}=) is refused: URLs end up in logs. Send it as "
                "'Authorization: Bearer shk_...'; if this key was shared, rotate it",
                value.strip() if leaked else None,
            )


async def _attribute(services: Services, t: Trace, text: str | None) -> None:
    """A real key refused for being in the URL is named in the audit, so the operator learns
    which key leaked into some log; text that is not one of our keys names nothing."""
    if text is None:
        return
    with contextlib.suppress(InvalidKey):
        key_id = keys.key_id_of(text)
        if key_id is None:
            return
        store = services.store
        found = await peek_or_read(store.peek_key, store.get_key, key_id)
        if found is not None and keys.matches(found, services.hmac_key, text):
            t.key_id = found.id


def _presented_key(scope: Scope) -> str | None:
    header = asgi.header(scope, b"authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer" and keys.looks_like_key(token.strip()):
            return token.strip()
    header = asgi.header(scope, b"x-keap-api-key")
    if header is not None and keys.looks_like_key(header.strip()):
        return header.strip()
    return None


def _forwarded_headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = bytes(raw_name).decode("latin-1").lower()
        if name not in FORWARDED:
            continue
        value = bytes(raw_value).decode("latin-1")
        if _CONTROL.search(value.replace("\\", "")):
            raise InvalidParameter(f"The {name} header holds a control character")
        out[name] = value
    out.setdefault("user-agent", f"keyshim/{__version__}")
    return out


def _upstream_url(account: Account, version: str, scope: Scope) -> str:
    """The account's REST base for ``version``, the path as the client sent it (still
    percent-encoded), and the query unchanged."""
    base = account.rest_url.rstrip("/")
    root = base.rsplit("/", 1)[0] if re.search(r"/v\d+$", base) else base
    raw = bytes(scope.get("raw_path") or scope["path"].encode("utf-8")).split(b"?", 1)[0]
    below = raw.decode("latin-1")[len(f"/crm/rest/{version}") :]
    url = f"{root}/{version}{below}"
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    return f"{url}?{query}" if query else url
