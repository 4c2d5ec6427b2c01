"""The key check of every call, in-process, with 100 and with 100,000 keys in the store.

The key path is what app.py runs per call: ``keys.key_id_of`` (shape and checksum),
``store.get_key`` (one SQLite read by primary key) and ``keys.verify`` (HMAC-SHA-256 of the
presented key, constant-time compare, expiry and revocation). Its cost should not depend on
how many keys there are.

The store remembers per-call reads until the database changes (``SqliteStore._cached``), so a
script that calls again with the same key skips the SQLite read. What could grow with the key
count is the read itself, so the headline figures are **uncached**: the remembered reads are
dropped before every lookup, as happens on the first call after any write by another process
(with several workers, their audit flushes do that about once a second). ``cached_us`` is the
check a script's repeat calls pay (a working set of 100 keys drawn from the store).

Keys are made with a fast non-cryptographic random source (``make_key`` takes it as a
parameter) and written in one transaction on a second connection to the store's database;
issuing 100,000 one by one with ``shim key issue`` would take many minutes and measure nothing
more.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from util import progress

if TYPE_CHECKING:
    from shim.access.keys import IssuedKey
    from shim.store.sqlite import SqliteStore

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class KeyCheckCost:
    """Mean microseconds per check, and its three steps timed on their own."""

    keys: int
    total_us: float
    key_id_us: float
    get_key_us: float
    verify_us: float
    cached_us: float


@dataclass
class _KeyStore:
    size: int
    store: SqliteStore
    hmac_key: bytes
    sample: list[str]  # presented keys, in lookup order


def measure(
    sizes: tuple[int, ...] = (100, 100_000), lookups: int = 20_000, batches: int = 10
) -> list[KeyCheckCost]:
    """One store per size. The lookups alternate between the stores in batches, so that a
    machine that gets busier or quieter meanwhile affects every size alike."""
    rng = random.Random(5)
    with tempfile.TemporaryDirectory(prefix="keyshim-keycheck-") as tmp:
        stores: list[_KeyStore] = []
        try:
            for size in sizes:
                started = time.perf_counter()
                stores.append(_make_store(Path(tmp) / f"keys-{size}.db", size, lookups, rng))
                took = time.perf_counter() - started
                progress(f"key check: store with {size:,} keys made in {took:.1f}s")
            for ks in stores:  # warm up: page cache, statement cache
                _time_checks(ks, ks.sample[:1000])
            totals = [0.0] * len(stores)
            per_batch = lookups // batches
            for b in range(batches):
                for i, ks in enumerate(stores):
                    totals[i] += _time_checks(ks, ks.sample[b * per_batch : (b + 1) * per_batch])
            return [
                KeyCheckCost(
                    ks.size,
                    total / (per_batch * batches) * 1e6,
                    *_time_steps(ks),
                    cached_us=_time_checks(ks, ks.sample[:100] * 50, cached=True) / 5000 * 1e6,
                )
                for ks, total in zip(stores, totals, strict=True)
            ]
        finally:
            for ks in stores:
                ks.store.close()


def _make_store(db: Path, size: int, lookups: int, rng: random.Random) -> _KeyStore:
    from shim.access import keys
    from shim.models import Account
    from shim.serve.runtime import init_files, open_store
    from shim.settings import Settings

    def random_b62(width: int) -> str:
        return "".join(rng.choices(ALPHABET, k=width))

    settings = Settings.from_env({}, db=str(db))
    init_files(settings)
    store = open_store(settings)
    store.add_account(Account(name="bench", kind="service_key", created_at=time.time()))
    hmac_key = store.server_secret("key-hmac")
    issued = [keys.make_key(hmac_key, random_b62=random_b62) for _ in range(size)]
    _bulk_insert(settings.db, issued)
    texts = [k.text for k in issued]
    return _KeyStore(size, store, hmac_key, [rng.choice(texts) for _ in range(lookups)])


def _bulk_insert(db: str, issued: list[IssuedKey]) -> None:
    now = time.time()
    rows = [
        (k.id, "bench", "bench", k.digest, k.prefix, now, None, None, None, "[]", None)
        for k in issued
    ]
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _time_checks(ks: _KeyStore, texts: list[str], *, cached: bool = False) -> float:
    """Seconds for the whole key path of app.py over ``texts``; unless ``cached``, every
    lookup reads SQLite (see the module docstring)."""
    from shim.access import keys

    store, hmac_key, now = ks.store, ks.hmac_key, time.time()
    forget = _forget(store, cached)
    started = time.perf_counter()
    for text in texts:
        key_id = keys.key_id_of(text)
        assert key_id is not None
        forget()
        keys.verify(store.get_key(key_id), hmac_key, text, now)
    return time.perf_counter() - started


def _forget(store: SqliteStore, cached: bool) -> Callable[[], None]:
    """What drops the store's remembered reads (a private dict: benchmarks only)."""
    return (lambda: None) if cached else store._reads.clear


def _time_steps(ks: _KeyStore) -> tuple[float, float, float]:
    """Mean microseconds of key_id_of, get_key and verify, each in a loop of its own."""
    from shim.access import keys

    now, n = time.time(), len(ks.sample)
    started = time.perf_counter()
    ids = [keys.key_id_of(text) or "" for text in ks.sample]
    key_id = time.perf_counter() - started
    forget = _forget(ks.store, cached=False)
    started = time.perf_counter()
    records = []
    for i in ids:
        forget()
        records.append(ks.store.get_key(i))
    get_key = time.perf_counter() - started
    started = time.perf_counter()
    for record, text in zip(records, ks.sample, strict=True):
        keys.verify(record, ks.hmac_key, text, now)
    verify = time.perf_counter() - started
    return key_id / n * 1e6, get_key / n * 1e6, verify / n * 1e6
