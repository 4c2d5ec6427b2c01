"""Per-key call rates (``shim key issue --rate N/min``): the arithmetic. Pure.

A sliding window estimated from two fixed one-minute windows (the previous minute weighted by
how much of it still overlaps the last 60 seconds), the usual trade of exactness for O(1)
memory. The counts themselves are the combined ones of every process and host, kept in the
store and checked-and-counted there in one atomic step (``Store.admit_call``), so the limit is
on the sum, not on each process's share.
"""

from __future__ import annotations

import math

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


def prev_weight(now: float) -> float:
    """How much of the previous minute still overlaps the 60 seconds before ``now``."""
    return 1.0 - (now % WINDOW) / WINDOW


def parse_rate(text: str) -> int:
    """``60/min``, ``60/m``, ``60`` (per minute), ``2/s`` (converted to per minute)."""
    value, _, unit = text.strip().partition("/")
    unit = unit.strip().lower() or "min"
    per = {"min": 1, "m": 1, "minute": 1, "s": 60, "sec": 60, "second": 60, "h": 1 / 60}
    if not value.strip().isdigit() or unit not in per or int(value) <= 0:
        raise ValueError(f"not a rate: {text!r} (use e.g. 60/min or 2/s)")
    return max(1, int(int(value) * per[unit]))
