"""The X adapter end to end: the real core and Telegram adapter against the Telegram Bot API
emulator and the X API v2 emulator. What a person in the room sees, and what X would bill (the
emulator's usage meter)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.x.cost import _month
from adapters.x.http import REPLY_RULE
from bridge.storage.db import close_database
from tests.adapters.x.x_world import World, clocked
from tests.tcp_proxy import free_port


async def test_follow_relay_reply_rules_like_refused_and_dm(world: World) -> None:
    w, xe = world, world.xe
    alice = xe.add_user("alice", "Alice Prospect")
    dave = xe.add_user("dave", "Dave")
    xe.set_limit("GET", "/2/dm_events", 900)  # 15 per 15 min would space DM polls a minute apart
    await w.start()
    w.say("/follow x:alice")
    [answer] = await w.wait(1)
    assert "alice" in answer.text.lower(), answer.text
    w.say("/inbox on")
    await w.wait(2)
    await w.bridge.refresh_routes()  # type: ignore[union-attr]

    # A post with a t.co link, a quoted post and a photo; then one that mentions the team account.
    older = xe.post(dave, "our Q3 numbers are out")
    plain = xe.post(
        alice,
        "we are hiring https://example.com/jobs/42",
        quote_of=older["id"],
        media=[{"type": "photo", "url": "https://pbs.twimg.com/media/a.jpg", "alt_text": "team"}],
    )
    relayed = await w.wait(3)
    post_msg = relayed[-1]
    assert "https://example.com/jobs/42" in post_msg.text and "t.co" not in post_msg.text, post_msg.text
    assert "Alice Prospect" in post_msg.text and "@alice" in post_msg.text
    assert "our Q3 numbers are out" in post_msg.text  # the quoted post, in brief
    links = [u for _, u in post_msg.links()]
    assert f"https://x.com/alice/status/{plain['id']}" in links, links
    labels = [b["text"] for b in post_msg.buttons]
    # Self-serve X: no Like or Follow; no Reply on a post whose author did not summon the team.
    assert "Like" not in labels and "Follow" not in labels and "Reply" not in labels, labels

    # A reply typed to that post is refused before any request, with X's rule.
    creates = len(w.calls("POST", "/2/tweets"))
    w.say("thanks, applying!", reply_to=post_msg.message_id)
    refused = (await w.wait(4))[-1]
    assert REPLY_RULE in refused.text, refused.text
    assert len(w.calls("POST", "/2/tweets")) == creates

    # A forged Like press (the button is not shown) is refused with the reason; X is not asked.
    token = next(b["callback_data"] for b in post_msg.buttons if b.get("callback_data"))
    delivery_id = token.partition(":")[2]
    w.tg.press(w.group.id, w.boss, post_msg.message_id, f"like:{delivery_id}")
    await w.tg.wait_until(lambda: len(w.tg.callback_answers) == 1)
    assert "Enterprise" in w.tg.callback_answers[0]["text"], w.tg.callback_answers
    assert not w.calls("POST", "/2/users/:id/likes")

    # A post that mentions the team account: Reply is offered and goes through.
    xe.post(alice, "@teamaccount can you send pricing?")
    msgs = await w.wait(5)
    mention = next(m for m in msgs[4:] if "pricing" in m.text)
    assert "Reply" in [b["text"] for b in mention.buttons]
    w.say("sure, DM us", reply_to=mention.message_id)
    done = await w.wait(6)
    assert any("Replied to @alice" in m.text for m in done), [m.text for m in done]
    [reply] = [t for t in xe.created if t["text"] == "sure, DM us"]
    assert reply["referenced_tweets"][0]["type"] == "replied_to"

    # A DM reaches the room (inbox) and is answered in the same conversation.
    xe.dm_from(dave, "hi, is there a trial?")
    msgs = await w.wait(7)
    dm = next(m for m in msgs if "is there a trial" in m.text)
    w.say("yes, 30 days", reply_to=dm.message_id)
    await w.tg.wait_until(lambda: any(d["text"] == "yes, 30 days" for d in xe.sent_dms))
    assert xe.sent_dms[-1]["to"] == dave["id"]

    # /watch says what X's recent search covers.
    w.say('/watch "pricing page"')
    await w.tg.wait_until(lambda: any("Watching" in t for t in w.texts()))
    watching = next(t for t in w.texts() if "Watching" in t)
    assert "7 days" in watching and "no reposts" in watching, watching


async def test_restart_loses_nothing_and_duplicates_nothing(world: World) -> None:
    w, xe = world, world.xe
    alice = xe.add_user("alice")
    await w.start()
    w.say("/follow @alice")
    await w.wait(1)
    await w.followed()
    for n in range(3):
        xe.post(alice, f"marker-{n}")
    await w.wait(4)
    await w.stop()
    for n in range(3, 12):  # more than one page (5) while the bridge is down
        xe.post(alice, f"marker-{n}")
    await w.start()
    await w.wait(13, timeout=30)
    await w.stop()
    await w.start()  # a second restart with nothing new: nothing is sent again
    xe.post(alice, "marker-12")
    await w.wait(14, timeout=30)
    seen = [t for t in w.texts() if "marker-" in t]
    numbers = sorted(int(t.split("marker-")[1].split()[0]) for t in seen)
    assert numbers == list(range(13)), numbers
    # Each post was billed once (the meter counts what X charges per UTC day).
    assert xe.usage().get("post_read", 0) <= 13 + 1


async def test_budget_reached_mid_month_stops_reads_and_tells_the_room_once(world: World) -> None:
    w, xe = world, world.xe
    alice = xe.add_user("alice")
    # This month has already spent $0.70 of a $1.00 cap.
    await w.start(monthly_budget_usd=1)
    await w.stop()
    from bridge.storage.db import open_database
    from bridge.storage.store import Store

    await open_database(w.db)
    store = Store()
    now = __import__("time").time()
    await store.save_state("x", "cost", json.dumps({"month": _month(now), "day": "", "spent": 700_000, "seen": [], "today": {}}))
    # alice has been quiet for a month (one post): the planner polls her at the fastest rate
    # allowed (the budget is far above her expected cost), and then she posts a burst.
    await store.save_state("x", "rates", json.dumps({alice["id"]: [now - 30 * 86400, 1]}))
    await close_database()
    await w.start(monthly_budget_usd=1)
    w.say("/follow x:alice")
    await w.wait(1)
    await w.followed()
    for n in range(20):
        xe.post(alice, f"burst-{n}")
    await w.tg.wait_until(lambda: any("budget" in t for t in w.texts()), timeout=20)
    reads = len(w.calls("GET", "/2/users/:id/tweets"))
    # The room is told once, with the figure and the fix.
    notices = [t for t in w.texts() if "budget reached" in t]
    assert len(notices) == 1 and "$1.00" in notices[0] and "monthly_budget_usd" in notices[0], notices
    # It says what stops and what still goes (the actions below), not that nothing does.
    assert "Nothing is relayed from or to" not in notices[0] and "still go" in notices[0], notices
    # A chat action that fits what is left is done; the next one, which would cross the cap
    # (a post with a link: $0.20), is refused with the figure and not sent.
    w.say("/post our webinar: https://example.com/webinar")
    await w.tg.wait_until(lambda: any(t.startswith("Posted") for t in w.texts()))
    w.say("/post the recording: https://example.com/recording")
    await w.tg.wait_until(lambda: any("refused it" in t and "budget" in t for t in w.texts()))
    refused = next(t for t in w.texts() if "refused it" in t and "budget" in t)
    assert "$1.00" in refused and "monthly_budget_usd" in refused, refused
    assert len(w.calls("POST", "/2/tweets")) == 1
    # Nothing more is read; what X would bill stays within the cap.
    await __import__("asyncio").sleep(3)
    assert len(w.calls("GET", "/2/users/:id/tweets")) == reads
    assert 0.70 + w.billed_usd() <= 1.00 + 1e-9, xe.usage()
    assert xe.usage()["post_create_url"] == 1
    w.say("/status")
    await w.tg.wait_until(lambda: any("X API spend" in t for t in w.texts()))
    status = next(t for t in w.texts() if "X API spend" in t)
    assert "of $1.00 cap" in status and "forecast" in status, status


async def test_metrics_show_the_month_spend_and_cap_as_x_bills_them(world: World) -> None:
    w, xe = world, world.xe
    alice = xe.add_user("alice", "Alice Prospect")
    port = free_port()
    w.http = {"listen": f"127.0.0.1:{port}"}

    async def metrics() -> list[Any]:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200
            text = await r.text()
        return [s for family in text_string_to_metric_families(text) for s in family.samples]

    async def scrape() -> dict[str, float]:
        return {
            s.name: s.value
            for s in await metrics()
            if s.name.startswith("bridge_network_spend") and s.labels == {"network": "x"}
        }

    await w.start(monthly_budget_usd=25)
    w.say("/follow x:alice")
    await w.wait(1)
    await w.followed()
    xe.post(alice, "first")
    xe.post(alice, "second")
    await w.wait(3)
    w.say("/post launch day")
    await w.tg.wait_until(lambda: any(t.startswith("Posted") for t in w.texts()))
    billed = w.billed_usd()
    assert billed > 0.0, xe.usage()
    got = await scrape()
    assert got["bridge_network_spend_usd"] == pytest.approx(billed), (got, xe.usage())
    assert got["bridge_network_spend_cap_usd"] == 25.0
    assert got["bridge_network_spend_forecast_usd"] >= got["bridge_network_spend_usd"]
    # Requests by route template and status, as the emulator saw them (no ids in the labels).
    # The bridge keeps polling (one request at a time): the scrape falls between what the
    # emulator saw before, less the one request that may be on its way back, and after.
    def seen() -> Counter[tuple[str, str]]:
        return Counter((f"{method} {route}", str(status)) for method, route, _auth, status in xe.requests)

    before = seen()
    counted = {
        (s.labels["endpoint"], s.labels["status"]): s.value
        for s in await metrics()
        if s.name == "bridge_network_requests_total" and s.labels["network"] == "x"
    }
    after = seen()
    assert set(counted) <= set(after) and all(n <= after[k] for k, n in counted.items()), (counted, after)
    assert sum(before.values()) - sum(min(counted.get(k, 0), n) for k, n in before.items()) <= 1, (counted, before)
    assert counted[("POST /2/tweets", "201")] == 1
    assert not any(alice["id"] in endpoint for endpoint, _status in counted)
    # After a restart the figures come from the stored month, before anything new is billed.
    await w.stop()
    await w.start(monthly_budget_usd=30)
    got = await scrape()
    assert got["bridge_network_spend_usd"] == pytest.approx(billed)
    assert got["bridge_network_spend_cap_usd"] == 30.0


async def test_a_429_storm_delays_but_loses_nothing(world: World) -> None:
    w, xe = world, world.xe
    alice = xe.add_user("alice")
    bob = xe.add_user("bob")
    xe.set_limit("GET", "/2/users/:id/tweets", 2, window=3.0)
    await w.start()
    w.say("/follow x:alice")
    w.say("/follow x:bob")
    await w.wait(2)
    # Right after the follows are answered, as a person would: each follow starts when it is
    # made, even though the first reads of the timelines wait for the rate limit.
    for n in range(6):
        xe.post(alice if n % 2 else bob, f"storm-{n}")
    try:
        await w.tg.wait_until(lambda: sum("storm-" in t for t in w.texts()) >= 6, timeout=40)
    except AssertionError:
        raise AssertionError(f"relayed: {w.texts()}; requests: {xe.requests[-40:]}; reads: {xe.timeline_reads}") from None
    seen = sorted(int(t.split("storm-")[1].split()[0]) for t in w.texts() if "storm-" in t)
    assert seen == list(range(6)), seen
    limited = [r for r in w.calls("GET", "/2/users/:id/tweets") if r[3] == 429]
    ok = [r for r in w.calls("GET", "/2/users/:id/tweets") if r[3] == 200]
    assert len(limited) <= len(ok), (len(limited), len(ok))  # it waits for the reset, it does not hammer


async def test_a_post_made_while_the_first_read_waits_out_a_rate_limit_is_relayed(world: World) -> None:
    # A follow starts when it is made, not when X first answers: the first read of the timeline
    # is held back by a spent rate-limit window, and alice posts meanwhile.
    w, xe = world, world.xe
    alice = xe.add_user("alice")
    xe.post(alice, "from last week", at=__import__("time").time() - 7 * 86400)
    xe.spend_next("GET", "/2/users/:id/tweets", 2.0)
    await w.start()
    w.say("/follow x:alice")
    await w.wait(1)
    await w.tg.wait_until(lambda: bool(w.calls("GET", "/2/users/:id/tweets")))  # answered 429
    xe.post(alice, "right after the follow")
    assert not xe.timeline_reads.get(alice["id"]), "X answered a read before the post: this test would prove nothing"
    try:
        await w.tg.wait_until(lambda: any("right after the follow" in t for t in w.texts()), timeout=20)
    except AssertionError:
        raise AssertionError(f"relayed: {w.texts()}; requests: {xe.requests}") from None
    assert not any("from last week" in t for t in w.texts()), w.texts()  # a new follow starts from now


async def test_room_filters_leave_replies_and_reposts_out_before_x_bills_them(world: World) -> None:
    w, xe = world, world.xe
    alice = xe.add_user("alice")
    bob = xe.add_user("bob")
    await w.start()
    w.say("/follow x:alice")
    [followed] = await w.wait(1)
    sub = followed.text.split("(#")[1].split(")")[0]
    w.say(f"/filter {sub} replies:off reposts:off")
    await w.wait(2)

    def asked(exclude: str) -> bool:
        return any(r == "/2/users/:id/tweets" and q.get("exclude") == exclude for _, r, q in xe.queries)

    await w.tg.wait_until(lambda: asked("replies,retweets"), timeout=20)
    reads = xe.timeline_reads[alice["id"]]
    await w.tg.wait_until(lambda: xe.timeline_reads[alice["id"]] > reads)  # a whole walk with the filter
    parent = xe.post(bob, "what do you all think?")
    reply = xe.post(alice, "I think yes", reply_to=parent["id"])
    repost = xe.post(alice, "", repost_of=parent["id"])
    original = xe.post(alice, "our own news")
    await w.tg.wait_until(lambda: any("our own news" in t for t in w.texts()), timeout=20)
    charged = xe.meter[next(iter(xe.meter))].reads.get("post_read", set())
    # X returned (and bills) only the post a room wants: not the reply, the repost, or their parent.
    assert original["id"] in charged
    assert not charged & {reply["id"], repost["id"], parent["id"]}, charged
    assert not any("I think yes" in t for t in w.texts())

    # Another room that wants everything from alice: the timeline is asked for in full again.
    support = w.tg.add_group("Support", admins=[w.boss])
    w.tg.send_text(support.id, w.boss, "/follow x:alice")
    await w.tg.wait_messages(support.id, 1)
    await w.tg.wait_until(
        lambda: any(r == "/2/users/:id/tweets" and "exclude" not in q for _, r, q in xe.queries[-3:]), timeout=20
    )


async def test_the_cap_reached_mid_walk_reads_nothing_twice_when_reads_resume(world: World) -> None:
    w, xe = world, world.xe
    alice = xe.add_user("alice")
    shift = [0.0]
    w.classes["x"] = clocked(shift)
    await w.start(monthly_budget_usd=1)
    await w.stop()
    from bridge.storage.db import open_database
    from bridge.storage.store import Store

    await open_database(w.db)
    store = Store()
    now = time.time()
    # $0.705 spent of $1.00: a page of 5 posts is reserved at its worst case ($0.275) and costs
    # $0.025, so the first page of a burst fits and the second does not.
    await store.save_state("x", "cost", json.dumps({"month": _month(now), "day": "", "spent": 705_000, "seen": [], "today": {}}))
    await store.save_state("x", "rates", json.dumps({alice["id"]: [now - 30 * 86400, 1]}))
    await close_database()
    await w.start(monthly_budget_usd=1)
    w.say("/follow x:alice")
    await w.wait(1)
    await w.followed()
    burst = [xe.post(alice, f"walk-{n}") for n in range(12)]
    await w.tg.wait_until(lambda: any("budget reached" in t for t in w.texts()), timeout=20)
    assert sum(xe.served.get(t["id"], 0) for t in burst) == 5, "one page read before the cap"
    # The month rolls over: reads resume, and the walk goes on below the page it had read.
    start = datetime.fromtimestamp(now, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    shift[0] = (start.replace(month=start.month % 12 + 1, year=start.year + (start.month == 12)).timestamp() + 3600) - now
    await w.tg.wait_until(lambda: sum("walk-" in t for t in w.texts()) >= 12, timeout=30)
    seen = sorted(int(t.split("walk-")[1].split()[0]) for t in w.texts() if "walk-" in t)
    assert seen == list(range(12)), seen
    assert {t["id"]: xe.served.get(t["id"]) for t in burst} == {t["id"]: 1 for t in burst}, "no post read twice"


async def test_bridge_check_shows_the_plans_cost_per_day_for_the_subscriptions(world: World, tmp_path: Path) -> None:
    w, xe = world, world.xe
    xe.add_user("alice")
    xe.add_user("bob")
    await w.start()
    w.say("/follow x:alice")
    w.say("/follow x:bob")
    await w.wait(2)
    await w.stop()
    cfg = tmp_path / "bridge.toml"
    cfg.write_text(
        f"""
[database]
url = "{w.db}"

[telegram]
token = "{w.tg.token}"
api_url = "{w.tg.url}"

[x]
api_url = "{xe.url}"
bearer_token = "{xe.bearer_token}"
consumer_key = "{xe.consumer_key}"
consumer_secret = "{xe.consumer_secret}"
access_token = "{xe.access_token}"
access_token_secret = "{xe.access_token_secret}"
monthly_budget_usd = 25
"""
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "check", "-c", str(cfg), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    line = next((x for x in out.decode().splitlines() if x.startswith("x:")), "")
    assert proc.returncode == 0, (out.decode(), err.decode())
    # Two accounts at the default rate (5 posts a day, $0.005 a post read): $0.05 a day.
    assert "X polling plan: 2 accounts, $0.050/day expected" in line, line
    # With the filtered stream it says what the stream carries and what stays polled.
    cfg.write_text(cfg.read_text() + 'intake = "stream"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "check", "-c", str(cfg), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    line = next((x for x in out.decode().splitlines() if x.startswith("x:")), "")
    assert "filtered stream: 2 feeds in 1 rule, 0 polled" in line, (out.decode(), err.decode())
