"""Direct messages, against tests/emulators/bsky_chat.py: Bluesky's chat service
(chat.bsky.convo.*) is not part of the reference AT Protocol stack, so these tests run the
adapter against an emulator of it that refuses requests without the ``atproto-proxy:
did:web:api.bsky.chat#bsky_chat`` header and checks the request shapes of the lexicons. The
accounts and handles are real ones on the reference stack."""

from __future__ import annotations

import pytest

from bridge.errors import NotFound, Permanent
from bridge.model import Source, SourceKind
from tests.adapters.bluesky.conftest import AdapterFactory, FakeHost, Team
from tests.atproto.harness import AtprotoStack
from tests.emulators.bsky_chat import PROXY, BskyChatEmulator

INBOX = Source("bluesky", SourceKind.INBOX, "")


async def test_dm_opens_the_conversation_and_sends_with_facets(
    atproto: AtprotoStack, make_adapter: AdapterFactory, chat_emulator: BskyChatEmulator, team: Team
) -> None:
    erin = await atproto.create_account("erin", "Erin")
    adapter, _ = await make_adapter(chat_service=chat_emulator.url)
    key = adapter.action_key()
    posted = await adapter.direct_message(erin.handle, "hello, see https://example.com/offer", key)

    convo = chat_emulator.convo_with(team.account.did, erin.did)
    [message] = chat_emulator.messages_in(convo.id)
    assert message["text"] == "hello, see https://example.com/offer"
    assert message["sender"]["did"] == team.account.did
    [facet] = message["facets"]
    assert facet["features"][0] == {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/offer"}
    assert posted.ref.id.endswith(message["id"])
    calls = [(method, nsid) for method, nsid, _ in chat_emulator.requests]
    assert calls == [
        ("GET", "chat.bsky.convo.getConvoForMembers"),
        ("GET", "chat.bsky.convo.getMessages"),  # a first try of this key's message, if any
        ("POST", "chat.bsky.convo.sendMessage"),
    ]
    assert all(headers.get("atproto-proxy") == PROXY for _, _, headers in chat_emulator.requests)

    # The same action tried again (its answer was lost, the bridge restarted): not sent twice.
    again = await adapter.direct_message(erin.handle, "hello, see https://example.com/offer", key)
    assert len(chat_emulator.messages_in(convo.id)) == 1 and again.ref == posted.ref
    # A new action with the same words is a new message.
    await adapter.direct_message(erin.handle, "hello, see https://example.com/offer", adapter.action_key())
    assert len(chat_emulator.messages_in(convo.id)) == 2


async def test_incoming_dm_reaches_the_inbox_and_a_reply_answers_in_the_same_conversation(
    atproto: AtprotoStack, make_adapter: AdapterFactory, chat_emulator: BskyChatEmulator, team: Team
) -> None:
    frank = await atproto.create_account("frank")
    chat_emulator.add_profile(frank.did, frank.handle, "Frank")
    convo = chat_emulator.convo_with(team.account.did, frank.did)
    chat_emulator.send_as(frank.did, convo.id, "an old message, before the inbox was on")
    adapter, host = await make_adapter(FakeHost({INBOX}), chat_service=chat_emulator.url)
    await adapter.poll_once()
    assert host.items == []

    chat_emulator.send_as(frank.did, convo.id, "can you help me?")
    await adapter.poll_once()
    [item] = host.items
    dm = item.post
    assert (dm.reason, dm.conversation, dm.text) == ("dm", convo.id, "can you help me?")
    assert dm.author.id == frank.did and dm.author.handle == frank.handle and dm.author.display_name == "Frank"

    await adapter.reply(dm, "sure, what's up?", adapter.action_key())
    assert [m["text"] for m in chat_emulator.messages_in(convo.id)][-1] == "sure, what's up?"
    await adapter.poll_once()
    assert len(host.items) == 1, "the team's own message is not relayed back"


async def test_bad_dms_are_refused_before_anything_is_sent(
    atproto: AtprotoStack, make_adapter: AdapterFactory, chat_emulator: BskyChatEmulator
) -> None:
    gina = await atproto.create_account("gina")
    adapter, _ = await make_adapter(chat_service=chat_emulator.url)
    with pytest.raises(Permanent, match="the text is 301 graphemes; Bluesky allows 300"):
        await adapter.direct_message(gina.handle, "é" * 301, adapter.action_key())
    with pytest.raises(Permanent, match="empty"):
        await adapter.direct_message(gina.handle, "   ", adapter.action_key())
    with pytest.raises(NotFound, match=r"no Bluesky account @nobody-here\.test"):
        await adapter.direct_message("nobody-here.test", "hello", adapter.action_key())
    assert chat_emulator.requests == []
