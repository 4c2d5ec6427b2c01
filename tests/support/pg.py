"""PostgreSQL for tests: a fresh database per test on the cluster ``SHIM_TEST_PG`` names.

``tests/support/pg_cluster.sh start DIR`` makes a throwaway cluster (loopback only, password
authentication) and prints the URL to export as ``SHIM_TEST_PG``; ``.ci/run`` does exactly
that. Without it PostgreSQL tests skip with the reason, except in CI (``CI=true``), where a
missing database is a failure: CI must never pass by skipping the multi-host tests.
"""

from __future__ import annotations

import os
import secrets
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

CLUSTER_SCRIPT = Path(__file__).with_name("pg_cluster.sh")


def admin_url() -> str:
    """The test cluster's URL, or skip (fail in CI) with the reason."""
    url = os.environ.get("SHIM_TEST_PG", "")
    reason = ""
    if not url:
        reason = (
            "PostgreSQL tests need SHIM_TEST_PG: start a throwaway cluster with "
            "`tests/support/pg_cluster.sh start DIR` and export the URL it prints"
        )
    else:
        import psycopg

        try:
            psycopg.connect(url, connect_timeout=3).close()
        except psycopg.Error as exc:
            reason = f"PostgreSQL at SHIM_TEST_PG is not reachable: {str(exc).strip()[:200]}"
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def create_database(url: str) -> str:
    """A new empty database on the cluster; returns its URL."""
    import psycopg

    name = f"keyshim_t_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(url, name)


def drop_database(url: str, db_url: str) -> None:
    """Drop a test's database. The cluster is thrown away after the run, so a drop that still
    fails after a retry (a backend of the test's own pool not yet gone) is a warning, not a
    test error."""
    import psycopg

    name = urlsplit(db_url).path.lstrip("/")
    for attempt in range(2):
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.Error as exc:
            if attempt:
                warnings.warn(f"could not drop test database {name}: {exc}", stacklevel=2)
            else:
                time.sleep(0.5)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database for this test, dropped afterwards."""
    admin = admin_url()
    db = create_database(admin)
    try:
        yield db
    finally:
        drop_database(admin, db)
