"""Wiring at the edge: settings → master key → store, upstream client, chains, app.

The only builder: the one place that decides how the pieces are put together, so the CLI,
``shim serve`` and its workers, and the tests all build keyshim the same way. (Where the
master key comes from is :mod:`shim.store.master_key`.)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from shim.errors import CliError
from shim.keap.budget import Budget
from shim.keap.client import Transport, Upstream
from shim.oauth.alerts import Alerter
from shim.oauth.chains import Chains, make_owner
from shim.serve.admin.app import AdminApp
from shim.serve.app import KeyshimApp
from shim.serve.audit import AuditLog
from shim.serve.metrics import Metrics
from shim.serve.services import Services
from shim.settings import Settings
from shim.store import master_key
from shim.store.master_key import load as load_master_key
from shim.store.protocol import Store
from shim.store.recovery import RecoveryFiles, recovery_files
from shim.store.secrets import DecryptError, SecretBox
from shim.store.sqlite import SqliteStore


def init_files(settings: Settings) -> tuple[str, bool]:
    """Create the key file (mode 0600) if needed, then the database and its schema (a file
    0600 in a private directory, or the tables on a PostgreSQL server) and the master key's
    check value. Returns what the database is (password left out) and whether a key file was
    made."""
    settings.local_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fresh = master_key.needed(settings)  # written only once the database took it
    store = _connect(
        settings if fresh is None else replace(settings, secret_key=fresh), owner=None, listen=False
    )
    try:
        store.migrate()  # PostgreSQL: also the master key's check value; checks the key
    except DecryptError:
        if fresh is None:
            raise
        raise CliError(
            f"{describe_db(settings.db)} holds secrets sealed under a master key, and its key "
            f"file {settings.key_file} is missing: restore the key file (or set "
            "SHIM_SECRET_KEY); init makes no new key for an existing database"
        ) from None
    finally:
        store.close()
    created = fresh is not None and master_key.create_file(settings, fresh)
    return describe_db(settings.db), created


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


def _connect(settings: Settings, *, owner: str | None, listen: bool = True) -> Store:
    """The store the settings name: SQLite for a file, PostgreSQL for a URL (the only place
    that chooses; everything else sees the Store protocol)."""
    box = SecretBox(load_master_key(settings))
    if not settings.db_is_url:
        return SqliteStore(
            settings.db,
            box,
            reload=lambda: SecretBox(load_master_key(settings)),  # after rotate-master-key
        )
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
    return _migrated(_connect(settings, owner=owner, listen=listen))


def open_copy_target(settings: Settings) -> Store:
    """The target of ``shim store copy``: created and migrated, but without a check value of
    its own (the source's server secrets, check value included, are copied in)."""
    if not settings.db_is_url:
        Path(settings.db).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return _migrated(_connect(settings, owner=None, listen=False))


def _migrated(store: Store) -> Store:
    """``store`` with its schema current; closed again if migrating fails."""
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


def open_recovery(settings: Settings) -> RecoveryFiles:
    """The store's recovery files (sealed pairs the store refused), under the master key."""
    return recovery_files(settings, SecretBox(load_master_key(settings)))


def build_services(
    settings: Settings, transport: Transport | None = None, *, forward_http1: bool | None = None
) -> Services:
    """Everything a process serves with. ``transport`` and ``forward_http1`` are for tests (see
    ``Upstream``)."""
    owner = make_owner()
    store = open_store(settings, owner=owner)
    upstream = Upstream(
        transport=transport,
        forward_http1=forward_http1,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.upstream_timeout,
        token_timeout=settings.token_timeout,
        max_connections=settings.max_connections,
    )
    alerter = Alerter(settings.alert_webhook, upstream.post_json, keep=store.record_alert)
    chains = Chains(
        store,
        upstream,
        settings,
        owner=owner,
        on_event=alerter,
        recovery=open_recovery(settings),
    )
    metrics = Metrics()
    audit = AuditLog(
        store,
        retention=settings.audit_retention,
        clock=time.time,
        flush_interval=settings.audit_flush,
        max_buffer=settings.audit_buffer,
        on_drop=metrics.dropped_audit,
    )
    budget = Budget(
        share=settings.quota_share,
        processes=settings.workers,
        max_wait=settings.quota_wait,
        clock=time.time,
        limits=settings.limits(),
        on_refused=metrics.refused_by_budget,
    )
    return Services(settings, store, upstream, chains, alerter, audit, budget, metrics)


def create_app() -> KeyshimApp:
    """uvicorn factory (``shim.serve.runtime:create_app``): settings come from ``SHIM_*``."""
    settings = Settings.from_env()
    return KeyshimApp(settings, build_services)


def create_admin_app(settings: Settings) -> AdminApp:
    """The admin page alone, for its own port (``--admin-port``): with its own Services and
    no background refresher (the main server's scheduler does that)."""
    core = KeyshimApp(replace(settings, scheduler_interval=0), build_services)
    return AdminApp(settings, core.startup, on_shutdown=core.shutdown)


def token_client(settings: Settings) -> Upstream:
    """An upstream client for the token endpoint only (commands outside ``shim serve``)."""
    return Upstream(token_timeout=settings.token_timeout)


@asynccontextmanager
async def token_chains(settings: Settings, store: Store) -> AsyncIterator[Chains]:
    """Chains with the server's lock, journal and alerts, for refreshes outside a server.

    Alerts still queued when the block ends are sent before the client closes.
    """
    upstream = token_client(settings)
    alerter = Alerter(settings.alert_webhook, upstream.post_json, keep=store.record_alert)
    chains = Chains(store, upstream, settings, on_event=alerter, recovery=open_recovery(settings))
    try:
        yield chains
    finally:
        # Ctrl-C included: a grant in flight is answered and stored (or kept) before the exit.
        await chains.drain(settings.shutdown_grace)
        await alerter.drain()
        await upstream.aclose()


def run_server(settings: Settings, announce: Callable[[str], None]) -> None:
    """Run ``shim serve``: uvicorn with :func:`create_app` in every worker, until a signal.

    Checks the store first (a missing ``shim init`` fails here, clearly), then hands the
    settings to the workers through ``SHIM_*`` and calls ``announce`` with the address line.
    """
    from shim.serve import server

    open_store(settings).close()  # fail here, clearly, if init was not run
    os.environ.update(settings.to_env())  # worker processes rebuild Settings from these
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers are separate processes: their metrics meet in files under this directory,
        # which lives as long as this server (stale files would resurrect old counts). One
        # worker runs in this process, whose prometheus_client was imported before this
        # variable existed, so it keeps the single-process registry: no directory then.
        import tempfile

        metrics_dir = tempfile.mkdtemp(prefix="keyshim-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    scheme = "https" if settings.certfile else "http"
    announce(
        f"keyshim {scheme}://{settings.host}:{settings.port} workers={settings.workers} "
        f"db={describe_db(settings.db)}"
    )
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with this handler that
    # becomes a normal exit, so the cleanup below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    admin = None
    if settings.admin and settings.admin_port:
        admin = server.Beside(
            create_admin_app(settings), host=settings.admin_host, port=settings.admin_port,
            certfile=settings.certfile or None, keyfile=settings.keyfile or None,
        )  # fmt: skip
        admin.start()
        announce(f"keyshim admin {scheme}://{settings.admin_host}:{settings.admin_port}/admin")
    elif settings.admin:
        announce(f"keyshim admin {scheme}://{settings.host}:{settings.port}/admin")
    try:
        server.run(
            "shim.serve.runtime:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            certfile=settings.certfile or None,
            keyfile=settings.keyfile or None,
            max_clients=settings.max_clients,
            graceful_timeout=settings.shutdown_grace,
        )
    finally:
        if admin is not None:
            admin.stop()
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)
