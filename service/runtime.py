"""Everything one payrelay process runs on, built once from the settings: the store, the
adapters, the payment service, the metrics and the background workers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.registry import build_adapters
from service import store as store_module
from service.expiry import ExpirySweeper
from service.metrics import Metrics
from service.outbox import OutboxSender
from service.payments import Payments
from service.refunds import RefundSweeper
from service.settings import Settings
from service.store import Store
from service.workers import IDLE_SECONDS, Worker, WorkerPool


class Runtime:
    def __init__(self, settings: Settings, *, redis: Any = None, idle_seconds: float = IDLE_SECONDS,
                 worker_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """``idle_seconds``: how long an idle worker waits before looking again;
        ``worker_options``: constructor options by worker name (tests use fast timings)."""
        self.settings = settings
        self.idle_seconds = idle_seconds
        self.worker_options = dict(worker_options or {})
        self.metrics = Metrics()
        self._own_redis = redis is None
        self.redis = store_module.connect(settings.redis_url) if redis is None else redis
        self.adapters = build_adapters(settings.gateways, settings.public_url)
        self.store = Store(self.redis, settings.retention_seconds)
        self.payments = Payments(settings, self.store, self.adapters, self.metrics)
        self.pool: WorkerPool | None = None

    def workers(self) -> list[Worker]:
        options = self.worker_options
        return [
            ExpirySweeper(self.redis, self.payments, self.metrics, **options.get("expiry", {})),
            RefundSweeper(self.redis, self.payments.refunds, self.metrics, **options.get("refunds", {})),
            OutboxSender(self.redis, self.settings, self.metrics, urls=self.payments.urls, **options.get("outbox", {})),
        ]

    def start_workers(self) -> None:
        self.pool = WorkerPool(self.redis, self.workers(), self.idle_seconds)
        self.pool.start()

    def workers_alive(self) -> dict[str, bool]:
        return self.pool.alive() if self.pool else {}

    async def close(self) -> None:
        """Stop the workers (handing back their claims), then release connections."""
        if self.pool is not None:
            await self.pool.stop()
        for adapter in self.adapters.values():
            await adapter.aclose()
        if self._own_redis:
            await self.redis.aclose()
