"""Account addresses as people write them, and the length of a status as the server counts
it, with the messages a person reads when one is refused."""

from __future__ import annotations

import pytest

from adapters.mastodon.handles import Handle, LengthRule, check_length, parse_handle, status_length
from tests.emulators.mastodon import url_length


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@alice@server.tld", Handle("alice", "server.tld")),
        ("alice@server.tld", Handle("alice", "server.tld")),
        ("  @alice@Server.TLD  ", Handle("alice", "server.tld")),
        ("mastodon:alice@server.tld", Handle("alice", "server.tld")),
        ("mastodon:@alice@server.tld", Handle("alice", "server.tld")),
        ("MASTODON:alice@server.tld", Handle("alice", "server.tld")),
        ("https://server.tld/@alice", Handle("alice", "server.tld")),
        ("https://server.tld/@alice/", Handle("alice", "server.tld")),
        ("https://server.tld/users/alice", Handle("alice", "server.tld")),
        ("https://server.tld/@alice@other.tld", Handle("alice", "other.tld")),
        ("http://server.tld/@a_b", Handle("a_b", "server.tld")),
        ("@kit.ty-cat@misskey.example", Handle("kit.ty-cat", "misskey.example")),
        ("@alice@bücher.example", Handle("alice", "bücher.example")),
        ("@alice", Handle("alice", "team.example")),  # with a local server given
    ],
)
def test_accepted_forms(text: str, expected: Handle) -> None:
    assert parse_handle(text, local_domain="team.example") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no Mastodon account given; write it as @alice@mastodon.social"),
        ("@alice", "does not say which server the account is on; write it as @alice@server.tld"),
        ("alice@localhost", "'localhost' in 'alice@localhost' is not a server name like mastodon.social"),
        ("alice@1.2.3.4", "is not a server name"),
        ("@@server.tld", "has no valid account name"),
        ("al ice@server.tld", "it has spaces"),
        ("al!ce@server.tld", "has no valid account name"),
        ("alice@-bad-.tld", "is not a server name"),
        ("alice@server..tld", "is not a server name"),
        ("https://server.tld/", "is not a Mastodon profile link"),
        ("https://server.tld/@alice/123456", "is not a Mastodon profile link"),
        ("https://user:pw@server.tld/@alice", "is not a profile link"),
        ("ftp://server.tld/@alice", "is not a Mastodon profile link"),
        ("x" * 500 + "@server.tld", "has no valid account name"),
        ("alice@" + "a" * 300 + ".tld", "is not a server name"),
    ],
)
def test_refused_with_a_message(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_handle(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


@pytest.mark.parametrize(
    ("text", "spoiler", "expected"),
    [
        ("hello", "", 5),
        ("hello", "cw", 7),  # the content warning counts
        ("see https://example.com/" + "x" * 100, "", 4 + 23),  # a URL counts 23
        ("@alice@a.very.long.server.example hi", "", len("@alice hi")),  # a mention by its local part
        ("👩‍👩‍👧‍👦 family", "", 8),  # one grapheme cluster
        ("e\u0301", "", 1),
        ("https://a.example, https://b.example.", "", 23 + 2 + 23 + 1),
    ],
)
def test_status_length_counts_as_the_server(text: str, spoiler: str, expected: int) -> None:
    assert status_length(text, spoiler) == expected
    assert url_length(spoiler + text, 23) == expected, "the emulator counts the same way"


def test_length_refusal_says_the_count() -> None:
    rule = LengthRule(max_characters=500, characters_reserved_per_url=23)
    assert check_length("a" * 476 + " https://example.com/" + "x" * 300, rule) is None  # 476 + 1 + 23 = 500
    text = "a" * 490 + " https://example.com/" + "x" * 300
    message = check_length(text, rule, server="mastodon.social")
    assert message == "the text is 514 characters as mastodon.social counts them (each link counts 23); it allows 500"
    assert check_length("   ", rule) == "the text is empty"
    assert check_length("x" * 10, LengthRule(5, 23)) is not None
