"""Wiring at the edge: settings → master key → store, upstream client, chains, app.

The only place that reads the key file and decides how the pieces are put together, so the
CLI, ``shim serve`` workers and the tests all build keyshim the same way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from shim.errors import CliError
from shim.keap.budget import Budget
from shim.keap.client import Transport, Upstream
from shim.oauth.alerts import Alerter
from shim.oauth.chains import Chains
from shim.serve.app import KeyshimApp, Services
from shim.serve.audit import AuditLog
from shim.serve.metrics import Metrics
from shim.settings import Settings
from shim.store.secrets import SecretBox, decode_master_key, encode_master_key, generate_master_key
from shim.store.sqlite import SqliteStore


def load_master_key(settings: Settings) -> bytes:
    """The master secret: ``SHIM_SECRET_KEY`` or the key file ``shim init`` made."""
    if settings.secret_key:
        try:
            return decode_master_key(settings.secret_key)
        except ValueError as exc:
            raise CliError(f"SHIM_SECRET_KEY: {exc}") from None
    path = Path(settings.key_file)
    if Path(settings.key_file + ".new").exists():
        raise CliError(
            f"{settings.key_file}.new exists: a master-key rotation was interrupted "
            "(see README: Rotating the master key)"
        )
    if not path.exists():
        raise CliError(f"no master key at {path} (run `shim init`, or set SHIM_SECRET_KEY)")
    try:
        return decode_master_key(path.read_text().strip())
    except ValueError as exc:
        raise CliError(f"{path}: {exc}") from None


def init_files(settings: Settings) -> tuple[Path, bool]:
    """Create the data directory, the key file (mode 0600) and the database (0600)."""
    db = Path(settings.db)
    db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = False
    if not settings.secret_key and not Path(settings.key_file).exists():
        fd = os.open(settings.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(encode_master_key(generate_master_key()) + "\n")
        created = True
    store = SqliteStore(settings.db, SecretBox(load_master_key(settings)))
    store.migrate()
    store.close()
    return db, created


def open_store(settings: Settings) -> SqliteStore:
    """Open (and migrate) the store with the master key."""
    if not Path(settings.db).exists():
        raise CliError(f"no keyshim database at {settings.db} (run `shim init`)")
    store = SqliteStore(settings.db, SecretBox(load_master_key(settings)))
    store.migrate()
    return store


def build_services(
    settings: Settings, transport: Transport | None = None, *, forward_http1: bool | None = None
) -> Services:
    """Everything a process serves with. ``transport`` and ``forward_http1`` are for tests (see
    ``Upstream``)."""
    store = open_store(settings)
    upstream = Upstream(
        transport=transport,
        forward_http1=forward_http1,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.upstream_timeout,
        token_timeout=settings.token_timeout,
        max_connections=settings.max_connections,
    )
    alerter = Alerter(settings.alert_webhook, upstream.post_json)
    chains = Chains(store, upstream, settings, on_event=alerter)
    audit = AuditLog(
        store,
        retention=settings.audit_retention,
        clock=time.time,
        flush_interval=settings.audit_flush,
    )
    budget = Budget(
        share=settings.quota_share / max(1, settings.workers),
        max_wait=settings.quota_wait,
        clock=time.time,
    )
    return Services(settings, store, upstream, chains, alerter, audit, budget, Metrics())


def create_app() -> KeyshimApp:
    """uvicorn factory (``shim.serve.runtime:create_app``): settings come from ``SHIM_*``."""
    settings = Settings.from_env()
    return KeyshimApp(settings, build_services)
