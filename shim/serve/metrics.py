"""Prometheus metrics: the only module that imports prometheus_client.

With ``shim serve --workers N`` every worker is its own process, so counters live in
prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by ``shim serve``) and
``/metrics`` sums them. Facts that are the same for every process (seconds until each access
token expires, Keap's quota figures) are read from the store when ``/metrics`` is scraped.

Label values are bounded: a method name is only used once the key was accepted (a hostile
caller cannot mint labels), and past ``MAX_METHODS`` distinct names the rest count as "other".
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _mp

from shim.models import CallRecord
from shim.oauth.health import Health

MAX_METHODS = 300
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_dir() is not None
        reg = self.registry
        self.calls = Counter(
            "keyshim_calls",
            "Calls by account, method and outcome",
            ["account", "method", "outcome"],
            registry=reg,
        )
        self.latency = Histogram(
            "keyshim_call_seconds", "Whole-call latency in keyshim", buckets=BUCKETS, registry=reg
        )
        self.upstream = Histogram(
            "keyshim_upstream_seconds",
            "Time from sending upstream to Keap's response headers",
            buckets=BUCKETS,
            registry=reg,
        )
        self.refreshes = Counter(
            "keyshim_refreshes",
            "Token refreshes by account and outcome",
            ["account", "outcome"],
            registry=reg,
        )
        self.in_flight = Gauge(
            "keyshim_calls_in_flight",
            "Calls being handled now",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.budget_wait = Counter(
            "keyshim_quota_wait_seconds",
            "Seconds calls waited for the upstream budget",
            registry=reg,
        )
        self.budget_refused = Counter(
            "keyshim_quota_refused",
            "Calls refused at once because their wait for the upstream budget was too long",
            registry=reg,
        )
        self.audit_dropped = Counter(
            "keyshim_audit_dropped",
            "Audit records dropped because the buffer was full (the store was unreachable)",
            registry=reg,
        )
        self.rate_local = Counter(
            "keyshim_rate_local_decisions",
            "Calls of keys with a rate decided by this process alone because the store did "
            "not answer in time (the limit then holds per process)",
            registry=reg,
        )
        self._methods: set[str] = set()

    def call(self, record: CallRecord) -> None:
        method = record.method if record.key_id is not None and record.method else "-"
        if method not in self._methods:
            if len(self._methods) >= MAX_METHODS:
                method = "other"
            else:
                self._methods.add(method)
        self.calls.labels(record.account or "-", method, record.outcome).inc()
        self.latency.observe(record.duration_ms / 1000.0)

    def observe_upstream(self, seconds: float) -> None:
        self.upstream.observe(seconds)

    def observe_budget_wait(self, seconds: float) -> None:
        self.budget_wait.inc(seconds)

    def refused_by_budget(self) -> None:
        self.budget_refused.inc()

    def dropped_audit(self) -> None:
        self.audit_dropped.inc()

    def rate_decided_locally(self) -> None:
        self.rate_local.inc()

    def refresh(self, account: str, outcome: str) -> None:
        self.refreshes.labels(account, outcome).inc()

    def render(self, healths: Iterable[Health], now: float | None = None) -> bytes:
        """The exposition text: this process's (or all workers') metrics plus store facts."""
        if self.multiprocess:
            registry = CollectorRegistry()
            _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            body = generate_latest(registry)
        else:
            body = generate_latest(self.registry)
        return body + _store_facts(healths, time.time() if now is None else now)


def _store_facts(healths: Iterable[Health], now: float) -> bytes:
    expiry = [
        "# HELP keyshim_access_token_expiry_seconds Seconds until the access token expires",
        "# TYPE keyshim_access_token_expiry_seconds gauge",
    ]
    state = [
        "# HELP keyshim_chain_usable 1 when the account's credential is usable",
        "# TYPE keyshim_chain_usable gauge",
    ]
    quota = [
        "# HELP keyshim_quota_remaining Keap's latest x-keap-product-*-available figures",
        "# TYPE keyshim_quota_remaining gauge",
    ]
    for h in healths:
        name = _label(h.account)
        state.append(f'keyshim_chain_usable{{account="{name}"}} {1 if h.usable else 0}')
        expires = h.facts.get("access_token_expires_at")
        if isinstance(expires, int | float):
            expiry.append(
                f'keyshim_access_token_expiry_seconds{{account="{name}"}} {expires - now:.1f}'
            )
        figures = h.facts.get("keap_quota") or {}
        for kind in ("quota", "throttle"):
            value = figures.get(f"{kind}-available")
            if value is not None and str(value).lstrip("-").isdigit():
                quota.append(f'keyshim_quota_remaining{{account="{name}",kind="{kind}"}} {value}')
    return ("\n".join(expiry + state + quota) + "\n").encode()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
