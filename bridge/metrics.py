"""Prometheus metrics, one registry per Bridge (so two bridges in one process, or tests,
never share counters). Counters move where things happen; the gauges that describe stored
state (queues, customers, conversations) are read from the database at scrape time."""
from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.relayed = Counter("bridge_messages_relayed", "Messages relayed",
                               ["platform", "direction"], registry=r)
        self.latency = Histogram("bridge_delivery_seconds",
                                 "From stored to taken by the far end",
                                 ["direction"], buckets=LATENCY_BUCKETS, registry=r)
        self.retries = Counter("bridge_delivery_retries", "Deliveries retried",
                               ["platform", "reason"], registry=r)
        self.errors = Counter("bridge_errors", "Errors by kind", ["kind"], registry=r)
        self.reconnects = Gauge("bridge_helpdesk_reconnects", "Helpdesk reconnects so far",
                                registry=r)
        self.disconnected = Gauge("bridge_helpdesk_disconnected_seconds",
                                  "Seconds spent without a helpdesk connection so far",
                                  registry=r)
        self.queue_depth = Gauge("bridge_queue_depth", "Rows waiting", ["direction"], registry=r)
        self.oldest = Gauge("bridge_queue_oldest_seconds", "Age of the oldest row waiting",
                            ["direction"], registry=r)
        self.customers = Gauge("bridge_customers", "Customers known", registry=r)
        self.malformed = Gauge("bridge_helpdesk_malformed_payloads",
                               "Helpdesk payloads skipped as malformed", registry=r)
        self.pruned = Counter("bridge_rows_pruned", "Finished queue rows deleted as old",
                              ["direction"], registry=r)
        self.open_conversations = Gauge("bridge_open_conversations", "Conversations open",
                                        registry=r)
        # What a daemon that runs for months must not grow: memory and descriptors
        # (process_resident_memory_bytes, process_open_fds), tasks, database connections.
        ProcessCollector(registry=r)
        self.tasks = Gauge("bridge_asyncio_tasks", "asyncio tasks alive", registry=r)
        self.db_connections = Gauge("bridge_db_connections",
                                    "Database connections open in the pool", registry=r)
        # Several daemons on one PostgreSQL (bridge/shards.py)
        self.shards_held = Gauge("bridge_shards_held",
                                 "Shards of the customers this daemon works now", registry=r)
        self.lease_renewals = Gauge("bridge_lease_renewals", "Lease renewals so far",
                                    registry=r)
        self.lease_losses = Gauge("bridge_lease_losses",
                                  "Times the leases expired before they were renewed",
                                  registry=r)
        self.takeovers = Gauge("bridge_shard_takeovers", "Shards this daemon took so far",
                               registry=r)
        self.takeover_seconds = Histogram(
            "bridge_shard_takeover_seconds", "How long a shard this daemon took from another "
            "went unworked (since its lease ran out or was released, or since the last "
            "renewal of a daemon that died)", registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300))
        self.forwarded = Counter("bridge_events_forwarded",
                                 "Events, from a platform or the helpdesk, stored for the "
                                 "daemon working their customer (bridge/forwarding.py)", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
