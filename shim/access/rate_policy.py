"""Per-key call rates (``shim key issue --rate N/s|N/min|N/h|N/day``), shared by every process.
Pure.

A rate is exact in its own unit: ``10/h`` admits 10 calls in any hour, not 1 a minute. The
window is estimated from two fixed windows of the rate's unit (the previous one weighted by
how much of it still overlaps the last window), the usual trade of exactness for O(1) memory.
A window is named by its start in epoch seconds (its *slot*), so keys with different units
share one table of counts. The counts are the combined ones of every process and host, kept
in the store and checked-and-counted there in one atomic step (``Store.admit_call``), so the
limit is on the sum, not on each process's share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WINDOW = 60.0
_UNITS = {
    "s": 1, "sec": 1, "second": 1,
    "m": 60, "min": 60, "minute": 60,
    "h": 3600, "hour": 3600,
    "d": 86400, "day": 86400,
}  # fmt: skip
_NAMES = {1: "s", 60: "min", 3600: "h", 86400: "day"}


@dataclass(frozen=True)
class Rate:
    """At most ``count`` calls in any ``window`` seconds."""

    count: int
    window: float = WINDOW

    def __str__(self) -> str:
        return f"{self.count}/{_NAMES.get(int(self.window), f'{self.window:g}s')}"


def slot_of(now: float, window: float = WINDOW) -> int:
    """The start (epoch seconds) of the fixed window of length ``window`` holding ``now``."""
    return int(now // window) * int(window)


def minute_of(now: float) -> int:
    return slot_of(now, WINDOW)


def estimate(prev: int, cur: int, now: float, window: float = WINDOW) -> float:
    """Calls in the ``window`` seconds before ``now`` from the two fixed windows' counts."""
    elapsed = (now % window) / window
    return prev * (1.0 - elapsed) + cur


def retry_after(prev: int, cur: int, limit: int, now: float, window: float = WINDOW) -> float:
    """Seconds until the estimate drops below ``limit`` (bounded by the window)."""
    if cur >= limit:
        return window - (now % window)
    if prev == 0:
        return 1.0
    # prev * (1 - (t % W)/W) + cur < limit  =>  t % W > W * (1 - (limit - cur) / prev)
    needed = window * (1.0 - (limit - cur) / prev)
    return max(1.0, math.ceil(needed - (now % window)))


def prev_weight(now: float, window: float = WINDOW) -> float:
    """How much of the previous fixed window still overlaps the ``window`` before ``now``."""
    return 1.0 - (now % window) / window


@dataclass
class LocalWindow:
    """One key's calls as one process sees them, in the two fixed windows the estimate needs.

    What a process decides with while the store does not answer (``KeyRates``): it counts the
    calls it admitted, and learns the combined counts whenever the store refuses a call, so
    the rate still holds on this process, and on the sum for the keys the store had filled.
    """

    slot: int = 0
    prev: int = 0
    cur: int = 0

    def _roll(self, now: float, window: float) -> None:
        slot = slot_of(now, window)
        if slot != self.slot:
            self.prev = self.cur if slot - self.slot == int(window) else 0
            self.cur, self.slot = 0, slot

    def count(self, now: float, window: float) -> None:
        """One call admitted (by the store or here)."""
        self._roll(now, window)
        self.cur += 1

    def learn(self, prev: int, cur: int, now: float, window: float) -> None:
        """The combined counts the store answered with when it refused a call at ``now``."""
        self._roll(now, window)
        self.prev, self.cur = max(self.prev, prev), max(self.cur, cur)

    def admit(self, rate: Rate, now: float) -> tuple[int, int] | None:
        """Count the call if the estimate stays within the rate (the store's rule, see
        ``Store.admit_call``); None when admitted, else the (prev, cur) that refused it."""
        self._roll(now, rate.window)
        if self.prev * prev_weight(now, rate.window) + self.cur + 1 > rate.count:
            return self.prev, self.cur
        self.cur += 1
        return None


def parse_rate(text: str) -> Rate:
    """``60/min``, ``60/m``, ``60`` (per minute), ``2/s``, ``10/h``, ``500/day``."""
    value, _, unit = text.strip().partition("/")
    unit = unit.strip().lower() or "min"
    if not value.strip().isdigit() or unit not in _UNITS or int(value) <= 0:
        raise ValueError(f"not a rate: {text!r} (use e.g. 2/s, 60/min, 10/h or 500/day)")
    return Rate(int(value), float(_UNITS[unit]))
