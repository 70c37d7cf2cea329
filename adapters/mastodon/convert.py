"""Mastodon entities → ``bridge.model``.

A Status (docs: entities/Status.md) becomes a ``Post``: the author with display name and full
``acct`` (``user@server``, also for accounts of the answering server), a boost as the
original post with ``reposted_by``, ``reply_to`` from ``in_reply_to_id``, media with their
alt text (``description``), the status's web URL, and its HTML as plain text with links
(``html.py``). A Notification of type ``mention`` and a Conversation (docs:
entities/Notification.md, Conversation.md) become inbox posts.

``Post`` has no field for a content warning yet, so ``convert_status`` returns a
``Converted``: the post plus ``content_warning`` (``spoiler_text``), ``sensitive`` and
``visibility``. The renderer needs the warning apart from the text to hide the text behind
it (Telegram ``tg-spoiler``, Discord ``||…||``); until ``Post`` carries it,
``Converted.folded()`` puts it as a first line ("CW: …") so that it is never lost.

Every field is read defensively: a remote server's JSON is hostile input; a status that lacks
what a post needs (an id, an account) raises ValueError, which the caller logs and skips.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from adapters.mastodon.html import html_to_text
from bridge.model import Author, Link, Media, Post, QuotedPost, Ref

NETWORK = "mastodon"

# docs: entities/MediaAttachment.md — type is unknown, image, gifv, video or audio.
_MEDIA_KINDS = {"image": "image", "gifv": "gif", "video": "video", "audio": "audio"}


@dataclass(frozen=True, slots=True)
class Converted:
    """A post and what ``Post`` cannot hold yet: the content warning (empty when none), whether
    the media are marked sensitive, and the status's visibility (a reply follows it)."""

    post: Post
    content_warning: str = ""
    sensitive: bool = False
    visibility: str = "public"

    def folded(self) -> Post:
        """The post with its content warning as the first line of the text (links shifted),
        for renderers that cannot show a spoiler yet."""
        if not self.content_warning:
            return self.post
        head = f"CW: {self.content_warning}\n\n"
        links = tuple(Link(link.start + len(head), link.end + len(head), link.url) for link in self.post.links)
        return replace(self.post, text=head + self.post.text, links=links)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_time(value: Any) -> datetime:
    """An ISO 8601 timestamp (``2022-08-30T23:05:46.839Z``) as an aware datetime; now when it
    is missing or unreadable (a hostile server must not stop the relay)."""
    text = _str(value)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def full_acct(acct: str, local_domain: str) -> str:
    """``user@domain`` for an ``acct`` (Mastodon omits the domain for its own accounts)."""
    acct = acct.strip().lstrip("@")
    if acct and "@" not in acct and local_domain:
        return f"{acct}@{local_domain}"
    return acct


def convert_account(account: Any, local_domain: str) -> Author:
    """docs: entities/Account.md. Raises ValueError without an id."""
    a = _dict(account)
    account_id = _str(a.get("id"))
    if not account_id:
        raise ValueError("account without an id")
    acct = full_acct(_str(a.get("acct")) or _str(a.get("username")), local_domain)
    return Author(
        id=account_id,
        handle=acct,
        display_name=" ".join(_str(a.get("display_name")).split())[:200],
        avatar_url=_str(a.get("avatar_static")) or _str(a.get("avatar")),
        url=_str(a.get("url")),
    )


def _media(attachments: Any) -> tuple[tuple[Media, ...], list[str]]:
    """Media the chat can show, and the links of attachments it cannot (``unknown``: a remote
    file the server did not fetch), so that nothing is lost."""
    media: list[Media] = []
    extra: list[str] = []
    for m in attachments if isinstance(attachments, list) else []:
        m = _dict(m)
        kind = _MEDIA_KINDS.get(_str(m.get("type")))
        url = _str(m.get("url")) or _str(m.get("remote_url"))
        alt = " ".join(_str(m.get("description")).split())
        if kind and url:
            media.append(Media(kind=kind, url=url, alt=alt, thumb_url=_str(m.get("preview_url"))))
        elif url or _str(m.get("remote_url")):
            extra.append(_str(m.get("remote_url")) or url)
    return tuple(media), extra


def _quote(status: Mapping[str, Any], local_domain: str) -> QuotedPost | None:
    # Mastodon 4.5 quotes: {"state": "accepted", "quoted_status": Status}; others send nothing.
    q = _dict(status.get("quote"))
    quoted = _dict(q.get("quoted_status"))
    if not quoted or _str(q.get("state")) not in ("", "accepted"):
        return None
    try:
        author = convert_account(quoted.get("account"), local_domain)
    except ValueError:
        return None
    rendered = html_to_text(_str(quoted.get("content")), mentions=_mention_map(quoted), local_domain=local_domain)
    return QuotedPost(author=author, text=rendered.text, url=_str(quoted.get("url")) or _str(quoted.get("uri")))


def _mention_map(status: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in status.get("mentions") if isinstance(status.get("mentions"), list) else []:
        m = _dict(m)
        url, acct = _str(m.get("url")), _str(m.get("acct"))
        if url and acct:
            out[url] = acct
    return out


def convert_status(status: Any, local_domain: str, *, reason: str = "", conversation: str = "") -> Converted:
    """A Status (or a boost of one) as a post. ``local_domain`` is the domain of the server
    that answered (its accounts' ``acct`` has no domain). Raises ValueError when the status
    lacks an id or an account."""
    s = _dict(status)
    reposted_by: Author | None = None
    boosted_at = None
    inner = _dict(s.get("reblog"))
    if inner:
        reposted_by = convert_account(s.get("account"), local_domain)
        boosted_at = parse_time(s.get("created_at"))
        s = inner
    status_id = _str(s.get("id"))
    if not status_id:
        raise ValueError("status without an id")
    author = convert_account(s.get("account"), local_domain)
    rendered = html_to_text(_str(s.get("content")), mentions=_mention_map(s), local_domain=local_domain)
    text, links = rendered.text, list(rendered.links)
    media, extra = _media(s.get("media_attachments"))
    for url in extra:
        text += ("\n" if text else "") + "📎 "
        links.append(Link(len(text), len(text) + len(url), url))
        text += url
    reply_to = _str(s.get("in_reply_to_id"))
    post = Post(
        ref=Ref(NETWORK, status_id),
        author=author,
        text=text,
        created_at=boosted_at or parse_time(s.get("created_at")),
        url=_str(s.get("url")) or _str(s.get("uri")),
        links=tuple(links),
        media=media,
        reply_to=Ref(NETWORK, reply_to) if reply_to else None,
        quote=_quote(s, local_domain),
        reposted_by=reposted_by,
        reason=reason,
        conversation=conversation,
    )
    visibility = _str(s.get("visibility")) or "public"
    return Converted(
        post=post,
        content_warning=" ".join(_str(s.get("spoiler_text")).split())[:500],
        sensitive=bool(s.get("sensitive")),
        visibility=visibility,
    )


def convert_notification(notification: Any, local_domain: str, me: str = "") -> Converted | None:
    """A notification as an inbox post, or None for the kinds that are not (favourite,
    reblog, follow, …). Only ``mention`` carries a status someone wrote to the team account;
    a direct one is reason ``dm``, a reply to ``me`` (the team account's id) ``reply``."""
    n = _dict(notification)
    if _str(n.get("type")) != "mention" or not _dict(n.get("status")):
        return None
    status = _dict(n.get("status"))
    if _str(status.get("visibility")) == "direct":
        reason = "dm"
    elif me and _str(status.get("in_reply_to_account_id")) == me:
        reason = "reply"
    else:
        reason = "mention"
    return convert_status(status, local_domain, reason=reason)


def convert_conversation(conversation: Any, local_domain: str, me: str = "") -> Converted | None:
    """A direct conversation's last status as an inbox post (reason ``dm``, ``conversation``
    set so that a reply in chat answers in it), or None when the team account (``me``) wrote
    it or there is none."""
    c = _dict(conversation)
    last = _dict(c.get("last_status"))
    conversation_id = _str(c.get("id"))
    if not last or not conversation_id:
        return None
    if me and _str(_dict(last.get("account")).get("id")) == me:
        return None
    return convert_status(last, local_domain, reason="dm", conversation=conversation_id)
