"""Scrape-time series that come from the running bridge rather than from recorded events."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bridge.ops.metrics import Metrics


def _samples(text: bytes, name: str) -> dict[str, float]:
    return {s.labels["kind"]: s.value for f in text_string_to_metric_families(text.decode()) for s in f.samples if s.name == name}


async def test_leases_held_by_kind_are_read_at_scrape_time() -> None:
    m = Metrics()
    assert _samples(await m.render(), "bridge_leases_held") == {}  # before the bridge starts
    held = {"dest": 2, "listen": 1}
    m.read_leases_with(lambda: dict(held))
    assert _samples(await m.render(), "bridge_leases_held") == {"dest": 2.0, "listen": 1.0}
    held["dest"] = 0  # a room handed over: the next scrape says so
    assert _samples(await m.render(), "bridge_leases_held") == {"dest": 0.0, "listen": 1.0}
