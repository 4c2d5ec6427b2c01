"""Per-key call rates (``shim key issue --rate N/min``), shared by every process. Pure.

A sliding window estimated from two fixed one-minute windows (the previous minute weighted by
how much of it still overlaps the last 60 seconds), the usual trade of exactness for O(1)
memory. Each process counts its own admitted calls exactly and publishes them through the
store about once a second; the counts of the other processes are read at most once a second
per key. So the limit holds across workers and hosts to within about one second of traffic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

WINDOW = 60.0


def minute_of(now: float) -> int:
    return int(now // WINDOW)


def estimate(prev: int, cur: int, now: float) -> float:
    """Calls in the 60 seconds before ``now`` from the two fixed windows' counts."""
    elapsed = (now % WINDOW) / WINDOW
    return prev * (1.0 - elapsed) + cur


def retry_after(prev: int, cur: int, limit: int, now: float) -> float:
    """Seconds until the estimate drops below ``limit`` (bounded by the window)."""
    if cur >= limit:
        return WINDOW - (now % WINDOW)
    if prev == 0:
        return 1.0
    # prev * (1 - (t % W)/W) + cur < limit  =>  t % W > W * (1 - (limit - cur) / prev)
    needed = WINDOW * (1.0 - (limit - cur) / prev)
    return max(1.0, math.ceil(needed - (now % WINDOW)))


class RateCounter:
    """This process's admitted calls per key and minute (only the last two minutes kept)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}

    def own(self, key_id: str, minute: int) -> tuple[int, int]:
        return self.counts.get((key_id, minute - 1), 0), self.counts.get((key_id, minute), 0)

    def admit(self, key_id: str, limit: int, now: float, others: Mapping[int, int]) -> float | None:
        """Count the call and return None, or return seconds to wait if over ``limit``."""
        minute = minute_of(now)
        own_prev, own_cur = self.own(key_id, minute)
        prev = own_prev + others.get(minute - 1, 0)
        cur = own_cur + others.get(minute, 0)
        if estimate(prev, cur, now) + 1 > limit:
            return retry_after(prev, cur, limit, now)
        self.counts[(key_id, minute)] = own_cur + 1
        return None

    def snapshot(self, now: float) -> dict[tuple[str, int], int]:
        """The counts to publish; forgets minutes that no longer matter."""
        minute = minute_of(now)
        self.counts = {k: v for k, v in self.counts.items() if k[1] >= minute - 1}
        return dict(self.counts)


def parse_rate(text: str) -> int:
    """``60/min``, ``60/m``, ``60`` (per minute), ``2/s`` (converted to per minute)."""
    value, _, unit = text.strip().partition("/")
    unit = unit.strip().lower() or "min"
    per = {"min": 1, "m": 1, "minute": 1, "s": 60, "sec": 60, "second": 60, "h": 1 / 60}
    if not value.strip().isdigit() or unit not in per or int(value) <= 0:
        raise ValueError(f"not a rate: {text!r} (use e.g. 60/min or 2/s)")
    return max(1, int(int(value) * per[unit]))
