"""Store work from the event loop runs here: in a worker thread, never on the loop itself.

Store methods are synchronous (``sqlite3``, ``psycopg``) and may wait: SQLite's busy timeout
while another process holds the write lock, PostgreSQL's pool or a slow server. Run on the
loop, that wait stalls every call in flight, even ones that need nothing from the store. So
the background work (scheduler, refreshes, recovery write-back, alerts) awaits ``off_loop``
instead. The per-call hot path (a cached key, account and token) makes no store call at all
beyond the stores' own in-memory caches, and takes no thread hop.

The threads are a small pool of their own, so store work waiting on a lock never takes the
default executor's threads from other work (large request bodies are parsed there).

A store call, once started, is finished before its caller moves on: a cancelled caller waits
for the call (bounded by the store's own timeouts) and then stops as asked. Otherwise a
cancelled refresh could release its lock while its journal write is still on its way.
Thread safety: SqliteStore serializes each method on its lock and connections; PostgresStore
takes a pooled connection per method.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from shim.store.protocol import UNREAD, Unread

P = ParamSpec("P")
T = TypeVar("T")
A = TypeVar("A")

#: Threads for store work: a refresh, the scheduler and a write-back may wait at once.
WORKERS = 4

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="shim-store")
        return _pool


def _submit(
    pool: ThreadPoolExecutor, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> asyncio.Future[T]:
    """``fn(*args, **kwargs)`` in ``pool``, with the caller's context, as a loop future."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args, **kwargs)
    return asyncio.get_running_loop().run_in_executor(pool, call)


async def off_loop(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in a store worker thread; the loop serves on meanwhile."""
    future = _submit(_executor(), fn, *args, **kwargs)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # Finish the call first (see the module's doc), then stop as asked.
        while not future.done():
            try:
                await asyncio.wait([future])
            except asyncio.CancelledError:
                continue
        if not future.cancelled():
            future.exception()  # seen: its failure is the caller's to ignore now
        raise


async def peek_or_read(peek: Callable[[A], T | Unread], read: Callable[[A], T], arg: A) -> T:
    """``peek(arg)`` when the store can answer it without waiting (a key or a generation the
    per-call cache holds: no thread hop), else ``read(arg)`` off the loop."""
    found = peek(arg)
    if found is UNREAD:
        return await off_loop(read, arg)
    return found


class Lane:
    """Threads of their own for one kind of store work (rate admissions, health probes, the
    admin page), so that work waiting on a locked store never takes the threads the
    background work (refreshes) needs, and the background work never delays it.

    ``start`` hands back a future the caller may stop waiting for: unlike ``off_loop``, the
    work goes on, and its result is the future's whenever it lands."""

    def __init__(self, name: str, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    def start(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
        return _submit(self._pool, fn, *args, **kwargs)

    def close(self) -> None:
        """No new work; work under way finishes on its own (bounded by the store's timeouts)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
