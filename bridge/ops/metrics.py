"""The bridge's Prometheus metrics, in a registry of its own (never the process-global one:
two bridges in one process, as in tests, must not share counts).

Recording is one call at the point where the thing happens (``metrics.delivery(...)``); what
the database knows (pending deliveries, their age) is read at scrape time instead, so it is
right even after a restart. Labels hold platform, network, outcome, endpoint and status names
and chat targets, never a token or a URL with credentials; per-destination series are bounded
to the top ``TOP_DESTINATIONS`` plus ``other``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

TOP_DESTINATIONS = 20
# Relay latency (post created on the network → the chat accepted the message): seconds to hours.
LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 6 * 3600, float("inf"))

PendingReader = Callable[[], Awaitable[list[tuple[str, int, datetime | None]]]]


class Metrics:
    """Every metric of one bridge. Recording methods never raise and take well under a
    microsecond of lock time: they are called on the send path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._deliveries = Counter("bridge_deliveries", "Delivery outcomes", ["platform", "network", "outcome"], registry=r)
        self._latency = Histogram(
            "bridge_relay_latency_seconds",
            "From the post's creation on the network to the chat accepting the message",
            ["platform", "network"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._rate_limited = Counter(
            "bridge_rate_limited", "429 answers (and rate-limit holds) by platform", ["platform"], registry=r
        )
        self._pacing = Counter("bridge_pacing_waits", "Sends that waited for a platform's pacing", ["platform"], registry=r)
        self._pacing_seconds = Counter("bridge_pacing_wait_seconds", "Seconds waited for pacing", ["platform"], registry=r)
        self._requests = Counter(
            "bridge_network_requests", "Requests to a network's API", ["network", "endpoint", "status"], registry=r
        )
        self._webhook = Counter("bridge_webhook_requests", "Calls to a webhook route", ["adapter", "status"], registry=r)
        self._lag = Gauge(
            "bridge_stream_lag_seconds", "How far a stream (firehose) is behind real time", ["network", "stream"], registry=r
        )
        self._spend = Gauge(
            "bridge_network_spend_usd", "What a paid network's API has cost this calendar month (UTC)", ["network"], registry=r
        )
        self._spend_cap = Gauge(
            "bridge_network_spend_cap_usd",
            "A paid network's monthly spending cap (nothing is read past it)",
            ["network"],
            registry=r,
        )
        self._spend_forecast = Gauge(
            "bridge_network_spend_forecast_usd",
            "A paid network's expected spend by the end of the month",
            ["network"],
            registry=r,
        )
        self._pending_reader: PendingReader | None = None
        self._pending: list[tuple[str, int, datetime | None]] = []
        self._now: Callable[[], datetime] | None = None
        r.register(_PendingCollector(self))
        self._leases: Callable[[], dict[str, int]] | None = None
        r.register(_LeaseCollector(self))

    # --- recording ---------------------------------------------------------------------------

    def delivery(self, platform: str, network: str, outcome: str, latency: float | None = None) -> None:
        """One delivery ended with ``outcome`` (sent, retry, rate_limited, failed, given_up,
        paused); ``latency`` in seconds for a sent one."""
        self._deliveries.labels(platform, network, outcome).inc()
        if outcome == "rate_limited":
            self._rate_limited.labels(platform).inc()
        if latency is not None:
            self._latency.labels(platform, network).observe(max(0.0, latency))

    @staticmethod
    def since(created: datetime) -> float | None:
        """Seconds from ``created`` (a post's creation time) to now; None when it cannot be
        told (a naive time from a network that gave no zone): never an error on the send path."""
        try:
            return (datetime.now(UTC) - created).total_seconds()
        except (TypeError, AttributeError):
            return None

    def rate_limited(self, platform: str) -> None:
        self._rate_limited.labels(platform).inc()

    def pacing_wait(self, platform: str, seconds: float) -> None:
        self._pacing.labels(platform).inc()
        self._pacing_seconds.labels(platform).inc(max(0.0, seconds))

    def request(self, network: str, endpoint: str, status: int | str) -> None:
        """One API request; ``endpoint`` is a method name (an XRPC NSID), never a URL."""
        self._requests.labels(network, endpoint, str(status)).inc()

    def webhook(self, adapter: str, status: int) -> None:
        self._webhook.labels(adapter, str(status)).inc()

    def stream_lag(self, network: str, stream: str, seconds: float) -> None:
        self._lag.labels(network, stream).set(max(0.0, seconds))

    def spend(self, network: str, spent_usd: float, cap_usd: float | None, forecast_usd: float | None) -> None:
        """A paid network's spend this month, its cap and forecast (a None figure is left out)."""
        self._spend.labels(network).set(max(0.0, spent_usd))
        for gauge, value in ((self._spend_cap, cap_usd), (self._spend_forecast, forecast_usd)):
            if value is None:
                with contextlib.suppress(KeyError):
                    gauge.remove(network)
            else:
                gauge.labels(network).set(max(0.0, value))

    # --- scraping ----------------------------------------------------------------------------

    def read_pending_with(self, reader: PendingReader, now: Callable[[], datetime]) -> None:
        """Where scrape-time values come from: ``reader`` returns (destination, pending count,
        oldest pending creation time) for every destination with pending deliveries."""
        self._pending_reader, self._now = reader, now

    def read_leases_with(self, held: Callable[[], dict[str, int]]) -> None:
        """Where ``bridge_leases_held`` comes from: leases this worker holds, by kind."""
        self._leases = held

    async def render(self) -> bytes:
        """The text exposition, with pending counts read from the database now. A database
        that does not answer leaves the pending series out (the scrape still succeeds)."""
        self._pending = []
        if self._pending_reader is not None:
            try:
                self._pending = await self._pending_reader()
            except Exception:
                self._pending = []
        return generate_latest(self.registry)


class _LeaseCollector:
    """Leases this worker holds by kind (dest: rooms, listen: listeners); on SQLite the one
    process holds everything and no lease exists."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[GaugeMetricFamily]:
        held = GaugeMetricFamily("bridge_leases_held", "Leases this worker holds, by kind", labels=["kind"])
        if self._m._leases is not None:
            try:
                counts = self._m._leases()
            except Exception:  # e.g. scraped outside the loop: leave the series out
                counts = {}
            for kind, n in sorted(counts.items()):
                held.add_metric([kind], n)
        yield held

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


class _PendingCollector:
    """Pending deliveries and the oldest one's age per destination, busiest ``TOP_DESTINATIONS``
    by name and the rest summed (count) or maxed (age) under ``other``."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[GaugeMetricFamily]:
        count = GaugeMetricFamily("bridge_pending_deliveries", "Deliveries waiting to be sent", labels=["destination"])
        age = GaugeMetricFamily(
            "bridge_oldest_pending_age_seconds", "Age of the oldest delivery waiting to be sent", labels=["destination"]
        )
        rows = sorted(self._m._pending, key=lambda r: (-r[1], r[0]))
        now = self._m._now() if self._m._now else None
        rest_n, rest_age, has_rest = 0, 0.0, False
        for i, (dest, n, oldest) in enumerate(rows):
            seconds = max(0.0, (now - oldest).total_seconds()) if now and oldest else 0.0
            if i < TOP_DESTINATIONS:
                count.add_metric([dest], n)
                age.add_metric([dest], seconds)
            else:
                has_rest = True
                rest_n += n
                rest_age = max(rest_age, seconds)
        if has_rest:
            count.add_metric(["other"], rest_n)
            age.add_metric(["other"], rest_age)
        yield count
        yield age

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []
