"""Enforcing per-key rates across processes and hosts: the edge around ``rate_policy``.

A call of a key with a rate costs one store round trip (``Store.admit_call``: the combined
count of every process and host is checked and bumped atomically), so the limit holds on the
sum even when every host starts at once. A key without a rate costs nothing here.
"""

from __future__ import annotations

from shim.access.rate_policy import Rate, prev_weight, retry_after, slot_of
from shim.errors import RateLimited
from shim.models import KeyRecord
from shim.store.protocol import Store


class KeyRates:
    def __init__(self, store: Store) -> None:
        self.store = store

    def check(self, key: KeyRecord, now: float) -> None:
        """Admit the call or raise RateLimited (``[RateLimited]``, with when to retry)."""
        if key.rate_per_min is None:
            return
        rate = Rate(key.rate_per_min, key.rate_window or 60.0)
        window = int(rate.window)
        refused = self.store.admit_call(
            key.id, slot_of(now, rate.window), window, rate.count, prev_weight(now, rate.window)
        )
        if refused is not None:
            wait = retry_after(*refused, rate.count, now, rate.window)
            raise RateLimited(f"Key {key.prefix} is over its rate of {rate}; retry in {wait:.0f}s")
