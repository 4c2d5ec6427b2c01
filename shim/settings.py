"""One Settings object; the only reader of ``SHIM_*`` environment variables.

``shim serve`` turns its flags into environment variables before uvicorn starts its workers,
so every worker process builds the same Settings from the environment.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``30``, ``30s``, ``5m``, ``6h``, ``30d`` (also ``250ms``, ``2w``)."""
    if isinstance(text, int | float):
        return float(text)
    m = _DURATION.fullmatch(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30, 30s, 5m, 6h or 30d)")
    unit = m.group(2).lower() if m.group(2) else None
    return float(m.group(1)) * _UNITS[unit]


def parse_size(text: str | int) -> int:
    """Bytes from ``1048576``, ``512k``, ``64M``, ``1G``."""
    if isinstance(text, int):
        return text
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 512k, 64M)")
    unit = (m.group(2) or "b")[0].lower()
    return int(m.group(1)) * _SIZE_UNITS[unit]


def is_db_url(db: str) -> bool:
    """``postgresql://...`` (or ``postgres://``) selects the PostgreSQL store."""
    return db.startswith(("postgresql://", "postgres://"))


#: Keap's documented limits per credential kind (docs/keap.md#quotas): an OAuth client 25 calls
#: a second and 1,500 a minute, a Service Account Key or PAT 10 a second and 240 a minute.
DEFAULT_KEAP_LIMITS = "oauth=25/s,1500/min;service_key=10/s,240/min"
#: (calls a second, calls a minute) per credential kind; None leaves that window unlimited.
KeapLimits = dict[str, tuple[float | None, float | None]]
_CREDENTIAL_KINDS = ("oauth", "service_key")
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute)\s*", re.IGNORECASE)


def parse_keap_limits(text: str) -> KeapLimits:
    """Keap's rate limits as the budget should honour them.

    ``off`` lifts every limit. Otherwise ``;``-separated ``KIND=RATES`` entries, KIND ``oauth``
    (an OAuth client) or ``service_key`` (a Service Account Key or PAT), RATES ``N/s``,
    ``N/min`` or both (comma-separated), or ``off``. Kinds not named keep their default
    (``DEFAULT_KEAP_LIMITS``); a window not named is not limited.
    """
    return _parse_limits(text, _DEFAULT_LIMITS)


def _parse_limits(text: str, defaults: KeapLimits) -> KeapLimits:
    limits = dict(defaults)
    if text.strip().lower() == "off":
        return {kind: (None, None) for kind in _CREDENTIAL_KINDS}
    for entry in filter(str.strip, text.split(";")):
        kind, eq, rates = entry.partition("=")
        kind = kind.strip().lower()
        if not eq or kind not in _CREDENTIAL_KINDS:
            raise ValueError(
                f"{entry.strip()!r} is not KIND=RATES with KIND oauth or service_key "
                "(e.g. oauth=25/s,1500/min;service_key=10/s,240/min, or off)"
            )
        limits[kind] = _rates(kind, rates)
    return limits


def _rates(kind: str, text: str) -> tuple[float | None, float | None]:
    if text.strip().lower() == "off":
        return None, None
    second: float | None = None
    minute: float | None = None
    for part in text.split(","):
        m = _RATE.fullmatch(part)
        if not m:
            raise ValueError(f"{kind}: {part.strip()!r} is not a rate (use e.g. 25/s or 1500/min)")
        value = float(m.group(1))
        if value <= 0:
            raise ValueError(f"{kind}: {part.strip()!r} must be above 0 (or write {kind}=off)")
        if m.group(2).lower().startswith("s"):
            if second is not None:
                raise ValueError(f"{kind}: two calls-a-second rates")
            second = value
        else:
            if minute is not None:
                raise ValueError(f"{kind}: two calls-a-minute rates")
            minute = value
    return second, minute


_DEFAULT_LIMITS = _parse_limits(DEFAULT_KEAP_LIMITS, {})


def default_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The user's data directory (XDG on Linux, Application Support on macOS, APPDATA)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "keyshim"
    if os.name == "nt" and environ.get("APPDATA"):
        return Path(environ["APPDATA"]) / "keyshim"
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "keyshim"


@dataclass(frozen=True)
class Settings:
    """Everything tunable. Field ``x`` is read from ``SHIM_X``; durations and sizes as text."""

    db: str = ""
    secret_key: str = ""  # SHIM_SECRET_KEY; else the key file
    key_file: str = ""  # default: <db>.key
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    log_level: str = "info"
    #: Refresh before forwarding when the access token has less than this left.
    inline_margin: float = 300.0
    #: Background refresh when less than this is left (issue: several tries before expiry).
    refresh_margin: float = 6 * 3600.0
    #: Refresh a chain whose refresh token is older than this, even with no calls.
    keepalive_age: float = 30 * 86400.0
    #: How often the background scheduler looks at the chains.
    scheduler_interval: float = 60.0
    #: How long a caller waits for another process's refresh before giving up.
    refresh_wait: float = 30.0
    #: Token-endpoint retries of transient failures within one refresh, and their backoff.
    refresh_retries: int = 3
    retry_base: float = 0.5
    retry_cap: float = 10.0
    token_timeout: float = 20.0
    #: On SIGTERM/SIGINT, how long in-flight refreshes (and calls) may take to finish before
    #: the process exits; longer than ``token_timeout``, so a sent token grant gets its answer.
    shutdown_grace: float = 30.0
    connect_timeout: float = 10.0
    upstream_timeout: float = 300.0
    max_body: int = 96 * 1024 * 1024
    #: The fraction of Keap's per-client limits keyshim may use in all (every process and host
    #: sharing the store counts against it together); lower it when something other than
    #: keyshim uses the same Keap client.
    quota_share: float = 1.0
    #: Longest a call waits for its turn in the upstream quota budget before [Throttled].
    quota_wait: float = 10.0
    #: Keap's rate limits per credential kind, which the budget keeps to (``parse_keap_limits``).
    keap_limits: str = DEFAULT_KEAP_LIMITS
    #: A request line and headers must arrive within this (else the connection is closed).
    head_timeout: float = 10.0
    #: Most connections a server process handles at once; more get HTTP 503.
    max_clients: int = 1000
    #: A request body must arrive within this (slow senders get 408).
    body_timeout: float = 60.0
    #: A script must take each part of its answer within this, or it is cut off (and the
    #: upstream connection carrying the answer freed for other callers).
    client_write_timeout: float = 30.0
    max_connections: int = 100
    #: What keyshim puts in the first parameter instead of the local key.
    placeholder: str = "keyshim"
    alert_webhook: str = ""
    #: Audit records older than this are deleted (0 keeps them for ever).
    audit_retention: float = 90 * 86400.0
    #: How often buffered audit records and last-used times are written.
    audit_flush: float = 1.0
    #: Most audit records held in memory while the database cannot take them (oldest dropped).
    audit_buffer: int = 50_000
    #: HTTPS for ``shim serve``: PEM certificate and key (both or neither; ``shim tls init``).
    certfile: str = ""
    keyfile: str = ""
    #: Where a rotated pair the store could not take is kept, sealed, until the store takes it
    #: (shim.store.recovery); default: beside the database file.
    recovery_dir: str = ""
    #: The admin page (``shim serve --admin``): off unless asked for, since it can issue keys.
    admin: bool = False
    #: 0 serves it under /admin on the main port; else its own port on ``admin_host``.
    admin_port: int = 0
    #: Who may reach it: loopback unless an operator names another address.
    admin_host: str = "127.0.0.1"
    #: A non-loopback admin host without TLS is refused unless this says the risk is known.
    admin_insecure: bool = False
    #: How long an admin login lasts.
    admin_session: float = 8 * 3600.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: object) -> Settings:
        """Build from ``SHIM_*`` variables, then apply explicit overrides (CLI flags)."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = environ.get("SHIM_" + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.limits()  # a bad SHIM_KEAP_LIMITS is refused here, not at the first call
        if settings.shutdown_grace <= settings.token_timeout:
            raise ValueError(
                f"SHIM_SHUTDOWN_GRACE ({settings.shutdown_grace:g}s) must be longer than "
                f"SHIM_TOKEN_TIMEOUT ({settings.token_timeout:g}s): a refresh in flight at "
                "shutdown must be able to get its answer"
            )
        if settings.token_timeout <= 0:
            raise ValueError(
                f"SHIM_TOKEN_TIMEOUT ({settings.token_timeout:g}s) must be above 0: it is a "
                "token grant's total deadline"
            )
        if not settings.db:
            settings = replace(settings, db=str(default_data_dir(environ) / "keyshim.db"))
        if not settings.key_file:
            # Beside a database file; for a server database, in this host's data directory
            # (every host needs the same key: copy the file, or use SHIM_SECRET_KEY).
            local = str(default_data_dir(environ) / "keyshim.key")
            settings = replace(
                settings, key_file=local if settings.db_is_url else settings.db + ".key"
            )
        return settings

    @property
    def db_is_url(self) -> bool:
        """True when ``db`` names a PostgreSQL server rather than a SQLite file."""
        return is_db_url(self.db)

    @property
    def local_dir(self) -> Path:
        """Where this host keeps its own files (TLS): beside the database file, or beside the
        key file when the database is a server."""
        return Path(self.key_file if self.db_is_url else self.db).parent

    def limits(self) -> KeapLimits:
        """``keap_limits`` parsed (a bad value raises ValueError naming SHIM_KEAP_LIMITS)."""
        try:
            return parse_keap_limits(self.keap_limits)
        except ValueError as exc:
            raise ValueError(f"SHIM_KEAP_LIMITS: {exc}") from None

    def to_env(self) -> dict[str, str]:
        """The ``SHIM_*`` variables that rebuild these settings in a worker process."""
        return {"SHIM_" + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}


def _convert(name: str, kind: object, raw: str) -> object:
    if kind in ("bool", bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    try:
        if kind in ("float", float):
            return parse_duration(raw)
        if kind in ("int", int):
            return parse_size(raw) if name == "max_body" else int(raw)
    except ValueError as exc:
        raise ValueError(f"SHIM_{name.upper()}: {exc}") from None
    return raw
