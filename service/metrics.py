"""Prometheus metrics. One registry per app, so tests and several apps in one process stay apart."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "payrelay_http_requests_total", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.http_latency = Histogram(
            "payrelay_http_request_seconds", "HTTP request latency", ["route", "method"], registry=r
        )
        self.gateway_calls = Counter(
            "payrelay_gateway_calls_total", "Gateway calls", ["gateway", "operation", "outcome"], registry=r
        )
        self.gateway_latency = Histogram(
            "payrelay_gateway_call_seconds", "Gateway call latency", ["gateway", "operation"], registry=r
        )
        self.webhooks = Counter(
            "payrelay_webhooks_total", "Webhooks received", ["gateway", "outcome"], registry=r
        )
        self.transitions = Counter(
            "payrelay_transitions_total", "Payment status transitions", ["from_status", "to_status"],
            registry=r,
        )
        self.integrity_errors = Counter(
            "payrelay_integrity_errors_total", "Gateway evidence whose amount or currency differs",
            ["gateway"], registry=r,
        )
        self.evidence_mismatches = Counter(
            "payrelay_evidence_mismatches_total",
            "Gateway evidence about another session, trade or transaction than the payment's: not applied",
            ["gateway", "source"], registry=r,
        )
        self.late_payments = Counter(
            "payrelay_late_payments_total", "Closed payments found paid afterwards", ["gateway"], registry=r
        )
        self.refunds = Counter(
            "payrelay_refunds_total", "Refunds that reached a status", ["gateway", "status"], registry=r
        )
        self.refunded_minor = Counter(
            "payrelay_refunded_minor_units_total", "Money refunded, in minor units of its currency",
            ["gateway", "currency"], registry=r,
        )
        self.refunds_due = Gauge(
            "payrelay_refunds_due", "Processing refunds due for a look at the gateway now", registry=r
        )
        self.due_backlog = Gauge(
            "payrelay_due_backlog", "Payments due for expiry or sync now", registry=r
        )
        self.due_oldest_age = Gauge(
            "payrelay_due_oldest_age_seconds", "How long the oldest due payment has waited", registry=r
        )
        self.outbox_backlog = Gauge(
            "payrelay_outbox_backlog", "Notifications due for delivery now", registry=r
        )
        self.outbox_oldest_age = Gauge(
            "payrelay_outbox_oldest_age_seconds", "How long the oldest due notification has waited",
            registry=r,
        )
        self.deliveries = Counter(
            "payrelay_deliveries_total", "Notification delivery attempts", ["kind", "outcome"], registry=r
        )
        self.dead_deliveries = Gauge(
            "payrelay_dead_deliveries", "Notifications given up after retrying", registry=r
        )
