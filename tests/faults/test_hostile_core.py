"""Hostile input through the core: posts no chat and no database can take as they are, chat
commands with every argument malformed (property-based, through the core's command layer),
and config files with every key wrong (the real CLI entry point: exit 2, one line naming the
key). Nothing crashes, nothing is lost, bad input changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.bluesky import BlueskyAdapter
from adapters.discord import DiscordAdapter
from adapters.telegram import TelegramAdapter
from bridge import cli
from bridge.app import Bridge
from bridge.config import CORE_SECTIONS, SUBSCRIPTION_KEYS, config_from_dict
from bridge.model import ChatEvent, ChatTarget, ChatUser, EventKind
from bridge.storage.store import Store
from tests.conftest import FAKES, BridgeFactory, fake_config
from tests.fakes import FakeChat, FakeNetwork
from tests.faults.bridge_process import run_cli
from tests.faults.hostile import NASTY
from tests.faults.loop_runner import LoopRunner
from tests.faults.toml_file import write_config

# --- posts ------------------------------------------------------------------------------------

UNSTORABLE = [
    "lone high surrogate \ud800 in the middle",
    "\udfff lone low surrogate first",
    "NUL-free but RTL \u202e override and zero\u200bwidth",
    "x" * 10_000,
]


async def test_posts_with_broken_unicode_are_stored_and_delivered_and_block_nothing(
    make_bridge: BridgeFactory, db_url: str
) -> None:
    b = await make_bridge(db_url)
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    net: FakeNetwork = b.networks["fakenet"]  # type: ignore[assignment]
    await chat.command("r", "boss", "/follow alice.fake")
    for text in UNSTORABLE:
        await net.publish("alice.fake", text)
    await net.publish("alice.fake", "the post after them")
    sent = await chat.wait_sent(len(UNSTORABLE) + 1)
    texts = [d.post.text for d in sent]
    assert texts[0] == "lone high surrogate \ufffd in the middle"
    assert texts[1] == "\ufffd lone low surrogate first"
    assert texts[2:] == [*UNSTORABLE[2:], "the post after them"]
    for text in texts:
        text.encode("utf-8")  # every chat can encode what it is handed


# --- chat commands ------------------------------------------------------------------------------

VERBS = ["follow", "unfollow", "watch", "unwatch", "subs", "filter", "digest", "quiet", "inbox", "post", "dm", "status", "help"]
arguments = st.one_of(
    st.text(max_size=40),
    st.lists(
        st.sampled_from(
            [
                *NASTY,
                "alice.fake",
                "missing.fake",
                "bluesky:",
                "999",
                "-1",
                "on",
                "off",
                "include:",
                "22:00-07:00",
                "Mars/Olympus",
                "x" * 400,
            ]
        ),
        max_size=5,
    ).map(" ".join),
)


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoopRunner, Bridge]]:
    runner = LoopRunner()
    db = f"sqlite://{tmp_path_factory.mktemp('commands')}/bridge.sqlite3"
    bridge = Bridge(config_from_dict(fake_config(db), adapter_classes=FAKES), adapter_classes=FAKES)
    runner.run(bridge.start())
    try:
        yield runner, bridge
    finally:
        runner.run(bridge.stop())
        runner.close()


async def _typed(bridge: Bridge, verb: str, args: str, admin: bool, sender: bool) -> None:
    store = Store()
    net: FakeNetwork = bridge.networks["fakenet"]  # type: ignore[assignment]
    subs_before = await store.subscriptions()
    actions_before = list(net.actions)
    user = ChatUser("fakechat", "boss" if sender else "member", "Someone", is_room_admin=admin)
    event = ChatEvent(EventKind.COMMAND, ChatTarget("fakechat", "room"), user, command=verb, args=args)
    answer = await bridge.commands.handle(event)
    assert isinstance(answer.text, str) and answer.text.strip(), (verb, args)
    if not answer.ok:
        assert await store.subscriptions() == subs_before, (verb, args, answer.text)
        assert net.actions == actions_before, (verb, args, answer.text)
        assert "Traceback" not in answer.text
    if verb in ("post", "dm") and not sender:
        assert not answer.ok and net.actions == actions_before


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(verb=st.sampled_from(VERBS), args=arguments, admin=st.booleans(), sender=st.booleans())
def test_malformed_commands_get_an_answer_and_change_nothing(
    core: tuple[LoopRunner, Bridge], verb: str, args: str, admin: bool, sender: bool
) -> None:
    runner, bridge = core
    runner.run(_typed(bridge, verb, args, admin, sender))


# --- config files -------------------------------------------------------------------------------

ADAPTERS: dict[str, Any] = {"telegram": TelegramAdapter, "discord": DiscordAdapter, "bluesky": BlueskyAdapter}
GOOD: dict[str, dict[str, Any]] = {
    "database": {"url": "sqlite://bridge.sqlite3"},
    "bridge": {"admins": ["telegram:1"]},
    "telegram": {"token": "123:abc-real-looking"},
    "discord": {"token": "discord-real-looking-token"},
    "bluesky": {"identifier": "team.bsky.social", "password": "abcd-efgh-ijkl-mnop"},
}


def _wrong_value(spec: Any) -> Any:
    """A value of the wrong type for ``spec`` (or out of its choices/range)."""
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    if str in types:
        return 12345 if not spec.choices else "not-a-choice"
    if bool in types:
        return "yes"
    if int in types or float in types:
        return -5 if spec.min is not None else "many"
    if list in types:
        return "not a list"
    return 1


def _cases() -> list[tuple[str, str, Any]]:
    cases = []
    for section, keys in {**CORE_SECTIONS, **{n: c.CONFIG for n, c in ADAPTERS.items()}}.items():
        for key, spec in keys.items():
            cases.append((section, key, _wrong_value(spec)))
            cases.append((section, key + "x", "typo"))  # unknown key
    for key, spec in SUBSCRIPTION_KEYS.items():
        cases.append(("subscription", key, _wrong_value(spec)))
    return cases


@pytest.mark.parametrize(("section", "key", "value"), _cases(), ids=lambda v: str(v)[:20])
def test_every_wrong_key_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, key: str, value: Any
) -> None:
    sections = {name: dict(keys) for name, keys in GOOD.items()}
    subs = [{"network": "bluesky", "follow": "alice.bsky.social", "to": ["telegram:-100123"]}]
    if section == "subscription":
        subs[0][key] = value
    else:
        sections.setdefault(section, {})[key] = value  # a section GOOD leaves out ([http]) is added
    path = write_config(tmp_path / "config.toml", sections, subs)
    code = cli.main(["-c", str(path), "check"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ")
    assert key in err or section in err, err
    assert "Traceback" not in err


def test_the_real_command_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", {**GOOD, "telegram": {"tokn": "123:abc"}})
    proc = run_cli(path, "run")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0
    assert "[telegram] tokn: unknown key; did you mean 'token'?" in proc.stderr
