"""SimConfig: every knob of the simulator, including the behaviours docs/keap.md marks unknown.

Where Keap's behaviour is not known (does the old access token survive a refresh? does a
refresh restart the refresh token's lifetime? are client credentials accepted in the body of
a refresh grant?) the simulator does not guess silently: each is a field here with the default
documented next to it, so keyshim's tests can run against every plausible gateway.

The config is a plain mutable dataclass because the control API and tests change it while the
simulator runs; ``apply_updates`` is the one validated way to change it from JSON.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

SpentBody = Literal["current", "older"]
HoldMode = Literal["off", "before", "after"]
XmlRpcMode = Literal["on", "off", "503", "404", "410"]
RestEndToken = Literal["empty", "absent"]
RestUnknownEmail = Literal["404", "non_marketable"]

DAY = 86400


@dataclass
class SimConfig:
    """The simulator's behaviour. Defaults follow docs/keap.md; unknowns are flagged below."""

    #: The Keap app the tokens grant access to; the scope is ``full|<app_name>.infusionsoft.com``.
    app_name: str = "ab123"
    access_token_lifetime: float = DAY
    #: 45 days per a Keap staff statement (older posts said 6 months).
    refresh_token_lifetime: float = 45 * DAY
    #: Authorization codes are short-lived; Keap's figure is not published (10 min assumed).
    code_lifetime: float = 600
    #: Unknown (docs/keap.md#tokens). True: the access token issued before a refresh keeps working
    #: until it expires (the lenient reading; keyshim must not rely on it either way).
    old_access_token_valid_after_refresh: bool = True
    #: Unknown (docs/keap.md#tokens). True: each refresh token gets a full lifetime from its own
    #: issue (what Keap staff's "refresh idle chains every ~30 days" advice implies); False: the new
    #: refresh token inherits the expiry of the chain's first one.
    refresh_restarts_lifetime: bool = True
    #: Unknown (docs/keap.md#tokens). False (default): a refresh grant must authenticate the
    #: client with HTTP Basic, as documented; client_id/client_secret in the body alone get 401.
    refresh_body_credentials: bool = False
    #: Which gateway's body a spent or bad refresh token gets (both are seen in the wild).
    spent_body: SpentBody = "current"
    #: Pause refresh grants until released: "before" the old token is consumed, or "after" the
    #: new pair is issued (the answer is then held back).
    hold_refresh: HoldMode = "off"
    #: How long a "timeout" failure stalls before answering (overridable per failure).
    failure_timeout: float = 30.0
    #: Retry-After value sent with an injected "429" failure.
    failure_retry_after: int = 1
    #: Enforce the quotas below on the XML-RPC endpoint (usage headers are always sent).
    throttle: bool = False
    oauth_spike_limit: int = 25
    oauth_minute_limit: int = 1500
    oauth_day_limit: int = 150_000
    key_spike_limit: int = 10
    key_minute_limit: int = 240
    key_day_limit: int = 30_000
    #: Brownout switch for the XML-RPC endpoint; see ``endpoint.py`` for what each mode answers.
    xmlrpc_mode: XmlRpcMode = "on"
    #: Custom fields that exist on Contact (legacy names start with ``_``).
    custom_fields: tuple[str, ...] = field(default=("_LegacyId", "_Notes", "_ShoeSize"))
    #: REST v2 ``page_size`` when a list request sends none (or 0). The SDK bounds it to
    #: 0..1000 and states no default; 1000 (the bound, and legacy ``query``'s cap) is assumed.
    rest_default_page_size: int = 1000
    #: Unknown (docs/keap.md#open-questions, 10): at the last page ``next_page_token`` is ``""``
    #: ("empty", the AIP-158 convention Keap's v2 API follows) or left out of the answer ("absent").
    rest_end_token: RestEndToken = "empty"
    #: Unknown (§8.4): ``/emailAddresses/{email}/status`` for an address on no contact and never
    #: seen: "404" (default), or answer it as a NON_MARKETABLE address.
    rest_unknown_email: RestUnknownEmail = "404"


class ConfigError(ValueError):
    """A control-API config update named an unknown field or carried a value of the wrong type."""


def apply_updates(config: SimConfig, updates: Mapping[str, Any]) -> None:
    """Validate every update first, then apply all of them (no half-applied update)."""
    hints = typing.get_type_hints(SimConfig)
    checked: dict[str, Any] = {}
    for name, value in updates.items():
        if name not in hints:
            raise ConfigError(f"unknown config field: {name}")
        checked[name] = _check(name, hints[name], value)
    for name, value in checked.items():
        setattr(config, name, value)


def config_dict(config: SimConfig) -> dict[str, Any]:
    """The config as JSON-ready data (tuples become lists)."""
    return {
        f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v
        for f in dataclasses.fields(config)
    }


def _check(name: str, hint: Any, value: Any) -> Any:
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {list(choices)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be a boolean")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number")
        if hint is int and not float(value).is_integer():
            raise ConfigError(f"{name} must be an integer")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string")
        return value
    if typing.get_origin(hint) in (tuple, types.GenericAlias):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings")
        return tuple(value)
    raise ConfigError(f"{name} cannot be changed at run time")  # pragma: no cover
