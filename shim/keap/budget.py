"""The upstream quota budget: smooth bursts by waiting instead of collecting 429s.

Keap limits each OAuth client to about 25 calls a second and 1,500 a minute across every app it
serves, and each Service Account Key / PAT to 10 a second and 240 a minute (the default of
``SHIM_KEAP_LIMITS``, which can change them per kind or turn them off). The per-second
limit is a spike arrest (calls evenly spaced, no bursts). keyshim keeps two
token buckets per upstream credential and makes a call wait (up to ``SHIM_QUOTA_WAIT``) for its
turn; a call that would wait longer gets ``[Throttled]`` at once, without reaching Keap. After a
429 the credential is paused for its ``Retry-After``.

Several processes and hosts share one Keap client's limits, and the combined count is what is
limited, without a store round trip on the hot path: each process counts its own upstream calls
per credential and minute, publishes them through the store once a second (off the hot path,
with the audit flush) and learns the others' counts and how many others are sending
(:meth:`Budget.sync`). A call is held back when this minute's combined count reaches the
per-minute limit, and the per-second spike allowance is split evenly among the processes that
are sending (before the first sync: among this host's workers). The figures are at most about a
second old. The buckets are pure arithmetic on ``now``; only ``acquire`` sleeps.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from shim.errors import UpstreamThrottled
from shim.models import Account
from shim.settings import DEFAULT_KEAP_LIMITS, KeapLimits, parse_keap_limits

#: (calls a second, calls a minute) per credential kind, from docs/keap.md#quotas; None: not
#: limited.
KEAP_LIMITS: KeapLimits = parse_keap_limits(DEFAULT_KEAP_LIMITS)


@dataclass
class Bucket:
    """A token bucket: ``rate`` tokens a second, holding at most ``capacity``."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    def wait_for_one(self, now: float) -> float:
        """Seconds until one token is available (0 if now), after refilling to ``now``."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


@dataclass
class Credential:
    buckets: tuple[Bucket, ...]
    #: Keap's per-minute limit (this keyshim's share of it), None when not limited.
    per_minute: float | None
    spike: Bucket | None = None
    paused_until: float = 0.0
    #: This process's upstream calls per minute (this minute and the last).
    used: dict[int, int] = field(default_factory=dict)
    #: The other processes' calls this minute, as of the last sync, and for which minute.
    others: tuple[int, int] = (0, 0)
    #: How many processes share the spike allowance (this one included).
    processes: int = 1


def _minute(now: float) -> int:
    """The start (epoch seconds) of the minute holding ``now``: how usage is published."""
    return int(now // 60) * 60


def credential_id(account: Account) -> str:
    """What Keap counts against: the OAuth client id, or a fingerprint of the service key."""
    if account.kind == "oauth":
        return f"oauth:{account.client_id}"
    digest = hashlib.sha256((account.service_key or "").encode()).hexdigest()[:12]
    return f"key:{digest}"


class Budget:
    def __init__(
        self,
        *,
        share: float,
        max_wait: float,
        processes: int = 1,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        limits: Mapping[str, tuple[float | None, float | None]] = KEAP_LIMITS,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.share = share
        self.processes = max(1, processes)
        self.max_wait = max_wait
        self.clock = clock
        self.sleep = sleep
        self.limits = limits
        self._credentials: dict[str, Credential] = {}
        #: Called for each call refused at once (its wait would exceed ``max_wait``; a metric).
        self.on_refused = on_refused

    def _credential(self, account: Account, now: float) -> Credential:
        cid = credential_id(account)
        cred = self._credentials.get(cid)
        if cred is None:
            per_second, per_minute = self.limits[account.kind]
            spike = None
            buckets = []
            if per_second is not None:
                # Keap's spike limit is an Apigee SpikeArrest: it admits one call every 1/rate
                # seconds and no bursts, so the per-second bucket holds a single token. It is
                # split among the processes sending (see ``sync``).
                spike = Bucket(per_second * self.share / self.processes, 1.0, 1.0, now)
                buckets.append(spike)
            minute = None if per_minute is None else per_minute * self.share
            if minute is not None:
                buckets.append(Bucket(minute / 60.0, max(1.0, minute), max(1.0, minute), now))
            cred = self._credentials[cid] = Credential(
                tuple(buckets), minute, spike=spike, processes=self.processes
            )
        return cred

    def _minute_wait(self, cred: Credential, now: float) -> float:
        """Seconds until the combined count of this minute is below the per-minute limit.

        Alone, the minute bucket paces this process; once others are sending on the same
        credential, their calls this minute count too."""
        minute = _minute(now)
        others = cred.others[1] if cred.others[0] == minute else 0
        if cred.per_minute is None or others == 0:
            return 0.0
        if cred.used.get(minute, 0) + others < cred.per_minute:
            return 0.0
        return 60.0 - now % 60.0

    def usage(self, now: float) -> dict[tuple[str, int], int]:
        """This process's calls per (credential, minute start), to publish; forgets old ones."""
        minute = _minute(now)
        out = {}
        for cid, cred in self._credentials.items():
            cred.used = {m: n for m, n in cred.used.items() if m >= minute - 60}
            out.update({(cid, m): n for m, n in cred.used.items()})
        return out

    def credentials(self) -> list[str]:
        return list(self._credentials)

    def sync(self, others: Mapping[str, tuple[int, int]], now: float) -> None:
        """Take in the other processes' published figures: per credential, their calls this
        minute and how many of them are sending. The spike allowance is re-split among the
        processes sending now."""
        minute = _minute(now)
        for cid, cred in self._credentials.items():
            count, peers = others.get(cid, (0, 0))
            cred.others = (minute, count)
            processes = max(1, peers + 1)
            if processes != cred.processes:
                if cred.spike is not None:
                    cred.spike.rate = cred.spike.rate * cred.processes / processes
                cred.processes = processes

    def reserve(self, account: Account, now: float) -> float:
        """Take a slot for one upstream request; return how long to wait before sending it.

        Raises UpstreamThrottled when the wait would exceed ``max_wait``.
        """
        cred = self._credential(account, now)
        wait = max(
            [
                cred.paused_until - now,
                self._minute_wait(cred, now),
                *(b.wait_for_one(now) for b in cred.buckets),
            ]
        )
        if wait > self.max_wait:
            self.on_refused()
            raise UpstreamThrottled(
                f"keyshim is holding calls back to stay within Keap's rate limits for "
                f"{account.name}; retry after {wait:.0f}s",
                retry_after=wait,
            )
        for b in cred.buckets:
            b.take()
        minute = _minute(now + max(0.0, wait))
        cred.used[minute] = cred.used.get(minute, 0) + 1
        return max(0.0, wait)

    async def acquire(self, account: Account) -> None:
        wait = self.reserve(account, self.clock())
        if wait > 0:
            await self.sleep(wait)

    def pause(self, account: Account, retry_after: float | None) -> None:
        """Keap answered 429: hold this credential's calls for ``Retry-After`` (default 1s)."""
        now = self.clock()
        cred = self._credential(account, now)
        cred.paused_until = max(cred.paused_until, now + (retry_after or 1.0))


QUOTA_PREFIXES = ("x-keap-product-quota-", "x-keap-product-throttle-")


def quota_figures(headers: Mapping[str, str]) -> dict[str, str]:
    """Keap's quota and throttle headers of one answer, by short name (``quota-available``)."""
    out = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(QUOTA_PREFIXES):
            out[lower.removeprefix("x-keap-product-")] = value
    return out
