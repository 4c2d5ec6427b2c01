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
from shim.oauth.chains import Chains, make_owner
from shim.serve.app import KeyshimApp, Services
from shim.serve.audit import AuditLog
from shim.serve.metrics import Metrics
from shim.settings import Settings
from shim.store.protocol import Store
from shim.store.secrets import SecretBox, decode_master_key, encode_master_key, generate_master_key
from shim.store.sqlite import SqliteStore

#: The server secret whose sealed value doubles as the master key's check value: a wrong key
#: fails on opening the store, clearly, instead of on the first secret a command needs.
KEY_CHECK = "master-key-check"


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


def init_files(settings: Settings) -> tuple[str, bool]:
    """Create the key file (mode 0600) if needed, then the database and its schema (a file
    0600 in a private directory, or the tables on a PostgreSQL server) and the master key's
    check value. Returns what the database is (password left out) and whether a key file was
    made."""
    if settings.db_is_url:
        Path(settings.key_file).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    else:
        Path(settings.db).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = False
    if not settings.secret_key and not Path(settings.key_file).exists():
        fd = os.open(settings.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(encode_master_key(generate_master_key()) + "\n")
        created = True
    store = _connect(settings, SecretBox(load_master_key(settings)), owner=None, listen=False)
    try:
        store.migrate()
        store.server_secret(KEY_CHECK)
        where = describe_db(settings.db)
    finally:
        store.close()
    return where, created


def describe_db(db: str) -> str:
    """The database for messages: the file, or the server URL without its password."""
    if not Settings(db=db).db_is_url:
        return db
    from urllib.parse import urlsplit

    parts = urlsplit(db)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _connect(
    settings: Settings, box: SecretBox, *, owner: str | None, listen: bool = True
) -> Store:
    """The store the settings name: SQLite for a file, PostgreSQL for a URL (the only place
    that chooses; everything else sees the Store protocol)."""
    if not settings.db_is_url:
        return SqliteStore(settings.db, box)
    try:
        from shim.store.postgres import PostgresStore
    except ImportError:
        raise CliError(
            "a postgresql:// database needs the PostgreSQL driver: pip install 'keyshim[postgres]'"
        ) from None
    return PostgresStore(settings.db, box, owner=owner, listen=listen)


def open_store(settings: Settings, *, owner: str | None = None, listen: bool = True) -> Store:
    """Open (and migrate) the store with the master key, and check the key opens it."""
    if not settings.db_is_url and not Path(settings.db).exists():
        raise CliError(f"no keyshim database at {settings.db} (run `shim init`)")
    store = _connect(settings, SecretBox(load_master_key(settings)), owner=owner, listen=listen)
    try:
        store.migrate()
        store.server_secret(KEY_CHECK)
    except BaseException:
        store.close()
        raise
    return store


def open_copy_target(settings: Settings) -> Store:
    """The target of ``shim store copy``: created and migrated, but without a check value of
    its own (the source's server secrets, check value included, are copied in)."""
    if not settings.db_is_url:
        Path(settings.db).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = _connect(settings, SecretBox(load_master_key(settings)), owner=None, listen=False)
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


def build_services(settings: Settings, transport: Transport | None = None) -> Services:
    owner = make_owner()
    store = open_store(settings, owner=owner)
    upstream = Upstream(
        transport=transport,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.upstream_timeout,
        token_timeout=settings.token_timeout,
        max_connections=settings.max_connections,
    )
    alerter = Alerter(settings.alert_webhook, upstream.post_json)
    chains = Chains(store, upstream, settings, owner=owner, on_event=alerter)
    audit = AuditLog(
        store,
        retention=settings.audit_retention,
        clock=time.time,
        flush_interval=settings.audit_flush,
    )
    budget = Budget(
        share=settings.quota_share,
        processes=settings.workers,
        max_wait=settings.quota_wait,
        clock=time.time,
    )
    return Services(settings, store, upstream, chains, alerter, audit, budget, Metrics())


def create_app() -> KeyshimApp:
    """uvicorn factory (``shim.serve.runtime:create_app``): settings come from ``SHIM_*``."""
    settings = Settings.from_env()
    return KeyshimApp(settings, build_services)
