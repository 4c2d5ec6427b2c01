"""The audit trail: every call recorded, written off the hot path in batches.

A call only appends a small record to memory; a background task writes the batch (and the
keys' last-used times) in one transaction every ``flush_interval`` seconds, in a worker thread
so SQLite never blocks the event loop. A flush that fails (a busy or unreachable database)
keeps its records for the next one. The buffer is bounded (``SHIM_AUDIT_BUFFER``): if the store
stays unwritable long enough for it to fill, the oldest records are dropped, and every drop is
counted (``on_drop``: ``keyshim_audit_dropped_total``; ``dropped``: ``/healthz``) and logged,
rather than memory growing without end.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import deque
from collections.abc import Callable

from shim.models import CallRecord
from shim.rest.judging import table_method
from shim.store.protocol import Store
from shim.xmlrpc import Value

log = logging.getLogger("shim.serve.audit")

_FAULT_TAG = re.compile(
    rb"<fault>.*?<name>\s*faultString\s*</name>\s*<value>\s*(?:<string>)?\s*\[(\w{1,64})\]",
    re.DOTALL,
)
PRUNE_EVERY = 3600.0
#: Longest table name recorded (legacy table names are short; a hostile one is cut).
TABLE_NAME_MAX = 64


def table_of(method: str, params: list[Value]) -> str | None:
    """The table a DataService table call names (first argument after the key), else None."""
    if table_method(method) is None or len(params) < 2 or not isinstance(params[1], str):
        return None
    return params[1][:TABLE_NAME_MAX]


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
        self.max_buffer = max_buffer
        self._records: deque[CallRecord] = deque()
        self._touched: dict[str, float] = {}
        self._last_prune = 0.0
        #: Calls add records on the event loop while a flush runs in a worker thread.
        self._lock = threading.Lock()
        #: Called for each record dropped from a full buffer (a metric).
        self.on_drop = on_drop
        #: Records dropped from a full buffer since start.
        self.dropped = 0
        #: Dropped records not yet added to the store's persisted total (``shim status``).
        self._drops_unsaved = 0
        self._failing = False
        #: Called after each flush with ``now`` (the shared rate counters publish here).
        self.after_flush: list[Callable[[float], None]] = []

    @property
    def buffered(self) -> int:
        return len(self._records)

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)
            if record.key_id is not None:
                self._touched[record.key_id] = record.at
            over = len(self._records) - self.max_buffer
            for _ in range(over):
                self._records.popleft()
        if over > 0:
            self._drop(over)

    def _drop(self, count: int) -> None:
        if not self.dropped:
            log.error(
                "audit buffer full (%d records; SHIM_AUDIT_BUFFER): dropping the oldest records",
                self.max_buffer,
            )
        self.dropped += count
        with self._lock:
            self._drops_unsaved += count
        for _ in range(count):
            self.on_drop()

    def _keep(self, records: list[CallRecord], touched: dict[str, float]) -> None:
        """Put what a failed flush took back in front of what came meanwhile (newest kept)."""
        with self._lock:
            self._records.extendleft(reversed(records))
            for key_id, at in touched.items():
                self._touched[key_id] = max(at, self._touched.get(key_id, at))
            over = len(self._records) - self.max_buffer
            for _ in range(over):
                self._records.popleft()
        if over > 0:
            self._drop(over)

    def flush_now(self) -> int:
        """Write what is buffered (synchronously: shutdown and tests). What cannot be written
        now stays buffered for the next flush."""
        with self._lock:
            records, self._records = list(self._records), deque()
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
        except Exception as exc:  # the audit must never take calls down with it
            self._keep(records, touched)
            self._failed(
                f"could not write {len(records)} audit records (kept for the next try)", exc
            )
            return 0
        try:
            if touched:
                self.store.touch_keys(touched)
            if self.retention > 0 and now - self._last_prune > PRUNE_EVERY:
                self._last_prune = now
                pruned = self.store.prune_calls(now - self.retention)
                if pruned:
                    log.info("pruned %d audit records older than the retention", pruned)
        except Exception as exc:
            self._keep([], touched)
            self._failed("could not write keys' last-used times (kept for the next try)", exc)
            return len(records)
        self._save_drops()
        if self._failing:
            self._failing = False
            log.info("audit records are being written again")
        return len(records)

    def _save_drops(self) -> None:
        """Add the drops since the last flush to the store's total (kept for the next try)."""
        with self._lock:
            count, self._drops_unsaved = self._drops_unsaved, 0
        if not count:
            return
        try:
            self.store.add_audit_dropped(count)
        except Exception as exc:
            with self._lock:
                self._drops_unsaved += count
            self._failed("could not record the count of dropped audit records", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        """Log a failure streak once in full, then briefly (a busy database fails every flush)."""
        if self._failing:
            log.warning("%s: %s", what, exc)
        else:
            self._failing = True
            log.exception("%s", what)

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.flush_interval)
                await asyncio.to_thread(self.flush_now)
        finally:
            self.flush_now()
