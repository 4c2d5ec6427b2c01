"""Enforcing per-key rates across processes and hosts: the edge around ``ratelimit``.

A call of a key with a rate costs one store round trip (``Store.admit_call``: the combined
count of every process and host is checked and bumped atomically), so the limit holds on the
sum even when every host starts at once. A key without a rate costs nothing here.
"""

from __future__ import annotations

from shim.access.rate_policy import minute_of, prev_weight, retry_after
from shim.errors import RateLimited
from shim.models import KeyRecord
from shim.store.protocol import Store


class KeyRates:
    def __init__(self, store: Store) -> None:
        self.store = store

    def check(self, key: KeyRecord, now: float) -> None:
        """Admit the call or raise RateLimited (``[RateLimited]``, with when to retry)."""
        limit = key.rate_per_min
        if limit is None:
            return
        refused = self.store.admit_call(key.id, minute_of(now), limit, prev_weight(now))
        if refused is not None:
            wait = retry_after(*refused, limit, now)
            raise RateLimited(
                f"Key {key.prefix} is over its rate of {limit} calls a minute; retry in {wait:.0f}s"
            )
