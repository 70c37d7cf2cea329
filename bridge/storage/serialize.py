"""Post ⇄ JSON, so the ledger can keep the exact post it must deliver across restarts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.model import Author, Link, Media, Post, QuotedPost, Ref


def _author(a: Author) -> dict[str, str]:
    return {"id": a.id, "handle": a.handle, "display_name": a.display_name, "avatar_url": a.avatar_url, "url": a.url}


def post_to_json(post: Post) -> dict[str, Any]:
    return {
        "ref": [post.ref.network, post.ref.id],
        "author": _author(post.author),
        "text": post.text,
        "created_at": post.created_at.isoformat(),
        "url": post.url,
        "links": [[x.start, x.end, x.url] for x in post.links],
        "media": [[m.kind, m.url, m.alt, m.thumb_url] for m in post.media],
        "reply_to": [post.reply_to.network, post.reply_to.id] if post.reply_to else None,
        "quote": {"author": _author(post.quote.author), "text": post.quote.text, "url": post.quote.url} if post.quote else None,
        "reposted_by": _author(post.reposted_by) if post.reposted_by else None,
        "reason": post.reason,
        "conversation": post.conversation,
        "native": post.native,
        "spoiler": post.spoiler,
    }


def post_from_json(data: dict[str, Any]) -> Post:
    quote = data.get("quote")
    return Post(
        ref=Ref(*data["ref"]),
        author=Author(**data["author"]),
        text=data["text"],
        created_at=datetime.fromisoformat(data["created_at"]),
        url=data["url"],
        links=tuple(Link(*x) for x in data.get("links", ())),
        media=tuple(Media(*m) for m in data.get("media", ())),
        reply_to=Ref(*data["reply_to"]) if data.get("reply_to") else None,
        quote=QuotedPost(Author(**quote["author"]), quote["text"], quote["url"]) if quote else None,
        reposted_by=Author(**data["reposted_by"]) if data.get("reposted_by") else None,
        reason=data.get("reason", ""),
        conversation=data.get("conversation", ""),
        native=data.get("native", ""),  # rows stored before it existed: the adapter looks it up
        spoiler=str(data.get("spoiler", "") or ""),
    )
