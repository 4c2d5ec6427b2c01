"""Enforcing per-key rates across processes and hosts: the edge around ``rate_policy``.

A call of a key with a rate costs one store round trip (``Store.admit_call``: the combined
count of every process and host is checked and bumped atomically), so the limit holds on the
sum even when every host starts at once. A key without a rate costs nothing here.

The round trip runs in worker threads of its own, never on the event loop: while another
process holds the SQLite write lock (or PostgreSQL is slow or gone) an admission can wait
for the whole busy timeout, and on the loop that wait would stall every call in flight.
A call waits ``ADMIT_DEADLINE`` for the store's answer. Without one, this process decides
from its own window of the key's calls (``rate_policy.LocalWindow``, the same rule), so the
rate still holds here, and stops asking the store until the admission it is waiting on
lands (one locked store ties up one thread, not one per call). Such an *episode* is logged
once when it starts and once when it ends, and each call decided here is counted
(``on_local``: ``keyshim_rate_local_decisions_total``). The calls admitted here that the
store never counted are added to the shared window when it answers again
(``Store.add_calls``), so the other processes see the key as spent as it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from shim.access.rate_policy import (
    LocalWindow,
    Rate,
    prev_weight,
    retry_after,
    slot_of,
)
from shim.errors import RateLimited
from shim.models import KeyRecord
from shim.store.offloop import Lane
from shim.store.protocol import Store

log = logging.getLogger(__name__)

#: How long a call waits for the store to admit it before this process decides alone. An
#: admission is one short write: far below this unless the store is locked or unreachable.
ADMIT_DEADLINE = 0.2
#: Threads for admissions: a second one keeps admissions going on PostgreSQL (a connection
#: per admission) while one waits; on SQLite they take turns on one connection anyway.
WORKERS = 2

Refusal = tuple[int, int] | None


class KeyRates:
    def __init__(
        self,
        store: Store,
        *,
        deadline: float = ADMIT_DEADLINE,
        on_local: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.deadline = deadline
        self.on_local = on_local
        self._lane = Lane("shim-rates", WORKERS)
        #: Each rated key's calls as this process saw them (keys are few: one per script).
        self._windows: dict[str, LocalWindow] = {}
        #: The admission the store has not answered in time; until it lands, calls are
        #: decided here without asking the store again.
        self._overdue: asyncio.Future[Refusal] | None = None
        #: Calls admitted here that the store never counted, per (key, slot, window).
        self._unshared: Counter[tuple[str, int, int]] = Counter()
        #: When the current episode began (None: the store answers), and its local decisions.
        self._episode: float | None = None
        self._decided = 0
        self._sharing: asyncio.Task[None] | None = None

    async def check(self, key: KeyRecord, now: float) -> None:
        """Admit the call or raise RateLimited (``[RateLimited]``, with when to retry)."""
        if key.rate_per_min is None:
            return
        rate = Rate(key.rate_per_min, key.rate_window or 60.0)
        window = self._windows.setdefault(key.id, LocalWindow())
        if self._overdue is not None:
            self._decide_here(key, rate, now, window, None, "did not answer in time")
            return
        admission = self._lane.start(
            self.store.admit_call,
            key.id,
            slot_of(now, rate.window),
            int(rate.window),
            rate.count,
            prev_weight(now, rate.window),
        )
        await asyncio.wait([admission], timeout=self.deadline)
        if not admission.done():
            self._overdue = admission
            admission.add_done_callback(self._landed)
            self._decide_here(key, rate, now, window, admission, "did not answer in time")
            return
        failed = admission.exception()
        if failed is not None:
            self._decide_here(key, rate, now, window, None, f"failed ({_describe(failed)})")
            return
        self._back()
        refused = admission.result()
        if refused is None:
            window.count(now, rate.window)
            return
        window.learn(*refused, now, rate.window)
        raise _limited(key, rate, refused, now)

    def _decide_here(
        self,
        key: KeyRecord,
        rate: Rate,
        now: float,
        window: LocalWindow,
        admission: asyncio.Future[Refusal] | None,
        reason: str,
    ) -> None:
        """Decide from this process's window. ``admission``: this call's own, still on its
        way to the store, which counts the call if it lands as admitted (a call refused here
        that the store then admits is counted there once too many: the safe side)."""
        if self._episode is None:
            self._episode, self._decided = time.monotonic(), 0
            log.warning(
                "key rates: the store %s (waited %.1fs); deciding rates on this process "
                "alone until it answers",
                reason,
                self.deadline,
            )
        self._decided += 1
        self.on_local()
        refused = window.admit(rate, now)
        if refused is not None:
            raise _limited(key, rate, refused, now)
        unshared = (key.id, slot_of(now, rate.window), int(rate.window))
        if admission is None:
            self._unshared[unshared] += 1
        else:
            admission.add_done_callback(lambda done: self._count_unless_stored(done, unshared))

    def _count_unless_stored(
        self, admission: asyncio.Future[Refusal], unshared: tuple[str, int, int]
    ) -> None:
        stored = not admission.cancelled() and admission.exception() is None
        if not (stored and admission.result() is None):
            self._unshared[unshared] += 1
        if stored:
            self._share()

    def _landed(self, admission: asyncio.Future[Refusal]) -> None:
        """The overdue admission is done: ask the store again from the next call on."""
        self._overdue = None
        if not admission.cancelled() and admission.exception() is None:
            self._back()

    def _back(self) -> None:
        """The store answers again: end the episode, and share what was decided here."""
        if self._episode is not None:
            log.warning(
                "key rates: the store answers again after %.1fs; %d calls were decided on "
                "this process alone",
                time.monotonic() - self._episode,
                self._decided,
            )
            self._episode = None
        self._share()

    def _share(self) -> None:
        """Add the calls admitted here to the shared window (in the background; what cannot
        be added now stays for the next time the store answers)."""
        if not self._unshared or self._episode is not None:
            return
        if self._sharing is not None and not self._sharing.done():
            return
        self._sharing = asyncio.ensure_future(self._add_unshared())

    async def _add_unshared(self) -> None:
        while self._unshared:
            (key_id, slot, window), count = self._unshared.popitem()
            try:
                await self._lane.start(self.store.add_calls, key_id, slot, window, count)
            except Exception as exc:
                self._unshared[key_id, slot, window] += count
                log.warning("key rates: could not share %d calls: %s", count, _describe(exc))
                return

    def close(self) -> None:
        """At shutdown: calls admitted here and not yet shared are dropped (they only weigh
        on the current window, and the store's own count is a floor of the true one)."""
        if self._sharing is not None:
            self._sharing.cancel()
        self._lane.close()


def _limited(key: KeyRecord, rate: Rate, refused: tuple[int, int], now: float) -> RateLimited:
    wait = retry_after(*refused, rate.count, now, rate.window)
    return RateLimited(f"Key {key.prefix} is over its rate of {rate}; retry in {wait:.0f}s")


def _describe(exc: BaseException | None) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160]
