"""Bluesky JSON (AppView views, raw records, chat messages) → the core's Post.

Everything here is defensive: a post from the network with a missing field, a bad date or
broken facet offsets still becomes a Post (with what could be read), never an exception that
would stall a feed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from adapters.bluesky.richtext import links_from_facets
from bridge.model import Author, Media, Post, Profile, QuotedPost, Ref

NETWORK = "bluesky"  # the network type; an account's own name replaces it (as_account)
APP = "https://bsky.app"

Json = Mapping[str, Any]


def _map(value: Any) -> Json:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_time(*candidates: Any) -> datetime:
    """The first candidate that parses as an ISO 8601 time, as an aware UTC datetime (a time
    without a zone is taken as UTC); now when none does."""
    for value in candidates:
        if not isinstance(value, str) or not value:
            continue
        try:
            parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            continue
    return datetime.now(UTC)


def rkey(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def did_of(uri: str) -> str:
    """The repo DID of an at:// URI."""
    rest = uri.removeprefix("at://")
    return rest.split("/", 1)[0]


def profile_url(handle_or_did: str) -> str:
    return f"{APP}/profile/{handle_or_did}"


def post_url(author: Author, uri: str) -> str:
    who = author.handle if author.handle and author.handle != "handle.invalid" else author.id
    return f"{APP}/profile/{who}/post/{rkey(uri)}"


def author_from(view: Any) -> Author:
    """Author from a profileView(Basic/Detailed)."""
    v = _map(view)
    did = _str(v.get("did"))
    handle = _str(v.get("handle")) or did
    return Author(
        id=did,
        handle=handle,
        display_name=_str(v.get("displayName")),
        avatar_url=_str(v.get("avatar")),
        url=profile_url(handle if handle != "handle.invalid" else did),
    )


def profile_from(view: Any, followed_by_team: bool | None = None) -> Profile:
    """Profile from a profileView or profileViewDetailed (searchActors gives no counts)."""
    v = _map(view)

    def count(key: str) -> int | None:
        n = v.get(key)
        return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None

    viewer = _map(v.get("viewer"))
    if followed_by_team is None and "viewer" in v and "following" in viewer:
        followed_by_team = isinstance(viewer.get("following"), str)
    return Profile(
        author=author_from(v),
        bio=_str(v.get("description")),
        followers=count("followersCount"),
        following=count("followsCount"),
        posts=count("postsCount"),
        followed_by_team=followed_by_team,
    )


def media_from_embed(embed: Any) -> tuple[Media, ...]:
    """Images and video of an embed view (images, video, or the media of recordWithMedia)."""
    e = _map(embed)
    kind = _str(e.get("$type"))
    if kind == "app.bsky.embed.images#view":
        out = []
        for img in e.get("images") or ():
            i = _map(img)
            url = _str(i.get("fullsize")) or _str(i.get("thumb"))
            if url:
                out.append(Media("image", url, alt=_str(i.get("alt")), thumb_url=_str(i.get("thumb"))))
        return tuple(out)
    if kind == "app.bsky.embed.video#view":
        url = _str(e.get("playlist"))
        return (Media("video", url, alt=_str(e.get("alt")), thumb_url=_str(e.get("thumbnail"))),) if url else ()
    if kind == "app.bsky.embed.recordWithMedia#view":
        return media_from_embed(e.get("media"))
    return ()


def quote_from_embed(embed: Any) -> QuotedPost | None:
    """The quoted post of a record or recordWithMedia embed view, in brief (None when it is
    deleted, blocked or not a post)."""
    e = _map(embed)
    kind = _str(e.get("$type"))
    if kind == "app.bsky.embed.recordWithMedia#view":
        e = _map(e.get("record"))
        kind = "app.bsky.embed.record#view"
    if kind != "app.bsky.embed.record#view":
        return None
    rec = _map(e.get("record"))
    if _str(rec.get("$type")) != "app.bsky.embed.record#viewRecord":
        return None
    uri = _str(rec.get("uri"))
    author = author_from(rec.get("author"))
    value = _map(rec.get("value"))
    return QuotedPost(author=author, text=_str(value.get("text")), url=post_url(author, uri) if uri else "")


def post_from_view(
    view: Any,
    *,
    reposted_by: Author | None = None,
    repost_time: Any = None,
    reason: str = "",
) -> Post | None:
    """A Post from an app.bsky.feed.defs#postView. For a repost, ``reposted_by`` is the
    reposter and ``created_at`` the time of the repost (when it reached the feed), so that a
    repost of an old post counts as new. None when the view is not a post."""
    v = _map(view)
    uri = _str(v.get("uri"))
    if not uri.startswith("at://"):
        return None
    record = _map(v.get("record"))
    author = author_from(v.get("author"))
    if not author.id:
        author = Author(id=did_of(uri), handle=did_of(uri), url=profile_url(did_of(uri)))
    text = _str(record.get("text"))
    created = (
        parse_time(repost_time, v.get("indexedAt")) if reposted_by else parse_time(record.get("createdAt"), v.get("indexedAt"))
    )
    parent = _str(_map(_map(record.get("reply")).get("parent")).get("uri"))
    embed = v.get("embed")
    return Post(
        native=encode_native(_str(v.get("cid")), record),
        ref=Ref(NETWORK, uri),
        author=author,
        text=text,
        created_at=created,
        url=post_url(author, uri),
        links=links_from_facets(text, record.get("facets") if isinstance(record.get("facets"), list) else None),
        media=media_from_embed(embed),
        reply_to=Ref(NETWORK, parent) if parent else None,
        quote=quote_from_embed(embed),
        reposted_by=reposted_by,
        reason=reason,
    )


def post_from_feed_item(item: Any) -> Post | None:
    """A Post from an app.bsky.feed.defs#feedViewPost (timeline, author feed): a repost when
    its reason is reasonRepost."""
    it = _map(item)
    reason = _map(it.get("reason"))
    if _str(reason.get("$type")) == "app.bsky.feed.defs#reasonRepost":
        return post_from_view(it.get("post"), reposted_by=author_from(reason.get("by")), repost_time=reason.get("indexedAt"))
    return post_from_view(it.get("post"))


def post_from_record(
    uri: str,
    record: Any,
    author: Author,
    *,
    blob_url: Callable[[str, str], str],
    reason: str = "",
) -> Post:
    """A Post from a raw app.bsky.feed.post record, for when the AppView has no view of it
    (yet): images link to the blob on the author's PDS."""
    rec = _map(record)
    text = _str(rec.get("text"))
    parent = _str(_map(_map(rec.get("reply")).get("parent")).get("uri"))
    media = []
    embed = _map(rec.get("embed"))
    if _str(embed.get("$type")) == "app.bsky.embed.recordWithMedia":
        embed = _map(embed.get("media"))
    if _str(embed.get("$type")) == "app.bsky.embed.images":
        for img in embed.get("images") or ():
            i = _map(img)
            cid = _blob_cid(i.get("image"))
            if cid:
                media.append(Media("image", blob_url(author.id, cid), alt=_str(i.get("alt"))))
    return Post(
        ref=Ref(NETWORK, uri),
        author=author,
        text=text,
        created_at=parse_time(rec.get("createdAt")),
        url=post_url(author, uri),
        links=links_from_facets(text, rec.get("facets") if isinstance(rec.get("facets"), list) else None),
        media=tuple(media),
        reply_to=Ref(NETWORK, parent) if parent else None,
        reason=reason,
    )


def _blob_cid(blob: Any) -> str:
    b = _map(blob)
    ref = b.get("ref")
    if isinstance(ref, Mapping):
        return _str(ref.get("$link"))
    if ref is not None:  # a CID object, as libipld decodes it
        return str(ref)
    return _str(b.get("cid"))


def dm_ref(convo_id: str, message_id: str, network: str = NETWORK) -> Ref:
    return Ref(network, f"chat:{convo_id}/{message_id}")


def encode_native(cid: str, record: Json) -> str:
    """What a like, repost or reply needs besides the uri, as ``Post.native``: the post's CID,
    and for a reply its thread root's uri and CID (a reply to it must name the same root).
    "" when the CID is unknown (the adapter then asks the AppView)."""
    if not cid or " " in cid:
        return ""
    root = _map(_map(record.get("reply")).get("root"))
    root_uri, root_cid = _str(root.get("uri")), _str(root.get("cid"))
    if root_uri.startswith("at://") and root_cid and " " not in root_uri + root_cid:
        return f"{cid} {root_uri} {root_cid}"
    return cid


def decode_native(uri: str, native: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """(strong ref of the post, strong ref of its thread root) from ``Post.native``, or None
    when it holds nothing usable (an old stored post, a firehose record)."""
    parts = native.split(" ")
    if not parts[0] or len(parts) not in (1, 3):
        return None
    ref = {"uri": uri, "cid": parts[0]}
    root = {"uri": parts[1], "cid": parts[2]} if len(parts) == 3 and parts[1].startswith("at://") else ref
    return ref, root


def as_account(post: Post, account: str) -> Post:
    """``post`` with its refs under the account's name (``bluesky_sales``) instead of the
    network type the converters use."""
    if post.ref.network == account:
        return post
    return replace(
        post,
        ref=Ref(account, post.ref.id),
        reply_to=Ref(account, post.reply_to.id) if post.reply_to else None,
    )


def post_from_message(message: Any, convo_id: str, sender: Author) -> Post | None:
    """A Post (reason "dm") from a chat.bsky.convo.defs#messageView."""
    m = _map(message)
    mid = _str(m.get("id"))
    if not mid:
        return None
    text = _str(m.get("text"))
    return Post(
        ref=dm_ref(convo_id, mid),
        author=sender,
        text=text,
        created_at=parse_time(m.get("sentAt")),
        url=f"{APP}/messages/{convo_id}",
        links=links_from_facets(text, m.get("facets") if isinstance(m.get("facets"), list) else None),
        reason="dm",
        conversation=convo_id,
    )
