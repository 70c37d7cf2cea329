"""Render a relayed post as Telegram messages (HTML parse mode), without any I/O.

Every piece of network text goes through ``html.escape``: a post saying ``</b>`` or
``<a href=…>`` shows those characters and injects nothing. The plan says which messages to
send, in order; the adapter only executes it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from adapters.telegram.htmlsplit import html_visible_length, split_html, truncate_html
from bridge.model import Author, Button, ButtonAction, Link, Post

# Telegram: text 1-4096 characters, caption 0-1024 after entities parsing; album 2-10 items.
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_ALBUM = 10
# A quoted post is shown in brief.
QUOTE_BRIEF = 280
# Telegram: callback_data is 1-64 bytes.
MAX_CALLBACK_DATA = 64


@dataclass(frozen=True, slots=True)
class KeyboardButton:
    """One inline keyboard button: a URL button or a callback button."""

    label: str
    url: str = ""
    callback_data: str = ""


@dataclass(frozen=True, slots=True)
class Piece:
    """One message to send: ``text`` (HTML) alone, or as the caption of ``photos``.

    One photo → sendPhoto; two or more → sendMediaGroup (caption on the first item).
    ``keyboard`` rows are attached to this message (never to an album: Telegram refuses
    reply markup on media groups).
    """

    text: str
    photos: tuple[str, ...] = ()
    keyboard: tuple[tuple[KeyboardButton, ...], ...] = ()


def _is_web_url(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def link(url: str, label_html: str) -> str:
    """``<a href>`` over already escaped ``label_html``; plain label for a URL Telegram would refuse."""
    if not _is_web_url(url):
        return label_html
    return f'<a href="{html.escape(url, quote=True)}">{label_html}</a>'


def author_html(author: Author) -> str:
    """``<b>Display Name</b> @handle``, the handle linked to the author's profile."""
    handle = link(author.url, html.escape(f"@{author.handle}"))
    name = author.display_name.strip()
    return f"<b>{html.escape(name)}</b> {handle}" if name else f"<b>{handle}</b>"


def text_html(text: str, links: tuple[Link, ...] = ()) -> str:
    """``text`` escaped, with each link rendered over its span. Overlapping or out-of-range
    spans are ignored (the text is still shown)."""
    out: list[str] = []
    pos = 0
    for item in sorted(links, key=lambda k: (k.start, k.end)):
        if item.start < pos or item.end > len(text) or item.start >= item.end:
            continue
        out.append(html.escape(text[pos : item.start]))
        out.append(link(item.url, html.escape(text[item.start : item.end])))
        pos = item.end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def post_html(post: Post) -> str:
    """The whole post as Telegram HTML: author, repost line, text, other media, quote, link."""
    lines = [author_html(post.author)]
    if post.reposted_by is not None:
        lines.append(f"🔁 reposted by {author_html(post.reposted_by)}")
    if post.is_reply:
        lines.append("↩️ <i>reply</i>")
    body = [("\n".join(lines))]
    # A content warning is shown in clear; what it warns about only behind a spoiler.
    hide = (lambda markup: f"<tg-spoiler>{markup}</tg-spoiler>") if post.spoiler.strip() else (lambda markup: markup)
    if post.spoiler.strip():
        body.append(f"⚠️ <b>CW:</b> {html.escape(post.spoiler.strip())}")
    if post.text.strip():
        body.append(hide(text_html(post.text, post.links)))
    others = [m for m in post.media if m.kind != "image"]
    if others:
        body.append(
            "\n".join(link(m.url, hide(html.escape(f"🎞 {m.kind}" + (f": {m.alt}" if m.alt else "")))) for m in others)
        )
    if post.quote is not None:
        brief = html.escape(_brief(post.quote.text, QUOTE_BRIEF))
        quoted = f"💬 {author_html(post.quote.author)}"
        if brief:
            quoted += f"\n{brief}"
        if _is_web_url(post.quote.url):
            quoted += "\n" + link(post.quote.url, "quoted post")
        body.append(f"<blockquote>{quoted}</blockquote>")
    if _is_web_url(post.url):
        body.append(link(post.url, "Open original"))
    return "\n\n".join(body)


def _brief(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def keyboard(buttons: tuple[Button, ...]) -> tuple[tuple[KeyboardButton, ...], ...]:
    """Inline keyboard rows: Open (URL button) with Reply on the first row, then Like,
    Repost, Follow. Buttons Telegram would refuse (bad URL, callback_data over 64 bytes) are
    left out rather than failing the whole message."""
    first: list[KeyboardButton] = []
    second: list[KeyboardButton] = []
    for button in buttons:
        if button.action == ButtonAction.OPEN:
            if _is_web_url(button.url):
                first.append(KeyboardButton(button.label, url=button.url))
            continue
        if not button.token or len(button.token.encode()) > MAX_CALLBACK_DATA:
            continue
        row = first if button.action == ButtonAction.REPLY else second
        row.append(KeyboardButton(button.label, callback_data=button.token))
    return tuple(tuple(row) for row in (first, second) if row)


def plan_text(markup: str, rows: tuple[tuple[KeyboardButton, ...], ...] = ()) -> list[Piece]:
    """Text messages for ``markup``, split to fit; the keyboard goes on the last one."""
    parts = split_html(markup, MAX_TEXT)
    pieces = [Piece(part) for part in parts]
    pieces[-1] = Piece(pieces[-1].text, keyboard=rows)
    return pieces


def plan_post(post: Post, buttons: tuple[Button, ...] = ()) -> list[Piece]:
    """The messages that carry ``post``, in order. The first one is the post itself.

    * no photo: the text, split at 4096 characters;
    * one photo: sendPhoto with the text as caption when it fits 1024 characters, else a
      short caption and the full text in the following message(s) (never lost);
    * 2-10 photos: an album, then a text message with the buttons (albums can't carry a
      keyboard), holding the full text when it did not fit the caption.
    """
    markup = post_html(post)
    rows = keyboard(buttons)
    photos = tuple(m.url for m in post.media if m.kind == "image" and m.url)[:MAX_ALBUM]
    if not photos:
        return plan_text(markup, rows)
    fits = html_visible_length(markup) <= MAX_CAPTION
    short = truncate_html(author_html(post.author), MAX_CAPTION - 40) + "\n⬇️ <i>text below</i>"
    if len(photos) == 1:
        if fits:
            return [Piece(markup, photos=photos, keyboard=rows)]
        return [Piece(short, photos=photos), *plan_text(markup, rows)]
    album = Piece(markup if fits else short, photos=photos)
    if fits:
        follow_up = f"⬆️ {author_html(post.author)}"
        if _is_web_url(post.url):
            follow_up += " · " + link(post.url, "Open original")
        return [album, *plan_text(follow_up, rows)]
    return [album, *plan_text(markup, rows)]


def plan_notice(text: str, buttons: tuple[Button, ...] = ()) -> list[Piece]:
    """A plain-text notice or answer from the bridge, escaped and split to fit; ``buttons``
    (an Answer's) go on the last piece."""
    return plan_text(html.escape(text.strip() or "…"), answer_keyboard(buttons))


def answer_keyboard(buttons: tuple[Button, ...]) -> tuple[tuple[KeyboardButton, ...], ...]:
    """An answer's buttons as inline keyboard rows of three, in order (a /find answer has three
    per account: one row each; paging buttons share the last row). Buttons Telegram would
    refuse are left out, as in ``keyboard``."""
    rest: list[KeyboardButton] = []
    paging: list[KeyboardButton] = []
    for button in buttons:
        if button.action == ButtonAction.OPEN:
            if _is_web_url(button.url):
                rest.append(KeyboardButton(button.label, url=button.url))
        elif button.token and len(button.token.encode()) <= MAX_CALLBACK_DATA:
            row = paging if button.action == ButtonAction.PAGE else rest
            row.append(KeyboardButton(button.label, callback_data=button.token))
    rows = [tuple(rest[i : i + 3]) for i in range(0, len(rest), 3)]
    if paging:
        rows.append(tuple(paging))
    return tuple(rows)
