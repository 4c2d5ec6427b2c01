"""The audit trail: every call recorded, written off the hot path in batches.

A call only appends a small record to memory; a background task writes the batch (and the
keys' last-used times) in one transaction every ``flush_interval`` seconds, in a worker thread
so SQLite never blocks the event loop. The buffer is bounded: if the store is unreachable for a
long time the oldest records are dropped (``on_drop`` counts them: ``keyshim_audit_dropped_total``)
rather than memory growing without end.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable

from shim.models import CallRecord
from shim.store.protocol import Store

log = logging.getLogger("shim.serve.audit")

_FAULT_TAG = re.compile(
    rb"<fault>.*?<name>\s*faultString\s*</name>\s*<value>\s*(?:<string>)?\s*\[(\w{1,64})\]",
    re.DOTALL,
)
PRUNE_EVERY = 3600.0


def fault_tag(head: bytes) -> str | None:
    """The ``[Tag]`` of a fault response from its first bytes, or None for a normal answer.

    Only the head of a streamed answer is looked at: faults are small and come first.
    """
    if b"<fault>" not in head:
        return None
    m = _FAULT_TAG.search(head)
    return m.group(1).decode("ascii") if m else "Fault"


class AuditLog:
    def __init__(
        self,
        store: Store,
        *,
        retention: float,
        clock: Callable[[], float],
        flush_interval: float = 1.0,
        max_buffer: int = 50_000,
        on_drop: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.retention = retention
        self.clock = clock
        self.flush_interval = flush_interval
        self._records: deque[CallRecord] = deque(maxlen=max_buffer)
        self._touched: dict[str, float] = {}
        self._last_prune = 0.0
        #: Called for each record dropped from a full buffer (a metric).
        self.on_drop = on_drop
        #: Called after each flush with ``now`` (the shared rate counters publish here).
        self.after_flush: list[Callable[[float], None]] = []

    def add(self, record: CallRecord) -> None:
        if len(self._records) == self._records.maxlen:
            self.on_drop()
        self._records.append(record)
        if record.key_id is not None:
            self._touched[record.key_id] = record.at

    def flush_now(self) -> int:
        """Write what is buffered (synchronously: shutdown and tests)."""
        records, self._records = list(self._records), deque(maxlen=self._records.maxlen)
        touched, self._touched = self._touched, {}
        now = self.clock()
        for hook in self.after_flush:
            try:
                hook(now)
            except Exception:
                log.exception("after-flush hook failed")
        if not records and not touched:
            return 0
        try:
            self.store.record_calls(records)
            if touched:
                self.store.touch_keys(touched)
        except Exception:  # the audit must never take calls down with it
            log.exception("could not write %d audit records", len(records))
            return 0
        if self.retention > 0 and now - self._last_prune > PRUNE_EVERY:
            self._last_prune = now
            pruned = self.store.prune_calls(now - self.retention)
            if pruned:
                log.info("pruned %d audit records older than the retention", pruned)
        return len(records)

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.flush_interval)
                await asyncio.to_thread(self.flush_now)
        finally:
            self.flush_now()
