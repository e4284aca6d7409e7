"""Prometheus metrics of one app, in a registry of its own (two apps in one process do not mix).

Cheap on the hot path: label children are resolved once and cached, the capture writer's counters
are read only at scrape time by a collector, and per-request work is one counter increment and one
histogram observation (done by :class:`MetricsMiddleware`, a pure ASGI middleware).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from housing_platform.server.model_manager import REFUSAL_KINDS, ServingStatus

PREFIX = "housing"
# Latency buckets from 250 µs: the fast path answers a single row well under a millisecond.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
OTHER_ROUTE = "other"  # unknown paths share one label value, so a scanner cannot explode cardinality
# Why server/auth.py refused a request: 401 (no token / unknown, revoked, malformed), 403, 429.
AUTH_REFUSAL_REASONS = ("missing_token", "invalid_token", "missing_scope", "rate_limited")


class CaptureCollector:
    """Reads a :class:`~housing_platform.adapters.capture.writer.CaptureWriter`'s counters at scrape time."""

    def __init__(self, writer_getter: Callable[[], object | None]):
        self._writer = writer_getter

    def describe(self):
        return []  # metrics appear once a writer exists

    def collect(self):
        writer = self._writer()
        if writer is None:
            return
        stats = writer.stats()
        yield GaugeMetricFamily(f"{PREFIX}_capture_queue_depth", "Capture rows waiting in the in-memory queue.",
                                value=stats.queue_depth)
        yield GaugeMetricFamily(f"{PREFIX}_capture_rows_in_memory",
                                "Capture rows admitted but not yet written (what a kill -9 would lose).",
                                value=stats.in_memory)
        yield GaugeMetricFamily(f"{PREFIX}_capture_retry_buffer_rows",
                                "Capture rows held for retry while the store is unreachable.", value=stats.buffered)
        yield GaugeMetricFamily(f"{PREFIX}_capture_store_available",
                                "1 when the last capture write succeeded and nothing waits for a retry.",
                                value=1.0 if stats.store_available else 0.0)
        for name, help_text, value in (
            ("written", "Capture rows written to the store.", stats.written),
            ("dropped", "Capture rows lost: submitted without admission past the bound, or store down at shutdown.",
             stats.dropped),
            ("refused_rows", "Rows of predict requests answered 503 because capture was at its bound (not lost).",
             stats.refused),
            ("refused_requests", "Predict requests answered 503 because capture was at its bound.",
             stats.refused_requests),
            ("store_reopened", "Times the capture SQLite file was found deleted or replaced and opened again.",
             stats.store_reopened),
            ("rejected", "Capture rows the database refused (e.g. duplicate request id).", stats.rejected),
            ("sampled_out", "Scored rows not captured because of the sampling percentage.", stats.sampled_out),
            ("failed_attempts", "Capture write attempts that failed because the store was unreachable.",
             stats.failed_attempts),
        ):
            yield CounterMetricFamily(f"{PREFIX}_capture_{name}", help_text, value=value)
        spill = getattr(writer, "spill", None)
        if spill is not None:
            spilled = spill.stats()
            yield GaugeMetricFamily(f"{PREFIX}_capture_spill_bytes",
                                    "Bytes in the capture spill folder, waiting to be drained into the store.",
                                    value=spilled.bytes)
            for name, help_text, value in (
                ("spilled_rows", "Capture rows written to the durable spill (past capture_queue_rows, spill mode).",
                 spilled.spilled_rows),
                ("spill_drained_rows", "Spilled capture rows committed to the store and deleted from the spill.",
                 spilled.drained_rows),
                ("spill_torn_frames", "Spill frames skipped: cut short by a crash mid-write, or a checksum mismatch.",
                 spilled.torn_frames),
            ):
                yield CounterMetricFamily(f"{PREFIX}_capture_{name}", help_text, value=value)


class ServingStatusCollector:
    """Reads the model manager's :class:`ServingStatus` at scrape time: does the served version match the alias?"""

    def __init__(self, status_getter: Callable[[], ServingStatus | None]):
        self._status = status_getter

    def describe(self):
        return []  # the gauge appears once a manager exists

    def collect(self):
        status = self._status()
        if status is None:
            return
        yield GaugeMetricFamily(
            f"{PREFIX}_model_serving_differs_from_alias",
            "1 when the registry names a version (the followed alias's target at the last poll) that is not the "
            "version being served (it is loading, or was refused: see /ready), else 0.",
            value=1.0 if status.differs else 0.0,
        )


class ServingMetrics:
    """Every metric the server exposes on ``/metrics``."""

    def __init__(
        self,
        routes: tuple[str, ...],
        writer_getter: Callable[[], object | None] = lambda: None,
        status_getter: Callable[[], ServingStatus | None] = lambda: None,
    ):
        self.registry = CollectorRegistry(auto_describe=True)
        self.routes = frozenset(routes)
        self.requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests by route, method and status code.",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from the request's arrival to the last byte of the response, by route.",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.rows_scored = Counter(f"{PREFIX}_rows_scored", "Rows scored by the model.", registry=self.registry)
        self.challenger_rows = Counter(
            f"{PREFIX}_challenger_rows", "Rows answered by the challenger (canary rollout).", registry=self.registry
        )
        self.shadow_rows = Counter(
            f"{PREFIX}_shadow_rows", "Rows the challenger scored as a shadow, off the response path (shadow rollout).",
            registry=self.registry,
        )
        self.model_failed_rows = Counter(
            f"{PREFIX}_model_failed_rows",
            "Schema-valid rows a model version could not answer, by version and rule: finite_prediction (its "
            "prediction was NaN or infinite: 422) and scoring_error (scoring raised: 500); a shadow challenger's "
            "failures too. Also flushed to the capture store's scoring_failures table for the rollout decisions.",
            ["model_version", "rule"], registry=self.registry,
        )
        self.rows_rejected = Counter(
            f"{PREFIX}_rows_rejected", "Rows in requests refused with 422 (invalid input).", registry=self.registry
        )
        self.out_of_range = Counter(
            f"{PREFIX}_rows_out_of_training_range",
            "Scored rows with a feature outside the training range (accepted, flagged in the capture), by feature.",
            ["feature"], registry=self.registry,
        )
        self.feedback_rows = Counter(f"{PREFIX}_feedback_rows", "True values recorded via /v1/feedback.",
                                     registry=self.registry)
        self.auth_refusals = Counter(
            f"{PREFIX}_auth_refusals",
            "Requests refused by token authentication, by route and reason: missing_token and invalid_token (401), "
            "missing_scope (403), rate_limited (429: the token's feedback labels per minute).",
            ["route", "reason"], registry=self.registry,
        )
        self.model = Info(f"{PREFIX}_model", "The model version being served.", registry=self.registry)
        self.model_swaps = Counter(f"{PREFIX}_model_swaps", "Model versions swapped in after the first load.",
                                   registry=self.registry)
        self.model_load_failures = Counter(f"{PREFIX}_model_load_failures",
                                           "Failed attempts to resolve or load a model version.",
                                           registry=self.registry)
        self.refused_loads = Counter(
            f"{PREFIX}_model_refused_loads",
            "Load attempts of a version that was then not served, by reason: skew (its fast path differs from the "
            "registered model), unsupported_model (the fast path cannot read it), integrity (a model file's sha256 differs "
            "from the registry's record), load_error (anything else).",
            ["reason"], registry=self.registry,
        )
        for kind in REFUSAL_KINDS:  # every reason present from the start, at 0, so rate() sees the first one
            self.refused_loads.labels(kind)
        self.fallback_rows = Counter(
            f"{PREFIX}_fallback_rows",
            "Rows answered by the fallback baseline (median per ocean_proximity) because no version could be loaded.",
            registry=self.registry,
        )
        self.fallback_active = Gauge(
            f"{PREFIX}_fallback_active",
            "1 while /v1/predict answers from the fallback baseline (no version loaded; /ready says degraded), else 0.",
            registry=self.registry,
        )
        self.model_loaded = Histogram(
            f"{PREFIX}_model_load_duration_seconds", "Time to load a version and derive its fast path.",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=self.registry,
        )
        self.registry.register(CaptureCollector(writer_getter))
        self.registry.register(ServingStatusCollector(status_getter))
        self._request_children: dict[tuple[str, str, int], object] = {}
        self._latency_children: dict[str, object] = {}

    def route_label(self, path: str) -> str:
        return path if path in self.routes else OTHER_ROUTE

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, method, str(status))
        child.inc()
        latency = self._latency_children.get(route)
        if latency is None:
            latency = self._latency_children[route] = self.latency.labels(route)
        latency.observe(seconds)

    def set_model(self, version: str, model_uri: str, run_id: str | None) -> None:
        self.model.info({"version": str(version), "model_uri": model_uri, "run_id": run_id or ""})

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts each HTTP request by route/method/status and times it to the response's last byte."""

    def __init__(self, app, metrics: ServingMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = self.metrics.route_label(scope["path"])
        method = scope["method"]
        state = {"status": 500, "done": False}

        async def timed_send(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False) and not state["done"]:
                state["done"] = True
                self.metrics.observe_request(route, method, state["status"], time.perf_counter() - started)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if not state["done"]:  # no complete response: an exception or a client that went away
                self.metrics.observe_request(route, method, state["status"], time.perf_counter() - started)
