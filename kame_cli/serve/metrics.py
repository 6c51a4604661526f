"""`kame serve`'s counters for `/metrics`, in Prometheus' text format (`prometheus-client`).

A registry of its own (not the library's global one), so two servers in one process never share
counts. Nothing here holds audio, words or tokens: only counts and times.
"""

from __future__ import annotations

from typing import Any


class ServeMetrics:
    """Sessions active, queued and refused; step times, deadline misses, late client frames; oracle
    requests and failures; STT commit lag."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge("kame_sessions_active", "Sessions being served now", registry=r)
        self.sessions_queued = Gauge("kame_sessions_queued", "Clients waiting for a session", registry=r)
        self.sessions_total = Counter("kame_sessions", "Sessions started", registry=r)
        self.refused = Counter("kame_refused", "Connections refused, by reason", ["reason"], registry=r)
        self.step_ms = Histogram(
            "kame_step_ms",
            "Front-end step time (ms; the budget is 80)",
            buckets=(5, 10, 20, 40, 60, 80, 120, 200, 400),
            registry=r,
        )
        self.deadline_misses = Counter("kame_deadline_misses", "Steps over the 80 ms budget", registry=r)
        self.late_frames = Counter(
            "kame_late_frames",
            "Steps with no client frame (stepped on silence), added as each session ends",
            registry=r,
        )
        self.oracle_requests = Counter("kame_oracle_requests", "LLM requests started", registry=r)
        self.oracle_failures = Counter("kame_oracle_failures", "LLM requests that failed", registry=r)
        self.stt_commit_lag = Histogram(
            "kame_stt_commit_lag_seconds",
            "Final transcript time after the end of its audio",
            buckets=(0.25, 0.5, 1, 2, 4, 8),
            registry=r,
        )
        self.slow_clients = Counter(
            "kame_slow_clients", "Clients disconnected because they did not read", registry=r
        )

    def observe_step(self, total_ms: float) -> None:
        self.step_ms.observe(total_ms)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def refuse(self, reason: str) -> Any:
        self.refused.labels(reason=reason).inc()
