"""The filtered stream ([x] intake = "stream"): the rules it sets within the plan's limits, the
reconnect backoff X's docs ask for, and end to end with the real core and Telegram: posts come
over the stream, a drop in the middle of a burst loses nothing (the REST catch-up after the
reconnect), and what X bills."""

from __future__ import annotations

import json
import time

import pytest

from adapters.x.cost import DEFAULT_PRICES_USD, _month
from adapters.x.stream import FOLLOW_TAG, build_rules, query_tag, reconnect_delay
from tests.adapters.x.x_world import World


def test_accounts_are_packed_into_rules_by_what_their_rooms_exclude() -> None:
    rules = build_rules(
        [("1", "alice", ""), ("2", "bob", "replies,retweets"), ("3", "carol", "")],
        ["pricing page", "#nrf2027 -is:retweet"],
    )
    values = {r.value: r.tag for r in rules.rules}
    assert values == {
        "(pricing page) -is:retweet": query_tag("pricing page"),
        "#nrf2027 -is:retweet": query_tag("#nrf2027 -is:retweet"),
        "(from:alice OR from:carol)": FOLLOW_TAG,
        "(from:bob) -is:reply -is:retweet": FOLLOW_TAG,
    }
    assert rules.covered == {"follow:1", "follow:2", "follow:3", "query:pricing page", "query:#nrf2027 -is:retweet"}
    assert rules.queries[query_tag("pricing page")] == "pricing page"


def test_what_does_not_fit_the_plans_rule_limits_is_left_to_polling() -> None:
    accounts = [(str(i), f"user{i:04d}", "") for i in range(300)]
    rules = build_rules(accounts, ["x" * 2000], max_rules=3, max_length=100)
    assert len(rules.rules) == 3 and all(len(r.value) <= 100 for r in rules.rules)
    assert "query:" + "x" * 2000 not in rules.covered, "a query longer than a rule is polled"
    packed = sum(r.value.count("from:") for r in rules.rules)
    assert len([k for k in rules.covered if k.startswith("follow:")]) == packed < 300
    full = build_rules(accounts, [])  # pay-per-use: 1,000 rules of 1,024 characters
    assert len(full.covered) == 300 and len(full.rules) == 5  # 60 from: operators of 8-character names a rule


def test_a_rule_x_refused_carries_no_feed() -> None:
    rules = build_rules([("1", "alice", ""), ("2", "bob", "replies")], ["pricing"])
    held = [r for r in rules.rules if "alice" not in r.value]
    kept = rules.accepted(held)
    assert kept.covered == {"follow:2", "query:pricing"} and len(kept.rules) == 2


@pytest.mark.parametrize(
    ("kind", "attempts", "delays"),
    [
        ("network", (0, 1, 2, 64, 100), (0.0, 0.25, 0.5, 16.0, 16.0)),
        ("http", (1, 2, 3, 7, 20), (5.0, 10.0, 20.0, 320.0, 320.0)),
        ("429", (1, 2, 3), (60.0, 120.0, 240.0)),
    ],
)
def test_reconnects_back_off_as_x_documents(kind: str, attempts: tuple[int, ...], delays: tuple[float, ...]) -> None:
    assert tuple(reconnect_delay(kind, a) for a in attempts) == delays
    assert reconnect_delay("429", 1, retry_after=300.0) == 300.0  # never before X's reset


def numbers(w: World, word: str) -> list[int]:
    return sorted(int(t.split(word)[1].split()[0]) for t in w.texts() if word in t)


async def test_a_stream_drop_in_the_middle_of_a_burst_loses_nothing(world: World) -> None:
    w, xe = world, world.xe
    xe.heartbeat = 0.5
    alice = xe.add_user("alice")
    await w.start(intake="stream")
    w.say("/follow x:alice")
    w.say('/watch "pricing page"')
    await w.wait(2)
    # The rules are set and the stream is connected; the catch-up walk of alice's timeline has
    # ended, so the stream alone serves her: no more timeline reads.
    await w.tg.wait_until(lambda: xe.stream_connected and len(xe.stream_rules) == 2, timeout=20)
    assert {r["value"] for r in xe.stream_rules.values()} == {"(from:alice)", '("pricing page") -is:retweet'}
    await w.tg.wait_until(lambda: xe.timeline_reads.get(alice["id"], 0) >= 1, timeout=20)
    xe.post(alice, "burst-0")
    await w.tg.wait_until(lambda: numbers(w, "burst-") == [0], timeout=20)
    reads = xe.timeline_reads[alice["id"]]
    for n in range(1, 4):
        xe.post(alice, f"burst-{n}")
    await w.tg.wait_until(lambda: numbers(w, "burst-") == [0, 1, 2, 3], timeout=20)
    assert xe.timeline_reads[alice["id"]] == reads, "the stream delivered them, no poll"

    # X drops the connection in the middle of the burst: what is posted until the bridge is
    # back on the stream is not delivered on it.
    xe.drop_stream()
    lost = [xe.post(alice, f"burst-{n}") for n in range(4, 8)]
    xe.post(xe.add_user("carol"), 'our "pricing page" is down')
    connections = xe.stream_connections
    await w.tg.wait_until(lambda: xe.stream_connections > connections, timeout=20)
    for n in range(8, 10):
        xe.post(alice, f"burst-{n}")
    await w.tg.wait_until(lambda: numbers(w, "burst-") == list(range(10)), timeout=30)
    await w.tg.wait_until(lambda: any("is down" in t for t in w.texts()), timeout=30)
    assert not set(xe.stream_delivered) & {t["id"] for t in lost}, "those came by the REST catch-up"
    assert len([t for t in w.texts() if "burst-" in t]) == 10, "nothing twice"
    # X bills each post once a day however it arrived (stream and catch-up).
    assert xe.usage()["post_read"] == 10 + 1, xe.usage()
    # Users: the team account at start, alice when she was followed, carol once for the post
    # that matched the watch; the stream does not expand authors, which X would bill again.
    assert xe.usage()["user_read"] == 3, xe.usage()


async def test_the_cap_closes_the_stream_and_the_room_is_told_once(world: World) -> None:
    w, xe = world, world.xe
    xe.heartbeat = 0.5  # the emulator notices a closed connection at its next write
    alice = xe.add_user("alice")
    await w.start(intake="stream", monthly_budget_usd=1)
    await w.stop()
    from bridge.storage.db import close_database, open_database
    from bridge.storage.store import Store

    await open_database(w.db)
    now = time.time()
    # $0.92 of $1.00 spent: a post on the stream is held at its worst case ($0.055) and costs
    # $0.005, so a few fit and then the cap closes the stream.
    await Store().save_state(
        "x", "cost", json.dumps({"month": _month(now), "day": "", "spent": 920_000, "seen": [], "today": {}})
    )
    await close_database()
    await w.start(intake="stream", monthly_budget_usd=1)
    w.say("/follow x:alice")
    await w.wait(1)
    # (Too little is left for a timeline page's worst case, so only the stream reads.)
    await w.tg.wait_until(lambda: xe.stream_connected and xe.stream_rules, timeout=20)
    for n in range(10):
        xe.post(alice, f"capped-{n}")
    await w.tg.wait_until(lambda: not xe.stream_connected, timeout=20)
    await w.tg.wait_until(lambda: any("budget reached" in t for t in w.texts()), timeout=20)
    assert len([t for t in w.texts() if "budget reached" in t]) == 1
    billed = sum(DEFAULT_PRICES_USD[k] * n for k, n in xe.usage().items())
    assert 0.92 + billed <= 1.00 + 1e-9, xe.usage()
    # The posts read while they fitted are relayed; from the one that reached the cap on, none.
    relayed = [t for t in w.texts() if "capped-" in t]
    assert 0 < len(relayed) < 10, relayed


async def test_an_account_whose_rule_x_refuses_stays_polled(world: World) -> None:
    w, xe = world, world.xe
    xe.heartbeat = 0.5
    alice = xe.add_user("alice")
    xe.refused_rules["(from:alice)"] = "UnprocessableEntity"
    await w.start(intake="stream")
    w.say("/follow x:alice")
    await w.wait(1)
    await w.tg.wait_until(lambda: any(m == "POST" and r.endswith("/rules") for m, r, _ in xe.queries), timeout=20)
    reads = xe.timeline_reads.get(alice["id"], 0)
    await w.tg.wait_until(lambda: xe.timeline_reads.get(alice["id"], 0) > reads + 1, timeout=20)  # still polled
    xe.post(alice, "still arrives")
    await w.tg.wait_until(lambda: any("still arrives" in t for t in w.texts()), timeout=20)
    assert not xe.stream_rules and len([r for m, r, _ in xe.queries if m == "POST" and r.endswith("/rules")]) == 1, (
        "a refused rule is not asked for again and again"
    )


async def test_broken_stream_messages_are_skipped_and_the_connection_kept(world: World) -> None:
    w, xe = world, world.xe
    xe.heartbeat = 0.5
    alice = xe.add_user("alice")
    await w.start(intake="stream")
    w.say("/follow x:alice")
    await w.wait(1)
    await w.tg.wait_until(lambda: xe.stream_connected and xe.timeline_reads.get(alice["id"], 0) >= 1, timeout=20)
    connections = xe.stream_connections
    for raw in (
        b"not json",
        b"[1, 2, 3]",
        b'{"errors": [{"title": "operational-disconnect", "detail": "soon"}]}',
        b'{"data": {"text": "no id", "author_id": "1"}, "matching_rules": [{"tag": "follows"}]}',
        b'{"data": {"id": "1500000000000000001", "text": "nobody wants me", "author_id": "'
        + alice["id"].encode()
        + b'"}, "matching_rules": 7}',
        b'{"data": "x", "includes": {"users": "y"}}',
    ):
        xe.stream_raw(raw)
    after = xe.post(alice, "after the noise")
    await w.tg.wait_until(lambda: any("after the noise" in t for t in w.texts()), timeout=20)
    assert xe.stream_connections == connections and after["id"] in xe.stream_delivered, "the same connection carried on"
    assert not any("nobody wants me" in t or "no id" in t for t in w.texts())
