"""The per-process objects the app needs, built at startup inside the event loop."""

from __future__ import annotations

from collections.abc import Callable

from shim.access.rate_enforcer import KeyRates
from shim.keap.budget import Budget
from shim.keap.client import Upstream
from shim.keap.gateway import Gateway
from shim.oauth.alerts import Alerter
from shim.oauth.chains import Chains
from shim.rest.route import Router
from shim.serve.audit import AuditLog
from shim.serve.metrics import Metrics
from shim.settings import Settings
from shim.store.protocol import Store


class Services:
    """What one process holds: the store, the chains, the gateway to Keap, the audit, the
    metrics, the key rates and the REST translation."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        upstream: Upstream,
        chains: Chains,
        alerter: Alerter,
        audit: AuditLog,
        budget: Budget,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.hmac_key = store.server_secret("key-hmac")
        self.upstream = upstream
        self.chains = chains
        self.alerter = alerter
        self.audit = audit
        self.rates = KeyRates(store, on_local=metrics.rate_decided_locally)
        self.budget = budget
        self.metrics = metrics
        chains.observer = metrics.refresh
        #: Every request to Keap passes here.
        self.gateway = Gateway(upstream, chains, budget, store, metrics)
        #: REST v2 translation (accounts routed rest or auto); its requests use the gateway.
        self.rest = Router(self.gateway, chains, store)
        audit.after_flush.append(self._share_budget)
        audit.after_flush.append(self.gateway.publish_quota)

    def _share_budget(self, now: float) -> None:
        """Publish this process's upstream calls per Keap credential and take in the other
        processes' and hosts' (off the hot path, after each audit flush)."""
        usage = self.budget.usage(now)
        minute = int(now // 60) * 60
        if usage:
            self.store.publish_rates(self.chains.owner, usage, minute - 120)
        credentials = self.budget.credentials()
        if credentials:
            self.budget.sync(self.store.others_rates(credentials, minute, self.chains.owner), now)


ServicesFactory = Callable[[Settings], Services]
