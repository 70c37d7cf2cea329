"""How the firehose turns records into posts when the AppView misbehaves: a scripted AppView
behind the adapter's request interface (the reference stack cannot be made to fail on cue)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from adapters.bluesky.firehose import PROFILE_TTL, Event, Firehose
from bridge.errors import Transient
from bridge.model import Source, SourceKind

ALICE = "did:plc:alice"
SOURCE = Source("bluesky", SourceKind.FOLLOW, ALICE)
PROFILE = {"did": ALICE, "handle": "alice.test", "displayName": "Alice"}


class ScriptedAppView:
    """Answers getProfiles and getPosts as told; records every call."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.profiles_fail = False
        self.views: dict[str, Mapping[str, Any]] = {}

    async def query(self, nsid: str, **params: Any) -> dict[str, Any]:
        self.calls.append(nsid)
        if nsid == "app.bsky.actor.getProfiles":
            if self.profiles_fail:
                raise Transient("appview: 502 Bad Gateway")
            return {"profiles": [PROFILE]}
        if nsid == "app.bsky.feed.getPosts":
            return {"posts": [self.views[u] for u in params["uris"] if u in self.views]}
        raise AssertionError(nsid)


def text_post(rkey: str, text: str) -> Event:
    record = {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-11-26T10:00:00Z"}
    return Event(1, SOURCE, ALICE, f"app.bsky.feed.post/{rkey}", record)


@pytest.fixture
def appview() -> ScriptedAppView:
    return ScriptedAppView()


@pytest.fixture
def firehose(appview: ScriptedAppView) -> Firehose:
    return Firehose("ws://unused", appview, None, dict, lambda did, cid: f"https://blobs/{did}/{cid}")  # type: ignore[arg-type]


async def test_a_stale_profile_is_kept_when_the_appview_fails(firehose: Firehose, appview: ScriptedAppView) -> None:
    [first] = await firehose._prepare([text_post("a", "one")])
    assert first.post.author.display_name == "Alice"
    firehose._profiled_at[ALICE] -= PROFILE_TTL + 1  # due for a refresh, and the AppView is down
    appview.profiles_fail = True
    [second] = await firehose._prepare([text_post("b", "two")])
    assert (second.post.text, second.post.author.display_name) == ("two", "Alice")
    assert "app.bsky.feed.getPosts" not in appview.calls


async def test_an_unknown_author_without_profiles_goes_through_the_appview(firehose: Firehose, appview: ScriptedAppView) -> None:
    appview.profiles_fail = True
    uri = f"at://{ALICE}/app.bsky.feed.post/c"
    appview.views[uri] = {"uri": uri, "author": PROFILE, "record": {"text": "three", "createdAt": "2026-11-26T10:00:00Z"}}
    [item] = await firehose._prepare([text_post("c", "three")])
    assert (item.post.ref.id, item.post.author.display_name) == (uri, "Alice")
    assert appview.calls.count("app.bsky.feed.getPosts") == 1


async def test_a_repost_whose_reposter_cannot_be_named_waits_for_the_appview(
    firehose: Firehose, appview: ScriptedAppView
) -> None:
    appview.profiles_fail = True
    subject = f"at://{ALICE}/app.bsky.feed.post/d"
    appview.views[subject] = {"uri": subject, "author": PROFILE, "record": {"text": "four"}}
    repost = Event(2, SOURCE, "did:plc:bob", "app.bsky.feed.repost/r", {"subject": {"uri": subject}})
    with pytest.raises(Transient):  # the batch is tried again later, not relayed with a bare DID
        await firehose._prepare([repost])
