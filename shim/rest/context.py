"""What a translation handler works with: the call's REST client and the process's caches.

``RestState`` lives as long as the process (one per ``Services``): page tokens per query,
each account's contact custom-field model, and when each account's XML-RPC endpoint was last
found down. ``Ctx`` is one call's view of it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from shim.rest.client import RestClient
from shim.rest.contact_map import CustomField, custom_fields
from shim.rest.listing import PageTokens
from shim.store.offloop import off_loop
from shim.store.protocol import Store

#: A custom-field name missing from the cached model triggers a re-read of the model, at most
#: this often per account (a misspelt field must not cost a request every call).
MODEL_RETRY = 10.0
#: Longest wait for the lock on a contact whose array fields are read, merged and written back.
RMW_WAIT = 10.0
#: Contact locks per account (see ``Ctx.lock``).
RMW_STRIPES = 64


@dataclass
class RestState:
    """Per-process state shared by every translated call."""

    tokens: PageTokens = field(default_factory=PageTokens)
    models: dict[str, tuple[float, dict[str, CustomField]]] = field(default_factory=dict)
    #: Account -> monotonic time until which XML-RPC counts as down (``auto`` route).
    down_until: dict[str, float] = field(default_factory=dict)
    #: (account, legacy invoice id) -> REST order id (commerce.py; order id != invoice id).
    orders: dict[tuple[str, int], str] = field(default_factory=dict)
    #: (account, order item id) -> REST order id (order_items.py: REST writes an item through
    #: its order, legacy names the item alone).
    order_items: dict[tuple[str, int], str] = field(default_factory=dict)


@dataclass
class Ctx:
    """One translated call: its REST client, the process's shared state, the store."""

    client: RestClient
    state: RestState
    store: Store
    owner: str
    clock: Callable[[], float] = time.time

    @property
    def account(self) -> str:
        return self.client.account.name

    async def custom(self, names: Iterable[str] = ()) -> dict[str, CustomField]:
        """The account's contact custom fields (``GET /contacts/model``), cached; re-read when
        a ``_Name`` in ``names`` is unknown (a field added since), at most every MODEL_RETRY."""
        cached = self.state.models.get(self.account)
        now = time.monotonic()
        missing = [n for n in names if n.startswith("_") and (cached is None or n not in cached[1])]
        if cached is not None and (not missing or now - cached[0] < MODEL_RETRY):
            return cached[1]
        model = await self.client.get("/contacts/model")
        fields = custom_fields(model if isinstance(model, dict) else {})
        self.state.models[self.account] = (now, fields)
        return fields

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        """Hold ``name`` across every keyshim process and host sharing the store.

        The wait is bounded (RMW_WAIT; a lock whose holder died is free at once). Names are
        spread over RMW_STRIPES locks per account, so the lock files and advisory-lock keys stay
        few however many contacts are written; two contacts sharing a stripe only take turns.
        """
        owner = f"{self.owner}:{secrets.token_hex(4)}"
        stripe = f"{name.rsplit(':', 1)[0]}:{zlib.crc32(name.encode()) % RMW_STRIPES}"
        deadline = time.monotonic() + RMW_WAIT
        held = await off_loop(self.store.try_lock, stripe, owner)
        while held is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            held = await off_loop(self.store.try_lock, stripe, owner)
        try:
            yield
        finally:
            if held is not None:
                await off_loop(held.release)
