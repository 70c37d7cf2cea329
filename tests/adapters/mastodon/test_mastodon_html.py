"""Status HTML → plain text and links: what a reader sees in chat, for the HTML Mastodon and
compatible servers write, and for hostile HTML that must neither crash nor leak markup."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.mastodon.html import html_to_text

MENTION = (
    '<span class="h-card" translate="no"><a href="https://other.example/@bob" class="u-url mention">@<span>bob</span></a></span>'
)
HASHTAG = '<a href="https://team.example/tags/cats" class="mention hashtag" rel="tag">#<span>cats</span></a>'
LONG = (
    '<a href="https://example.com/a/very/long/path/that/goes/on" rel="nofollow noopener" translate="no" target="_blank">'
    '<span class="invisible">https://</span><span class="ellipsis">example.com/a/very/long/path/t</span>'
    '<span class="invisible">hat/goes/on</span></a>'
)
SHORT = (
    '<a href="https://x.example/p" rel="nofollow noopener" target="_blank"><span class="invisible">https://</span>'
    '<span class="">x.example/p</span><span class="invisible"></span></a>'
)


@pytest.mark.parametrize(
    ("html", "text", "links"),
    [
        ("<p>Hello world</p>", "Hello world", []),
        ("<p>one</p><p>two</p>", "one\n\ntwo", []),
        ("<p>line<br>break<br/>again<br />end</p>", "line\nbreak\nagain\nend", []),
        (f"<p>hi {MENTION}!</p>", "hi @bob@other.example!", [("@bob@other.example", "https://other.example/@bob")]),
        (f"<p>{HASHTAG} rocks</p>", "#cats rocks", [("#cats", "https://team.example/tags/cats")]),
        (
            f"<p>see {LONG}</p>",
            "see example.com/a/very/long/path/t…",
            [("example.com/a/very/long/path/t…", "https://example.com/a/very/long/path/that/goes/on")],
        ),
        (f"<p>{SHORT}</p>", "x.example/p", [("x.example/p", "https://x.example/p")]),
        ("<p>fish &amp; chips &lt;3 &quot;q&quot; &#39;s&#39; &#x1F41F; &nbsp;x</p>", "fish & chips <3 \"q\" 's' 🐟 \xa0x", []),
        ("<p>  lots   of\n\n  space  </p>", "lots of space", []),
        ("<blockquote><p>quoted</p></blockquote><p>reply</p>", "quoted\n\nreply", []),
        ("<ul><li>one</li><li>two</li></ul>", "• one\n• two", []),
        ("<pre>keep   this\n  layout</pre>", "keep   this\n  layout", []),
        ("<p><strong>bold</strong> <em>it</em> <code>x()</code></p>", "bold it x()", []),
        # Pleroma/Akkoma write plain text with <br> and no <p>
        ("first line<br>second line", "first line\nsecond line", []),
    ],
)
def test_status_html(html: str, text: str, links: list[tuple[str, str]]) -> None:
    rendered = html_to_text(html, local_domain="team.example")
    assert rendered.text == text
    assert [(rendered.text[link.start : link.end], link.url) for link in rendered.links] == links


def test_mentions_use_the_status_mentions_list() -> None:
    local = '<a href="https://team.example/@carol" class="u-url mention">@<span>carol</span></a>'
    # an account whose WebFinger domain differs from its web host
    moved = '<a href="https://social.big.example/@dan" class="u-url mention">@<span>dan</span></a>'
    rendered = html_to_text(
        f"<p>{local} {moved}</p>",
        mentions={"https://team.example/@carol": "carol", "https://social.big.example/@dan": "dan@big.example"},
        local_domain="team.example",
    )
    assert rendered.text == "@carol@team.example @dan@big.example"


@pytest.mark.parametrize(
    ("html", "text", "urls"),
    [
        ('<script>alert("x")</script><p>safe</p>', "safe", []),
        ("<style>p{display:none}</style>visible", "visible", []),
        ('<a href="javascript:alert(1)">click</a>', "click", []),
        ('<a href="data:text/html,&lt;script&gt;">data</a>', "data", []),
        ('<a href="https://ok.example/\x00evil">nul</a>', "nul", []),
        ("<p>unclosed <b>bold <i>and <a href='https://a.example'>link", "unclosed bold and link", ["https://a.example"]),
        ("</p></a></span>stray ends", "stray ends", []),
        ("<a href='https://a.example'><a href='https://b.example'>nested</a></a>", "nested", ["https://b.example"]),
        ("<img src=x onerror=alert(1)>image gone", "image gone", []),
        ("<!-- comment -->text<![CDATA[ cdata ]]>", "text", []),
        ("<p>bell\x07 and \x1b[31mansi</p>", "bell and [31mansi", []),
        ("<" * 50 + "text", "<" * 50 + "text", []),
        ("&#0;&#xD800;&#1114112;ok", "\ufffd\ufffd\ufffdok", []),
        ('<span class="invisible">hidden</span>shown', "shown", []),
        ("<div>" * 5000 + "deep" + "</div>" * 5000, "deep", []),
        ("", "", []),
        ('<a href="https://a.example"></a>', "a.example", ["https://a.example"]),
        ('<a href="https://a.example"><span class="invisible">https://a.example</span></a>', "a.example", ["https://a.example"]),
        ('<svg><a href="https://in.svg">x</a></svg>after', "after", []),
    ],
)
def test_hostile_html(html: str, text: str, urls: list[str]) -> None:
    rendered = html_to_text(html)
    assert rendered.text == text
    assert [link.url for link in rendered.links] == urls


@given(st.text(alphabet=st.sampled_from(list("<>/=\"' &#;apbrspanclassinvisible:hxt\n")), max_size=200))
def test_any_input_gives_consistent_output(html: str) -> None:
    rendered = html_to_text(html)
    for link in rendered.links:
        assert 0 <= link.start < link.end <= len(rendered.text)
        assert link.url.startswith(("http://", "https://"))
    assert rendered.text == rendered.text.strip()
