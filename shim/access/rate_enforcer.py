"""Enforcing per-key rates across processes: the edge around the pure ``ratelimit`` module.

Other processes' counts are read from the store at most once a second per key; this process's
counts are published by the audit flusher. A key without a rate costs nothing here.
"""

from __future__ import annotations

import time

from shim.access.rate_policy import RateCounter, minute_of
from shim.errors import RateLimited
from shim.models import KeyRecord
from shim.store.protocol import Store

CACHE_SECONDS = 1.0


class KeyRates:
    def __init__(self, store: Store, owner: str) -> None:
        self.store = store
        self.owner = owner
        self.counter = RateCounter()
        self._others: dict[str, tuple[float, int, dict[int, int]]] = {}

    def check(self, key: KeyRecord, now: float) -> None:
        """Admit the call or raise RateLimited (``[RateLimited]``, with when to retry)."""
        if key.rate_per_min is None:
            return
        minute = minute_of(now)
        cached = self._others.get(key.id)
        tick = time.monotonic()
        if cached is None or cached[1] != minute or tick - cached[0] > CACHE_SECONDS:
            others = self.store.others_rates(key.id, (minute - 1, minute), self.owner)
            self._others[key.id] = (tick, minute, others)
        else:
            others = cached[2]
        wait = self.counter.admit(key.id, key.rate_per_min, now, others)
        if wait is not None:
            raise RateLimited(
                f"Key {key.prefix} is over its rate of {key.rate_per_min} calls a minute; "
                f"retry in {wait:.0f}s"
            )

    def publish(self, now: float) -> None:
        counts = self.counter.snapshot(now)
        if counts:
            self.store.publish_rates(self.owner, counts, minute_of(now) - 2)
