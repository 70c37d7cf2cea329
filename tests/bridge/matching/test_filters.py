"""Filters and their /filter syntax, table-driven."""

from __future__ import annotations

import pytest

from bridge.matching.filters import Filters, parse_rules
from bridge.model import Media, Ref
from tests.fakes import FakeNetwork, author

net = FakeNetwork({}, host=None)  # type: ignore[arg-type]
PLAIN = net.make_post("a.fake", "Our new pricing page is live #nrf2027")
REPLY = net.make_post("a.fake", "thanks!", reply_to=Ref("fakenet", "p0"))
REPOST = net.make_post("a.fake", "look at this outage", reposted_by=author("b.fake"))
PHOTO = net.make_post("a.fake", "view", media=(Media("image", "https://x/img.jpg"),))

ACCEPTS = [
    ("no rules", Filters(), PLAIN, True),
    ("include hit", Filters(include=("pricing",)), PLAIN, True),
    ("include is case-insensitive", Filters(include=("PRICING",)), PLAIN, True),
    ("include needs a whole word", Filters(include=("price",)), PLAIN, False),
    ("include hashtag", Filters(include=("#nrf2027",)), PLAIN, True),
    ("include any of", Filters(include=("outage", "pricing")), PLAIN, True),
    ("exclude hit", Filters(exclude=("pricing",)), PLAIN, False),
    ("exclude miss", Filters(exclude=("hiring",)), PLAIN, True),
    ("replies off", Filters(replies=False), REPLY, False),
    ("replies on", Filters(), REPLY, True),
    ("reposts off", Filters(reposts=False), REPOST, False),
    ("reposts off keeps posts", Filters(reposts=False), PLAIN, True),
    ("media only drops text", Filters(media_only=True), PLAIN, False),
    ("media only keeps photo", Filters(media_only=True), PHOTO, True),
]


@pytest.mark.parametrize(("name", "filters", "post", "expected"), ACCEPTS, ids=[c[0] for c in ACCEPTS])
def test_accepts(name: str, filters: Filters, post: object, expected: bool) -> None:
    assert filters.accepts(post) is expected  # type: ignore[arg-type]


RULES = [
    ("include:pricing,outage", Filters(include=("pricing", "outage"))),
    ('include:"home depot"', Filters(include=("home depot",))),
    ("exclude:hiring replies:off reposts:off", Filters(exclude=("hiring",), replies=False, reposts=False)),
    ("media:only thread:on", Filters(media_only=True, thread=True)),
    ("REPLIES:OFF", Filters(replies=False)),
]


@pytest.mark.parametrize(("text", "expected"), RULES)
def test_parse_rules(text: str, expected: Filters) -> None:
    assert parse_rules(Filters(), text) == expected


def test_reset_and_clearing_a_list() -> None:
    start = Filters(include=("a",), exclude=("b",), replies=False)
    assert parse_rules(start, "include:") == Filters(exclude=("b",), replies=False)
    assert parse_rules(start, "reset") == Filters()


BAD = [
    ("", "no rules given"),
    ("replies:maybe", "replies: takes on or off"),
    ("colour:red", "unknown rule 'colour'"),
    ("pricing", "is not a rule"),
    ('include:"open', "unbalanced quotes"),
    ("media:some", "media: takes only or all"),
    ("include:" + ",".join(f"w{i}" for i in range(60)), "at most 50 words"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_rules_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rules(Filters(), text)


def test_describe_round_trips() -> None:
    f = Filters(include=("home depot", "pricing"), replies=False, media_only=True)
    assert parse_rules(Filters(), f.describe()) == f
