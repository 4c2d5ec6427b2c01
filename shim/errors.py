"""One exception tree for keyshim; every error knows the XML-RPC fault a script receives.

Legacy scripts match on the ``[Tag]`` at the start of ``faultString`` (and a few on
``faultCode``), so every failure, ours or upstream's, ends up as one well-formed fault.
Codes 0-15 are Keap's own; codes from 100 up are keyshim's, chosen so that they never collide
with a code Keap sends::

    ShimError                         3   [Unexpected]           (base; anything unforeseen)
    ├── MasterKeyChanged              3   [Unexpected]           (rotated; restart this process)
    ├── ParseError                    0   Failed to parse XML-RPC request: ...
    ├── InvalidParameter             12   [InvalidParameter]     (bad method name, missing key)
    ├── RequestTooLarge             107   [RequestTooLarge]      (HTTP 413)
    ├── RequestTimeout              110   [RequestTimeout]       (HTTP 408: slow sender)
    │   └── ClientStalled           110   (the script stopped reading its answer: cut, no fault)
    ├── UnsupportedContentType      111   [UnsupportedContentType] (HTTP 415)
    ├── InvalidKey                    2   [InvalidKey]           (unknown, mistyped, revoked...)
    ├── NoAccess                     14   [NoAccess]             (method not in the allowlist)
    ├── RateLimited                 108   [RateLimited]          (key over its local rate)
    ├── NotFound                      5   [RecordNotFound]       (local lookups; REST translation)
    ├── LegacyFault                                               (Keap's own faults, which
    │   ├── DatabaseError             4   [DatabaseError]         keyshim sends when it answers
    │   ├── NoTableAccess             7   [NoTableAccess]         through REST v2: the code and
    │   ├── NoFieldAccess             8   [NoFieldAccess]         tag Keap's XML-RPC API sent)
    │   ├── NoTableFound              9   [NoTableFound]
    │   ├── NoFieldFound             10   [NoFieldFound]
    │   └── NoFields                 11   [NoFields]
    ├── NoTranslation               112   [NoRestTranslation]    (routed to REST v2, no translation)
    ├── StoreUnavailable            113   [StoreUnavailable]     (keyshim's database unreachable)
    ├── ChainError                                                (the token chain of an account)
    │   ├── ReauthorizationRequired 105   [ReauthorizationRequired]
    │   ├── NoTokens                105   [ReauthorizationRequired] (account never authorized)
    │   ├── RefreshInProgress       109   [TokenRefreshFailed]   (waited too long for a refresh)
    │   ├── StaleTokenWrite         109   [TokenRefreshFailed]   (fenced: the chain moved on)
    │   └── TokenEndpointError      109   [TokenRefreshFailed]
    │       ├── SpentRefreshToken   109   (permanent: invalid_grant / invalid_request)
    │       └── TransientTokenError 109   (5xx, timeout, reset, 429)
    └── UpstreamError               106   [UpstreamError]        (answer that is not XML-RPC)
        ├── UpstreamUnavailable     101   [UpstreamUnavailable]  (refused, DNS, reset)
        ├── UpstreamTimeout         102   [UpstreamTimeout]
        ├── UpstreamThrottled       103   [Throttled]            (Keap answered 429)
        └── UpstreamAuthError       104   [UpstreamAuth]         (Keap answered 401: a service key)
            └── AccountTokenRefused   2   [InvalidKey]           (401 to a token fresh from refresh)

``CliError`` is separate: it is a user mistake at the command line, shown as one line.
"""

from __future__ import annotations


class ShimError(Exception):
    """Base of every keyshim error; carries the fault a legacy script should get."""

    fault_code: int = 3
    tag: str = "Unexpected"
    default_message: str = "Unexpected error"
    #: The HTTP status the fault travels with: 200 like Keap's, or a 4xx for HTTP-level abuse.
    http_status: int = 200

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)

    @property
    def fault_string(self) -> str:
        """The ``faultString`` a script receives: ``[Tag]message``."""
        return f"[{self.tag}]{self.message}"


class MasterKeyChanged(ShimError):
    """The master key was rotated and this process could not load the new one (it comes from
    SHIM_SECRET_KEY, or the key file is mid-rotation): nothing is sealed under the old key."""

    default_message = (
        "keyshim's master key was rotated and this process still holds the old one; "
        "restart keyshim (with the new key)"
    )


class ParseError(ShimError):
    """The request body is not a well-formed XML-RPC methodCall (Keap's own wording)."""

    fault_code = 0
    tag = ""
    default_message = "invalid request"

    @property
    def fault_string(self) -> str:
        return f"Failed to parse XML-RPC request: {self.message}"


class RequestTimeout(ShimError):
    """The client sent its body too slowly (a slow or stalled sender)."""

    fault_code = 110
    tag = "RequestTimeout"
    default_message = "The request body did not arrive in time"
    http_status = 408


class ClientStalled(RequestTimeout):
    """The script stopped reading its answer for longer than ``SHIM_CLIENT_WRITE_TIMEOUT``.
    Its answer has begun, so no fault can reach it: the connection is cut instead."""

    default_message = "The client stopped reading its answer"


class UnsupportedContentType(ShimError):
    fault_code = 111
    tag = "UnsupportedContentType"
    default_message = "XML-RPC requests are text/xml"
    http_status = 415


class InvalidParameter(ShimError):
    fault_code = 12
    tag = "InvalidParameter"
    default_message = "Invalid parameter"


class RequestTooLarge(ShimError):
    """A body over ``SHIM_MAX_BODY`` (as declared, as sent, or once decompressed): refused
    before it is read on, and the connection closed. HTTP 413 says so to proxies and HTTP
    clients; the fault in its body says so to scripts that read faults whatever the status."""

    fault_code = 107
    tag = "RequestTooLarge"
    default_message = "Request body is larger than this keyshim accepts"
    http_status = 413


class InvalidKey(ShimError):
    """Unknown, malformed, revoked or expired local key. Nothing is sent upstream."""

    fault_code = 2
    tag = "InvalidKey"
    default_message = "Invalid Key"


class NoAccess(ShimError):
    fault_code = 14
    tag = "NoAccess"
    default_message = "Access denied"


class RateLimited(ShimError):
    fault_code = 108
    tag = "RateLimited"
    default_message = "This key is over its call rate; slow down"


class NotFound(ShimError):
    fault_code = 5
    tag = "RecordNotFound"
    default_message = "Record was not found"


class LegacyFault(ShimError):
    """Base of the Keap faults keyshim sends itself when it answers a call through REST v2.

    A script that handled ``[NoFieldFound]`` from Keap must get exactly that from keyshim, so
    these carry Keap's own codes (docs/keap.md#legacy-xml-rpc), not keyshim's.
    """


class DatabaseError(LegacyFault):
    fault_code = 4
    tag = "DatabaseError"
    default_message = "Database error"


class NoTableAccess(LegacyFault):
    fault_code = 7
    tag = "NoTableAccess"
    default_message = "Access denied to table"


class NoFieldAccess(LegacyFault):
    fault_code = 8
    tag = "NoFieldAccess"
    default_message = "Access denied to field"


class NoTableFound(LegacyFault):
    fault_code = 9
    tag = "NoTableFound"
    default_message = "No table found"


class NoFieldFound(LegacyFault):
    fault_code = 10
    tag = "NoFieldFound"
    default_message = "No field found"


class NoFields(LegacyFault):
    fault_code = 11
    tag = "NoFields"
    default_message = "No fields were requested"


class NoTranslation(ShimError):
    """The account is routed to REST v2 (or XML-RPC is down) and keyshim cannot express this
    call there: nothing is sent. The message names the method (and table or field) and why."""

    fault_code = 112
    tag = "NoRestTranslation"
    default_message = "This call has no REST v2 translation in keyshim"


class StoreUnavailable(ShimError):
    """keyshim's own database cannot be reached (PostgreSQL restarting, network down).

    A call fails fast with this rather than hang, and rather than trust cached keys that a
    revocation might have changed meanwhile; it is safe to retry, nothing was sent to Keap.
    """

    fault_code = 113
    tag = "StoreUnavailable"
    default_message = "keyshim cannot reach its database right now; retry shortly"


class ChainError(ShimError):
    """Something is wrong with an account's OAuth token chain."""

    fault_code = 109
    tag = "TokenRefreshFailed"
    default_message = "Could not get a fresh access token"


class ReauthorizationRequired(ChainError):
    """The chain is dead (its refresh token is spent); a human must run ``account authorize``."""

    fault_code = 105
    tag = "ReauthorizationRequired"
    default_message = "The Keap connection needs re-authorization (shim account authorize)"


class NoTokens(ReauthorizationRequired):
    default_message = "The account has no tokens yet (shim account authorize or import-tokens)"


class RefreshInProgress(ChainError):
    default_message = "Timed out waiting for another process to refresh the access token"


class StaleTokenWrite(ChainError):
    """A fenced chain write was refused: the chain is no longer at the generation the writer
    started from (another process refreshed it, or a human imported a new pair). Nothing was
    written; the stored chain is newer and is the one to use."""

    default_message = "A token write was refused: the chain moved on meanwhile"


class TokenEndpointError(ChainError):
    """The token endpoint refused or failed a grant."""

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SpentRefreshToken(TokenEndpointError):
    """Permanent: Keap says the refresh token is used or invalid (either gateway's body)."""

    default_message = "Keap rejected the refresh token as spent or invalid"


class TransientTokenError(TokenEndpointError):
    """5xx, timeout, connection reset or 429 from the token endpoint: worth retrying."""

    default_message = "The Keap token endpoint is temporarily unavailable"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class UpstreamError(ShimError):
    """Keap answered with something that is not an XML-RPC response (5xx, HTML, JSON...)."""

    fault_code = 106
    tag = "UpstreamError"
    default_message = "Keap answered with an error"

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpstreamUnavailable(UpstreamError):
    fault_code = 101
    tag = "UpstreamUnavailable"
    default_message = "Could not connect to Keap"


class UpstreamTimeout(UpstreamError):
    fault_code = 102
    tag = "UpstreamTimeout"
    default_message = "Keap did not answer in time; the call may or may not have run"


class UpstreamThrottled(UpstreamError):
    fault_code = 103
    tag = "Throttled"
    default_message = "Keap is throttling calls (HTTP 429)"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class UpstreamAuthError(UpstreamError):
    fault_code = 104
    tag = "UpstreamAuth"
    default_message = "Keap rejected keyshim's credentials"


class AccountTokenRefused(UpstreamAuthError):
    """Keap answered 401 to an access token that a refresh had just produced: it refuses the
    account's credential itself, and refreshing again would not help (issue 11). Keap's
    legacy answer to a refused credential is ``[InvalidKey]``, so scripts get that; the
    message names the keyshim account and says the script's own key is fine."""

    fault_code = 2
    tag = "InvalidKey"
    default_message = "Keap refused the keyshim account's access token"

    def __init__(self, account: str, when: str) -> None:
        super().__init__(
            f"Keap refused the access token of keyshim account {account} (HTTP 401) {when}; "
            f"this is the account's authorization with Keap, not your keyshim key. Ask your "
            f"keyshim admin to authorize the account again: shim account authorize {account}",
            status=401,
        )


class CliError(Exception):
    """A user mistake at the command line: printed as one line on stderr, exit status 1."""


def all_faults() -> list[type[ShimError]]:
    """Every fault keyshim itself can send, for the README table and its test."""
    seen: list[type[ShimError]] = []
    stack: list[type[ShimError]] = [ShimError]
    while stack:
        cls = stack.pop(0)
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen
