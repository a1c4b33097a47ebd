"""Prometheus metrics for one gateway, in its own registry (no process-global collectors)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("chatterbox_requests", "Synthesis requests", ["endpoint"], registry=self.registry)
        self.errors = Counter("chatterbox_errors", "Failed requests by code", ["code"], registry=self.registry)
        self.first_chunk = Histogram(
            "chatterbox_first_chunk_latency_seconds", "Request to first audio, at the gateway",
            buckets=(0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20), registry=self.registry,
        )  # fmt: skip
        self.rtf = Histogram(
            "chatterbox_rtf", "Wall seconds per audio second, per finished stream",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 4, 8), registry=self.registry,
        )  # fmt: skip
        self.in_flight = Gauge("chatterbox_in_flight", "Jobs this gateway is serving", registry=self.registry)
        self.queue_depth = Gauge("chatterbox_queue_depth", "Jobs waiting at the broker", registry=self.registry)
        self.live_slots = Gauge("chatterbox_live_slots", "Slots with both workers live", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
