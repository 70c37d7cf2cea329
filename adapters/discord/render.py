"""How a relayed post looks on Discord: one embed plus a row of buttons. Pure functions."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace

import discord

from bridge.model import Button, ButtonAction, Delivery, Post

# Discord embed limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
DESCRIPTION_LIMIT = 4096
AUTHOR_NAME_LIMIT = 256
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
TITLE_LIMIT = 256
EMBEDS_TOTAL_LIMIT = 6000
CONTENT_LIMIT = 2000
# Discord: a message nonce is at most 25 characters.
NONCE_LIMIT = 25
# Discord: a thread name is 1-100 characters.
THREAD_NAME_LIMIT = 100
# A post longer than one embed's description goes out as up to this many messages; what is left
# after them is shortened with a link to the original.
MAX_PARTS = 5

NO_MENTIONS = discord.AllowedMentions.none()
ELLIPSIS = "…"
_BARE_BRACKET = re.compile(r"(?<!\\)([\[\]])")  # a bracket escape_markdown left unescaped

_NETWORK_NAMES = {"bluesky": "Bluesky", "mastodon": "Mastodon", "x": "X"}


def network_label(network: str) -> str:
    """The network's name as people write it (``bluesky`` → ``Bluesky``)."""
    return _NETWORK_NAMES.get(network, network.title())


def delivery_nonce(delivery: Delivery, part: int = 0) -> str:
    """A nonce for part ``part`` of ``delivery``: stable across retries and restarts, distinct
    per part, at most 25 characters, so Discord (with enforce_nonce) returns the message a
    part created before instead of sending it a second time."""
    seed = delivery.key if part == 0 else f"{delivery.key}\0{part}"
    return hashlib.sha256(seed.encode()).hexdigest()[:NONCE_LIMIT]


def _escape(text: str) -> str:
    # Network text is not Discord markdown: a post with *stars* or `ticks` must read as written.
    # Brackets are escaped too: escape_markdown catches a masked link only inside one word, and
    # "[click me](https://evil.example)" spread over words would otherwise become a link.
    return _BARE_BRACKET.sub(r"\\\1", discord.utils.escape_markdown(text, ignore_links=False))


def _link_markdown(label: str, url: str) -> str:
    if not label.strip():
        # A link on blank text (a facet over a line break) shows nothing to click on the
        # network either; showing its URL instead would put words in the post it never had.
        return _escape(label)
    # A masked link's text is one line in Discord: the whitespace around it stays outside the
    # link (a facet that starts on a line break keeps the break), and inside it is one space.
    core = label.strip()
    lead, trail = label[: len(label) - len(label.lstrip())], label[len(label.rstrip()) :]
    if core == url:
        return f"{lead}<{url}>{trail}"
    safe_label = _escape(" ".join(core.split()))
    safe_url = url.replace(")", "%29").replace(" ", "%20")
    return f"{lead}[{safe_label}]({safe_url}){trail}"


def _segments(post: Post) -> list[str]:
    """The post's text as markdown pieces; a link is one piece, so shortening never cuts one."""
    pieces: list[str] = []
    pos = 0
    for link in sorted(post.links, key=lambda item: item.start):
        if link.start < pos or link.end > len(post.text) or link.start >= link.end:
            continue  # overlapping or out-of-range facet: keep the text as is
        if link.start > pos:
            pieces.extend(_escape(word) for word in _split_words(post.text[pos : link.start]))
        pieces.append(_link_markdown(post.text[link.start : link.end], link.url))
        pos = link.end
    if pos < len(post.text):
        pieces.extend(_escape(word) for word in _split_words(post.text[pos:]))
    return pieces


def _split_words(text: str) -> list[str]:
    """Split keeping the separators, so that joining the pieces gives the text back."""
    words: list[str] = []
    current = ""
    for char in text:
        current += char
        if char.isspace():
            words.append(current)
            current = ""
    if current:
        words.append(current)
    return words


def _spoiler_head(post: Post) -> str:
    """The content warning, shown in clear before the hidden text ("" when there is none)."""
    warning = " ".join(post.spoiler.split())
    return f"⚠️ **CW:** {_escape(warning)}\n" if warning else ""


def _hidden(text: str) -> str:
    return f"||{text}||" if text.strip() else text


def description(post: Post, limit: int = DESCRIPTION_LIMIT) -> str:
    """The post's text with its links as markdown, at most ``limit`` characters. Longer text is
    shortened at a word and ends with a link to the original, never dropped. Behind a content
    warning the warning is shown in clear and the text inside ``||…||``."""
    head = _spoiler_head(post)
    if head:
        return head + _hidden(description(replace(post, spoiler=""), max(1, limit - len(head) - 4)))
    pieces = _segments(post)
    full = "".join(pieces)
    if len(full) <= limit:
        return full
    return _shorten(pieces, limit, post.url)


def description_parts(post: Post, limit: int = DESCRIPTION_LIMIT, max_parts: int = MAX_PARTS) -> list[str]:
    """The post's text as markdown cut into parts of at most ``limit`` characters, at words
    (a link is never cut); beyond ``max_parts`` parts the last is shortened with a link to the
    original. One part when it fits. Behind a content warning every part's text is inside
    ``||…||`` and the first part starts with the warning in clear."""
    head = _spoiler_head(post)
    if head:
        parts = description_parts(replace(post, spoiler=""), max(1, limit - len(head) - 4), max_parts)
        return [(head if i == 0 else "") + _hidden(part) for i, part in enumerate(parts)]
    pieces = _fit_pieces(_segments(post), limit)
    parts: list[list[str]] = [[]]
    size = 0
    for index, piece in enumerate(pieces):
        if size + len(piece) > limit and parts[-1]:
            if len(parts) == max_parts:
                parts[-1] = [_shorten(parts[-1] + pieces[index:], limit, post.url)]
                break
            parts.append([])
            size = 0
        parts[-1].append(piece)
        size += len(piece)
    return ["".join(part) for part in parts]


def _fit_pieces(pieces: list[str], limit: int) -> list[str]:
    """``pieces`` with any longer than ``limit`` cut, never between an escaping backslash and
    the character it escapes."""
    out: list[str] = []
    for piece in pieces:
        while len(piece) > limit:
            cut = limit
            while cut > 1 and piece[:cut].endswith("\\") and (cut - len(piece[:cut].rstrip("\\"))) % 2:
                cut -= 1
            out.append(piece[:cut])
            piece = piece[cut:]
        out.append(piece)
    return out


def _shorten(pieces: list[str], limit: int, url: str) -> str:
    """``pieces`` joined and shortened to ``limit`` characters, ending with a link to ``url``."""
    tail = f"{ELLIPSIS}\n[Read the full post]({url})" if url else ELLIPSIS
    budget = limit - len(tail)
    out = ""
    for piece in pieces:
        if len(out) + len(piece) > budget:
            if not piece.startswith(("[", "<")):  # a word, not a link: cut it rather than drop it
                cut = piece[: budget - len(out)]
                # never end on a lone escaping backslash, which would escape the ellipsis
                while cut.endswith("\\") and (len(cut) - len(cut.rstrip("\\"))) % 2:
                    cut = cut[:-1]
                out += cut
            break
        out += piece
    return out.rstrip() + tail


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _image_url(post: Post) -> str:
    for media in post.media:
        if media.kind == "image" and media.url:
            return media.url
    for media in post.media:
        if media.thumb_url:
            return media.thumb_url
    return ""


def post_embeds(post: Post) -> list[discord.Embed]:
    """The embeds of ``post``, one per message: the post (see ``post_embed``) with the first
    part of its text, then one embed per further part of a text too long for one."""
    texts = description_parts(post)
    embeds = [post_embed(post, texts[0])]
    network = network_label(post.ref.network)
    for number, text in enumerate(texts[1:], 2):
        more = discord.Embed(description=text or None, url=post.url or None, colour=discord.Colour.blurple())
        more.set_footer(text=_clip(f"{network} · {post.author.label} · part {number} of {len(texts)}", 2048))
        embeds.append(more)
    return embeds


def post_embed(post: Post, text: str | None = None) -> discord.Embed:
    """One embed for ``post``: author (name, handle, avatar), text (``text`` when given, else
    the post's own, shortened to fit), image, quoted post in brief, timestamp, the network in
    the footer and the original's URL. Within every Discord limit."""
    network = network_label(post.ref.network)
    title = f"Reply on {network}" if post.is_reply else f"Post on {network}"
    embed = discord.Embed(
        title=title,
        url=post.url or None,
        description=(description(post) if text is None else text) or None,
        timestamp=post.created_at,
        colour=discord.Colour.blurple(),
    )
    embed.set_author(
        name=_clip(post.author.label, AUTHOR_NAME_LIMIT),
        url=post.author.url or None,
        icon_url=post.author.avatar_url or None,
    )
    image = _image_url(post)
    if image:
        embed.set_image(url=image)
    if post.quote is not None:
        quote_link = f"\n[Open quoted post]({post.quote.url})" if post.quote.url else ""
        quote_text = _clip(_escape(post.quote.text), 300 - len(quote_link) if quote_link else 300)
        embed.add_field(
            name=_clip(f"Quoting {post.quote.author.label}", FIELD_NAME_LIMIT),
            value=_clip((quote_text or "(no text)") + quote_link, FIELD_VALUE_LIMIT),
            inline=False,
        )
    footer = network
    if post.reposted_by is not None:
        footer = _clip(f"{network} · reposted by {post.reposted_by.label}", 2048)
    embed.set_footer(text=footer)
    return embed


def embed_size(embed: discord.Embed) -> int:
    """The characters Discord counts toward the 6000 per-message embed total."""
    return len(embed)


_STYLES = {
    ButtonAction.REPLY: discord.ButtonStyle.primary,
    ButtonAction.LIKE: discord.ButtonStyle.secondary,
    ButtonAction.REPOST: discord.ButtonStyle.secondary,
    ButtonAction.FOLLOW: discord.ButtonStyle.secondary,
    ButtonAction.APPROVE: discord.ButtonStyle.success,
    ButtonAction.REJECT: discord.ButtonStyle.danger,
}


def buttons_view(buttons: tuple[Button, ...]) -> discord.ui.View | None:
    """A view with one button per Button: OPEN is a link; the others carry the core's token as
    custom_id. The view is stopped before it is sent: presses are handled by the client's
    on_interaction for any custom_id, so they keep working after a restart and nothing is kept
    in memory per message."""
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for button in buttons[:25]:  # Discord: 5 rows of 5 buttons
        label = _clip(button.label, 80)  # Discord: button label ≤ 80
        if button.action is ButtonAction.OPEN:
            if button.url:
                view.add_item(discord.ui.Button(style=discord.ButtonStyle.link, label=label, url=button.url))
        elif button.token:
            style = _STYLES.get(button.action, discord.ButtonStyle.secondary)
            view.add_item(discord.ui.Button(style=style, label=label, custom_id=button.token))
    view.stop()
    return view if view.children else None


# The compact format (/format compact): this many characters of the text, on one line.
COMPACT_WORDS = 100


def compact_text(post: Post) -> str:
    """The post on one line, for rooms that follow many accounts: author, the first words of
    the text (a content warning instead, when there is one) and the link to the original, in
    angle brackets so that Discord shows no preview under it. Markdown in the text is escaped."""
    line = f"**{_escape(post.author.label)}**"
    if post.reposted_by is not None:
        line = f"🔁 {line}"
    text = " ".join(post.text.split())
    words = f"⚠️ CW: {' '.join(post.spoiler.split())}" if post.spoiler.strip() else _clip(text, COMPACT_WORDS)
    if not words and post.media:
        words = f"[{post.media[0].kind}]"
    if words:
        line += f": {_escape(words)}"
    if post.url.startswith(("https://", "http://")):
        line += f" <{post.url}>"
    return _clip(line, CONTENT_LIMIT)


def notice_text(text: str) -> str:
    """A plain-text notice from the bridge, clipped to Discord's 2000-character content limit."""
    return _clip(text, CONTENT_LIMIT)


def thread_name(post: Post) -> str:
    """A thread name for the post: author and the start of the text, 1-100 characters."""
    first_line = post.text.strip().splitlines()[0] if post.text.strip() else ""
    name = f"{post.author.handle}: {first_line}" if first_line else post.author.handle
    return _clip(name, THREAD_NAME_LIMIT) or "post"
