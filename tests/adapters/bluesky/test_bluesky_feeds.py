"""The adapter's feeds against the reference AT Protocol stack, with a fake core (FakeHost):
what it hands the core for followed accounts, searches and the inbox, in poll mode."""

from __future__ import annotations

import json

from bridge.model import Source, SourceKind
from tests.adapters.bluesky.conftest import AdapterFactory, FakeHost, Team
from tests.atproto.harness import AtprotoStack


def follow(did: str) -> Source:
    return Source("bluesky", SourceKind.FOLLOW, did)


async def test_followed_post_arrives_with_text_link_and_image(atproto: AtprotoStack, make_adapter: AdapterFactory) -> None:
    alice = await atproto.create_account("alice", "Alice Liddell")
    source = follow(alice.did)
    adapter, host = await make_adapter(FakeHost({source}))
    await adapter.poll_once()  # a new source starts from now: this only records the position
    assert host.items == []
    assert "timeline" in host.cursors  # one position for the timeline, whoever is followed

    text = "café news https://example.com/x ok"
    start = len("café news ".encode())
    end = start + len(b"https://example.com/x")
    facets = [
        {
            "index": {"byteStart": start, "byteEnd": end},
            "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/x"}],
        }
    ]
    rec = await atproto.post(alice, text, facets=facets, images=[{"alt": "a red box"}])
    await atproto.process_all()
    items = await host.wait_items(lambda items: len(items) >= 1)
    await adapter.poll_once()
    assert len(host.items) == 1, "a post is handed over once"
    item = items[0]
    post = item.post
    assert item.source == source
    assert post.ref.id == rec.uri
    assert post.text == text
    assert post.author.id == alice.did and post.author.handle == alice.handle
    assert post.author.display_name == "Alice Liddell"
    assert post.url == f"https://bsky.app/profile/{alice.handle}/post/{rec.uri.rsplit('/', 1)[-1]}"
    assert [(post.text[link.start : link.end], link.url) for link in post.links] == [
        ("https://example.com/x", "https://example.com/x")
    ]
    assert [(m.kind, m.alt) for m in post.media] == [("image", "a red box")]
    assert post.media[0].url.startswith("http")
    assert post.created_at.tzinfo is not None
    # the team account follows alice on Bluesky now, and the adapter remembers it made that follow
    assert alice.did in json.loads(host.state["managed_follows"])


async def test_replies_reposts_and_quotes_of_followed_accounts(atproto: AtprotoStack, make_adapter: AdapterFactory) -> None:
    alice = await atproto.create_account("alice", "Alice")
    bob = await atproto.create_account("bob", "Bob")
    original = await atproto.post(bob, "bob's original")
    source = follow(alice.did)
    adapter, host = await make_adapter(FakeHost({source}))
    await adapter.poll_once()

    reply = await atproto.post(alice, "alice replies", reply=original)
    await atproto.repost(alice, original)
    quote = await atproto.post(alice, "alice quotes", quote=original)
    await atproto.post(bob, "bob alone is not followed")
    await atproto.process_all()
    items = await host.wait_items(lambda items: len(items) >= 3)
    by_uri = {(it.post.ref.id, bool(it.post.reposted_by)): it.post for it in items}
    assert set(by_uri) == {(reply.uri, False), (original.uri, True), (quote.uri, False)}
    assert by_uri[(reply.uri, False)].reply_to is not None and by_uri[(reply.uri, False)].reply_to.id == original.uri
    repost = by_uri[(original.uri, True)]
    assert repost.author.id == bob.did and repost.reposted_by is not None and repost.reposted_by.id == alice.did
    assert repost.text == "bob's original"
    quoted = by_uri[(quote.uri, False)].quote
    assert quoted is not None and quoted.text == "bob's original" and quoted.author.handle == bob.handle
    assert all(it.source == source for it in items)


async def test_query_relays_matching_posts_only_once(atproto: AtprotoStack, make_adapter: AdapterFactory) -> None:
    carol = await atproto.create_account("carol")
    word = f"zebracorn{carol.handle.split('.')[0]}"
    source = Source("bluesky", SourceKind.QUERY, word)
    await atproto.post(carol, f"an old {word} post, before the watch")
    await atproto.process_all()
    adapter, host = await make_adapter(FakeHost({source}))
    await adapter.poll_once()
    assert host.items == []

    match = await atproto.post(carol, f"new {word} sighting")
    await atproto.post(carol, "nothing to see here")
    await atproto.process_all()
    await adapter.poll_once()
    await adapter.poll_once()
    assert [it.post.ref.id for it in host.items] == [match.uri]


async def test_mention_of_the_team_arrives_in_the_inbox_even_when_chat_is_down(
    atproto: AtprotoStack, make_adapter: AdapterFactory, team: Team
) -> None:
    dave = await atproto.create_account("dave", "Dave")
    source = Source("bluesky", SourceKind.INBOX, "")
    # nothing listens on port 9: the DM half of the inbox fails, notifications must still flow
    adapter, host = await make_adapter(FakeHost({source}), chat_service="http://127.0.0.1:9")
    await adapter.poll_once()
    text = f"hey @{team.handle} look"
    start = len(b"hey ")
    facets = [
        {
            "index": {"byteStart": start, "byteEnd": start + len(team.handle) + 1},
            "features": [{"$type": "app.bsky.richtext.facet#mention", "did": team.account.did}],
        }
    ]
    mention = await atproto.post(dave, text, facets=facets)
    await atproto.process_all()
    items = await host.wait_items(lambda items: len(items) >= 1)
    assert [(it.post.ref.id, it.post.reason) for it in items] == [(mention.uri, "mention")]


async def test_follows_made_for_a_subscription_are_undone_with_it_others_are_kept(
    atproto: AtprotoStack, make_adapter: AdapterFactory, team: Team
) -> None:
    gail = await atproto.create_account("gail")
    hank = await atproto.create_account("hank")
    await atproto.follow(team.account, hank)  # the team follows hank on its own
    await atproto.process_all()
    adapter, host = await make_adapter(FakeHost({follow(gail.did), follow(hank.did)}))
    await adapter.poll_once()
    assert set(json.loads(host.state["managed_follows"])) == {gail.did}, "hank was followed already"

    host.set_sources()  # both subscriptions removed
    await adapter.poll_once()
    await atproto.process_all()
    follows = await atproto.query_appview("app.bsky.graph.getFollows", actor=team.account.did)
    assert [f["did"] for f in follows["follows"]] == [hank.did]
    assert json.loads(host.state["managed_follows"]) == {}


async def test_recent_gives_the_newest_posts_newest_last(atproto: AtprotoStack, make_adapter: AdapterFactory) -> None:
    ivy = await atproto.create_account("ivy")
    uris = [(await atproto.post(ivy, f"post {i}")).uri for i in range(3)]
    await atproto.process_all()
    adapter, _ = await make_adapter()
    posts = await adapter.recent(follow(ivy.did), 2)
    assert [p.ref.id for p in posts] == uris[1:]
