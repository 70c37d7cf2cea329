"""The matcher routes by source through its index, honours filters and "start from now"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.matching.filters import Filters
from bridge.matching.matcher import Matcher, Route
from bridge.model import ChatTarget, Item, Source, SourceKind
from tests.fakes import FakeNetwork

net = FakeNetwork({}, host=None)  # type: ignore[arg-type]
ALICE = Source("fakenet", SourceKind.FOLLOW, "id:alice.fake")
QUERY = Source("fakenet", SourceKind.QUERY, "pricing")
INBOX = Source("fakenet", SourceKind.INBOX, "")
ROOM = ChatTarget("fakechat", "1")
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def test_routes_only_to_subscriptions_of_the_source() -> None:
    m = Matcher()
    m.put(Route(1, ALICE, ROOM, Filters(), LONG_AGO))
    m.put(Route(2, QUERY, ChatTarget("fakechat", "2"), Filters(), LONG_AGO))
    post = net.make_post("alice.fake", "hello")
    assert [r.subscription_id for r in m.match(Item(ALICE, post))] == [1]
    assert [r.subscription_id for r in m.match(Item(QUERY, post))] == [2]
    assert m.match(Item(Source("fakenet", SourceKind.FOLLOW, "id:bob.fake"), post)) == []


def test_filters_apply_per_subscription() -> None:
    m = Matcher()
    m.put(Route(1, ALICE, ROOM, Filters(include=("pricing",)), LONG_AGO))
    m.put(Route(2, ALICE, ChatTarget("fakechat", "2"), Filters(), LONG_AGO))
    post = net.make_post("alice.fake", "lunch")
    assert [r.subscription_id for r in m.match(Item(ALICE, post))] == [2]


def test_inbox_ignores_word_filters() -> None:
    m = Matcher()
    m.put(Route(1, INBOX, ROOM, Filters(include=("never",)), LONG_AGO))
    assert len(m.match(Item(INBOX, net.make_post("bob.fake", "@team hi", reason="mention")))) == 1


def test_new_subscription_starts_from_now() -> None:
    m = Matcher()
    now = datetime.now(UTC)
    m.put(Route(1, ALICE, ROOM, Filters(), now))
    old = net.make_post("alice.fake", "old", created_at=now - timedelta(hours=1))
    fresh = net.make_post("alice.fake", "new", created_at=now + timedelta(seconds=1))
    assert m.match(Item(ALICE, old)) == []
    assert len(m.match(Item(ALICE, fresh))) == 1
    assert len(m.match(Item(ALICE, old), ignore_start=True)) == 1


def test_remove_and_replace() -> None:
    m = Matcher()
    m.put(Route(1, ALICE, ROOM, Filters(), LONG_AGO))
    m.put(Route(1, QUERY, ROOM, Filters(), LONG_AGO))  # same id: replaced, not duplicated
    assert m.sources("fakenet") == frozenset({QUERY})
    m.remove(1)
    assert len(m) == 0 and m.sources("fakenet") == frozenset()
