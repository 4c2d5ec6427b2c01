"""Enforcing per-key rates across processes: the edge around the pure ``rate_policy`` module.

Other processes' counts are read from the store at most once a second per key; this process's
counts are published by the audit flusher. A key without a rate costs nothing here.
"""

from __future__ import annotations

import time

from shim.access.rate_policy import KEEP, Rate, RateCounter, slot_of
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
        rate = Rate(key.rate_per_min, key.rate_window or 60.0)
        slot = slot_of(now, rate.window)
        cached = self._others.get(key.id)
        tick = time.monotonic()
        if cached is None or cached[1] != slot or tick - cached[0] > CACHE_SECONDS:
            slots = (slot - int(rate.window), slot)
            others = self.store.others_rates(key.id, slots, self.owner)
            self._others[key.id] = (tick, slot, others)
        else:
            others = cached[2]
        wait = self.counter.admit(key.id, rate.count, now, others, rate.window)
        if wait is not None:
            raise RateLimited(f"Key {key.prefix} is over its rate of {rate}; retry in {wait:.0f}s")

    def publish(self, now: float) -> None:
        counts = self.counter.snapshot(now)
        if counts:
            self.store.publish_rates(self.owner, counts, int(now) - KEEP)
