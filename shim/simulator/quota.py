"""Keap's per-credential throttles: a per-second spike limit, a rolling minute, a UTC day.

Usage is counted in per-second buckets (at most 60 kept), so a benchmark doing thousands of
calls a second costs constant memory. The minute window rolls (Apigee's quota policy rolls,
per Keap's 2020 migration notice); the day quota resets at 00:00 UTC. Rejected calls are not
counted. The usage headers are computed for every call, throttling enforced or not, so
keyshim can be tested on reading them without being throttled.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from shim.simulator.asgi import gateway_fault
from shim.simulator.config import DAY, SimConfig
from shim.simulator.state import Credential


@dataclass(frozen=True)
class Limits:
    spike: int
    minute: int
    day: int


def limits_for(credential: Credential, config: SimConfig) -> Limits:
    if credential.kind == "key":
        return Limits(config.key_spike_limit, config.key_minute_limit, config.key_day_limit)
    return Limits(config.oauth_spike_limit, config.oauth_minute_limit, config.oauth_day_limit)


@dataclass
class _Usage:
    seconds: deque[list[int]] = field(default_factory=deque)  # [second, count], oldest first
    day: int = 0
    day_end: float = 0.0

    def roll(self, now: float) -> None:
        while self.seconds and self.seconds[0][0] <= now - 60:
            self.seconds.popleft()
        if now >= self.day_end:
            self.day = 0
            self.day_end = (math.floor(now / DAY) + 1) * DAY

    def minute_used(self) -> int:
        return sum(count for _, count in self.seconds)

    def this_second(self, now: float) -> int:
        return self.seconds[-1][1] if self.seconds and self.seconds[-1][0] == int(now) else 0

    def record(self, now: float) -> None:
        if self.this_second(now):
            self.seconds[-1][1] += 1
        else:
            self.seconds.append([int(now), 1])
        self.day += 1


@dataclass(frozen=True)
class Verdict:
    """Whether a call may run; if not, the 429 body and Retry-After. Headers go on both."""

    allowed: bool
    headers: list[tuple[str, str]]
    body: dict[str, Any] | None = None
    retry_after: int = 0


class Quotas:
    def __init__(self) -> None:
        self._usage: dict[Credential, _Usage] = {}

    def check(self, credential: Credential, limits: Limits, now: float, enforce: bool) -> Verdict:
        """Count the call if it is allowed; refuse it if ``enforce`` and a limit is reached."""
        usage = self._usage.setdefault(credential, _Usage())
        usage.roll(now)
        if enforce:
            refusal = self._refusal(credential, usage, limits, now)
            if refusal is not None:
                body, wait = refusal
                headers = self._headers(usage, limits, now)
                headers.append(("Retry-After", str(wait)))
                return Verdict(False, headers, body, wait)
        usage.record(now)
        return Verdict(True, self._headers(usage, limits, now))

    def used(self) -> dict[str, dict[str, int]]:
        """Per-credential usage for stats (service keys shown by fingerprint only)."""
        return {
            _identifier(cred): {"minute": u.minute_used(), "day": u.day}
            for cred, u in self._usage.items()
        }

    @staticmethod
    def _refusal(
        credential: Credential, usage: _Usage, limits: Limits, now: float
    ) -> tuple[dict[str, Any], int] | None:
        if usage.this_second(now) >= limits.spike:
            text = (
                "Spike arrest violation. Allowed rate : MessageRate{messagesPerPeriod="
                f"{limits.spike}, periodInMicroseconds=1000000, maxBurstMessageCount=1.0}}"
            )
            return gateway_fault(text, "policies.ratelimit.SpikeArrestViolation"), _ceil(
                int(now) + 1 - now
            )
        if usage.minute_used() >= limits.minute:
            wait = usage.seconds[0][0] + 60 - now
        elif usage.day >= limits.day:
            wait = usage.day_end - now
        else:
            return None
        # Apigee's wording, double space and all (the quota name between them is empty).
        text = "Rate limit quota violation. Quota limit  exceeded. Identifier : "
        text += _identifier(credential)
        return gateway_fault(text, "policies.ratelimit.QuotaViolation"), _ceil(wait)

    @staticmethod
    def _headers(usage: _Usage, limits: Limits, now: float) -> list[tuple[str, str]]:
        minute = usage.minute_used()
        return [
            ("x-keap-product-spike-limit", f"{limits.spike}ps"),
            ("x-keap-product-throttle-limit", str(limits.minute)),
            ("x-keap-product-throttle-time-unit", "minute"),
            ("x-keap-product-throttle-interval", "1"),
            ("x-keap-product-throttle-available", str(max(0, limits.minute - minute))),
            ("x-keap-product-throttle-used", str(minute)),
            ("x-keap-product-quota-limit", str(limits.day)),
            ("x-keap-product-quota-time-unit", "day"),
            ("x-keap-product-quota-interval", "1"),
            ("x-keap-product-quota-available", str(max(0, limits.day - usage.day))),
            ("x-keap-product-quota-used", str(usage.day)),
            ("x-keap-product-quota-expiry-time", str(int(usage.day_end * 1000))),
        ]


def _ceil(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def _identifier(credential: Credential) -> str:
    """The client id, or a fingerprint of a service key (never the key itself)."""
    if credential.kind == "oauth":
        return credential.identifier
    return "key-" + hashlib.sha256(credential.identifier.encode()).hexdigest()[:12]
