"""The [http] endpoint over a real socket: /healthz, /livez, /readyz and /metrics after a relay,
parsed with prometheus-client's own parser and checked against the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import Bridge
from bridge.config import config_from_dict
from bridge.errors import Permanent, RateLimited
from bridge.ops import metrics as metrics_module
from bridge.storage.models import DeliveryRow
from tests.conftest import FAKES, fake_config, fresh_postgres, until
from tests.tcp_proxy import TcpProxy, free_port


async def start_bridge(db: str, **sections: Any) -> tuple[Bridge, str]:
    port = free_port()
    data = fake_config(db)
    data["http"] = {"listen": f"127.0.0.1:{port}"}
    data["fakechat"] = {"token": "fakechat-token-0123456789"}
    data.update(sections)
    bridge = Bridge(config_from_dict(data, adapter_classes=FAKES), adapter_classes=FAKES)
    await bridge.start()
    return bridge, f"http://127.0.0.1:{port}"


@pytest.fixture
async def running(tmp_path: Any) -> AsyncIterator[tuple[Bridge, str]]:
    bridge, url = await start_bridge(f"sqlite://{tmp_path}/bridge.sqlite3")
    yield bridge, url
    await bridge.stop()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels (prometheus-client's parser)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_healthz_is_200_with_a_one_line_summary_when_running(running: tuple[Bridge, str]) -> None:
    _bridge, url = running
    status, body = await get(url + "/healthz")
    assert status == 200
    assert body.count("\n") == 1 and '"status":"ok"' in body and '"database":"ok"' in body
    assert (await get(url + "/livez"))[0] == 200
    assert (await get(url + "/readyz"))[0] == 200


async def test_metrics_after_a_relay_match_the_ledger(running: tuple[Bridge, str]) -> None:
    bridge, url = running
    net, chat = bridge.networks["fakenet"], bridge.chats["fakechat"]
    for room in ("good", "bad", "busy"):
        await chat.command(room, "boss", "/follow alice.fake")
    chat.fail["bad"] = [Permanent("message rejected")]
    chat.fail["busy"] = [RateLimited(0.05, scope="busy")]
    await net.publish("alice.fake", "one")
    await net.publish("alice.fake", "two")
    await until(lambda: len(chat.sent) >= 5, 10)
    await asyncio.sleep(0.3)
    status, text = await get(url + "/metrics")
    assert status == 200
    got = samples(text)
    sent = await DeliveryRow.filter(status="sent").count()
    failed = await DeliveryRow.filter(status="failed").count()
    assert (sent, failed) == (5, 1)

    def count(outcome: str) -> float:
        return got.get(("bridge_deliveries_total", (("network", "fakenet"), ("outcome", outcome), ("platform", "fakechat"))), 0)

    assert count("sent") == sent and count("failed") == failed and count("rate_limited") == 1
    assert got[("bridge_rate_limited_total", (("platform", "fakechat"),))] == 1
    lat = (("network", "fakenet"), ("platform", "fakechat"))
    assert got[("bridge_relay_latency_seconds_count", lat)] == sent
    # posts made a moment ago: every one within the 5 s bucket
    assert got[("bridge_relay_latency_seconds_bucket", (("le", "5.0"), *lat))] == sent
    assert 0 < got[("bridge_relay_latency_seconds_sum", lat)] < 5 * sent
    assert "fakechat-token-0123456789" not in text


async def test_pending_per_destination_is_top_n_plus_other(running: tuple[Bridge, str], monkeypatch: Any) -> None:
    bridge, url = running
    monkeypatch.setattr(metrics_module, "TOP_DESTINATIONS", 2)
    net, chat = bridge.networks["fakenet"], bridge.chats["fakechat"]
    rooms = ["r1", "r2", "r3", "r4"]
    for room in rooms:
        await chat.command(room, "boss", "/follow alice.fake")
    await bridge.dispatcher.drain(1)  # nothing is sent from here on: everything stays pending
    for n in range(3):
        await net.publish("alice.fake", f"post {n}")
    await asyncio.sleep(0.2)
    got = samples((await get(url + "/metrics"))[1])
    pending = {dict(k[1])["destination"]: v for k, v in got.items() if k[0] == "bridge_pending_deliveries"}
    assert len(pending) == 3 and pending["other"] == 6  # two named, and the other two rooms summed
    assert sum(pending.values()) == await DeliveryRow.filter(status="pending").count() == 12
    ages = {dict(k[1])["destination"]: v for k, v in got.items() if k[0] == "bridge_oldest_pending_age_seconds"}
    assert set(ages) == set(pending) and all(0 <= a < 60 for a in ages.values())


@pytest.mark.timeout(90)
async def test_healthz_turns_503_when_postgres_is_unreachable_and_200_when_back() -> None:
    async with fresh_postgres() as db:
        # the bridge reaches Postgres through a proxy the test can cut
        host_port = db.split("@", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        proxy = TcpProxy(host, int(port))
        await proxy.open()
        bridge, url = await start_bridge(db.replace(host_port, f"127.0.0.1:{proxy.port}"))
        try:
            assert (await get(url + "/healthz"))[0] == 200
            await proxy.close()
            status, body = await get(url + "/healthz")
            assert status == 503 and "database" in body and '"status":"unavailable"' in body
            assert (await get(url + "/livez"))[0] == 200  # no restart for a database outage
            await proxy.open()
            for _ in range(40):  # the pool reconnects on its own; give it up to 20 s
                status = (await get(url + "/healthz"))[0]
                if status == 200:
                    break
                await asyncio.sleep(0.5)
            assert status == 200
        finally:
            await bridge.stop()
            await proxy.close()


async def test_healthz_is_503_while_an_adapter_is_not_started(running: tuple[Bridge, str]) -> None:
    bridge, url = running
    bridge._started.remove(bridge.chats["fakechat"])
    status, body = await get(url + "/healthz")
    assert status == 503 and "adapters not started: fakechat" in body
    bridge._started.append(bridge.chats["fakechat"])


async def test_healthz_is_503_while_a_platform_is_down_and_readyz_still_takes_traffic(running: tuple[Bridge, str]) -> None:
    """A network whose login is refused while running (what its adapter reports through the
    host): /healthz says so with the adapter's reason; /readyz, which gates webhook traffic,
    stays 200; both are 200 again once the adapter reports it works."""
    bridge, url = running
    host = bridge.hosts["fakenet"]
    await host.report_health(False, "fakenet refused the app password: set fakenet.password")
    status, body = await get(url + "/healthz")
    assert status == 503, body
    assert '"platforms":"down: fakenet"' in body and "fakenet refused the app password" in body
    assert (await get(url + "/readyz"))[0] == 200
    await host.report_health(True)
    assert (await get(url + "/healthz"))[0] == 200
