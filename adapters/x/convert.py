"""X API v2 payloads into the core's Posts: links expanded (never t.co), media, the quoted post
in brief, the x.com link, author name and handle, and whether the author summoned the team
account (mentioned it or quoted its post), which decides whether a self-serve app may reply.

``Post.native`` is the post id, followed by ``;s`` when the author summoned the team account.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.intake.paging import parse_time
from bridge.model import Author, Link, Media, Post, QuotedPost, Ref

SUMMONED = ";s"
MEDIA_KINDS = {"photo": "image", "video": "video", "animated_gif": "gif"}

# What the adapter asks X for on every post read.
TWEET_FIELDS = "created_at,author_id,entities,attachments,referenced_tweets,in_reply_to_user_id,conversation_id"
USER_FIELDS = "username,name"
MEDIA_FIELDS = "type,url,preview_image_url,alt_text"


TWEPOCH_MS = 1288834974657  # X's snowflake epoch (ids carry their creation time in ms)


def entry_time(sid: str, created_at: datetime) -> datetime:
    """When an entry reached its feed, ordered like its id: X's ``created_at`` has whole
    seconds only, so two posts of one second would tie; the id (a snowflake: milliseconds
    since X's epoch, then a sequence) orders them. Falls back to ``created_at`` when the id
    does not carry a time near it."""
    try:
        n = int(sid)
    except ValueError:
        return created_at
    ms = (n >> 22) + TWEPOCH_MS
    t = datetime.fromtimestamp(ms / 1000, UTC) + timedelta(microseconds=(n & 0x3FFFFF) % 1000)
    return t if abs((t - created_at).total_seconds()) < 86400 else created_at


def user_url(username: str) -> str:
    return f"https://x.com/{username}"


def post_url(username: str, tid: str) -> str:
    # X resolves /i/status/<id> whoever wrote it: the link when the author's name is unknown.
    name = username if re.fullmatch(r"\w{1,15}", username or "") else "i"
    return f"https://x.com/{name}/status/{tid}"


def author_of(user: Mapping[str, Any]) -> Author:
    username = str(user.get("username") or user.get("id") or "")
    return Author(
        id=str(user.get("id", "")),
        handle=username,
        display_name=str(user.get("name") or ""),
        url=user_url(username),
    )


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def expand(tweet: Mapping[str, Any]) -> tuple[str, tuple[Link, ...]]:
    """The text with every t.co link replaced by the link it stands for, and the Links over it.
    A t.co link that X gave no expansion for is left as X sent it. The links are found in the
    text, not placed by X's ``start``/``end`` (UTF-16 code units in X's counting, which a
    Python string does not share and a hostile payload may get wrong)."""
    text = str(tweet.get("text") or "")
    targets: dict[str, str] = {}
    for u in _list(_dict(tweet.get("entities")).get("urls")):
        if not isinstance(u, dict) or not u.get("url"):
            continue
        expanded = str(u.get("unwound_url") or u.get("expanded_url") or "")
        if expanded.startswith(("http://", "https://")):
            targets.setdefault(str(u["url"]), expanded)
    out: list[str] = []
    links: list[Link] = []
    pos = length = 0
    # Every occurrence of a short link, longest first where one is a prefix of another.
    pattern = "|".join(re.escape(k) for k in sorted(targets, key=len, reverse=True))
    for m in re.finditer(pattern, text) if pattern else ():
        expanded = targets[m.group(0)]
        before = text[pos : m.start()]
        out.append(before)
        length += len(before)
        out.append(expanded)
        links.append(Link(length, length + len(expanded), expanded))
        length += len(expanded)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), tuple(links)


def summoned(tweet: Mapping[str, Any], me_id: str, tweets: Mapping[str, Mapping[str, Any]]) -> bool:
    """X's 2026 reply rule: the author mentioned the account, or quoted one of its posts."""
    if not me_id:
        return False
    mentions = _list(_dict(tweet.get("entities")).get("mentions"))
    if any(isinstance(m, dict) and str(m.get("id", "")) == me_id for m in mentions):
        return True
    for r in _list(tweet.get("referenced_tweets")):
        if isinstance(r, dict) and r.get("type") == "quoted":
            if str((tweets.get(str(r.get("id"))) or {}).get("author_id", "")) == me_id:
                return True
    return False


class Includes:
    """The ``includes`` of a response, by id, plus users the adapter already knows."""

    def __init__(self, payload: Mapping[str, Any], known_users: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        inc = payload.get("includes") if isinstance(payload.get("includes"), dict) else {}
        self.users: dict[str, Mapping[str, Any]] = dict(known_users or {})
        self.users.update({str(u["id"]): u for u in _list(inc.get("users")) if isinstance(u, dict) and u.get("id")})
        self.tweets = {str(t["id"]): t for t in _list(inc.get("tweets")) if isinstance(t, dict) and t.get("id")}
        self.media = {str(m["media_key"]): m for m in _list(inc.get("media")) if isinstance(m, dict) and m.get("media_key")}

    def author(self, uid: str) -> Author:
        user = self.users.get(uid)
        if user:
            return author_of(user)
        if not uid.isdigit():  # X always sends author_id; a payload without one is shown as such
            return Author(id=uid, handle="unknown", url="")
        return Author(id=uid, handle=uid, url=f"https://x.com/i/user/{uid}")


def post_from(network: str, tweet: Mapping[str, Any], inc: Includes, me_id: str, reason: str = "") -> Post | None:
    """The Post for ``tweet``; None when it is not one (no id)."""
    tid = str(tweet.get("id") or "")
    if not tid.isdigit():
        return None
    author = inc.author(str(tweet.get("author_id") or ""))
    refs = {str(r.get("type")): str(r.get("id")) for r in _list(tweet.get("referenced_tweets")) if isinstance(r, dict)}
    reposted_by = None
    shown = tweet
    if "retweeted" in refs and refs["retweeted"] in inc.tweets:
        # A repost: the original, by its author, reposted by this one.
        shown = inc.tweets[refs["retweeted"]]
        reposted_by = author
        author = inc.author(str(shown.get("author_id") or ""))
        refs = {str(r.get("type")): str(r.get("id")) for r in _list(shown.get("referenced_tweets")) if isinstance(r, dict)}
    text, links = expand(shown)
    media = []
    for key in _list(_dict(shown.get("attachments")).get("media_keys")):
        m = inc.media.get(str(key))
        if not m:
            continue
        url = str(m.get("url") or m.get("preview_image_url") or "")
        if url.startswith("https://"):
            media.append(
                Media(
                    MEDIA_KINDS.get(str(m.get("type")), "image"),
                    url,
                    str(m.get("alt_text") or ""),
                    str(m.get("preview_image_url") or ""),
                )
            )
    quote = None
    if "quoted" in refs and refs["quoted"] in inc.tweets:
        q = inc.tweets[refs["quoted"]]
        qa = inc.author(str(q.get("author_id") or ""))
        qtext, _ = expand(q)
        quote = QuotedPost(qa, qtext[:500], post_url(qa.handle, str(q.get("id"))))
    reply_to = Ref(network, refs["replied_to"]) if "replied_to" in refs else None
    created = parse_time(tweet.get("created_at")) or datetime.now(UTC)
    native = tid + (SUMMONED if summoned(tweet, me_id, inc.tweets) else "")
    return Post(
        ref=Ref(network, tid),
        author=author,
        text=text,
        created_at=created,
        url=post_url(author.handle if author.url else "", str(shown.get("id") or tid)),
        links=links,
        media=tuple(media),
        reply_to=reply_to,
        quote=quote,
        reposted_by=reposted_by,
        reason=reason,
        native=native,
    )


def post_from_dm(network: str, event: Mapping[str, Any], sender: Author) -> Post | None:
    eid = str(event.get("id") or "")
    if not eid.isdigit():
        return None
    text, links = expand(event)
    return Post(
        ref=Ref(network, f"dm:{eid}"),
        author=sender,
        text=text,
        created_at=parse_time(event.get("created_at")) or datetime.now(UTC),
        url="",
        links=links,
        reason="dm",
        conversation=str(event.get("dm_conversation_id") or sender.id),
        native=eid,
    )


def is_summoned(post: Post) -> bool:
    return post.native.endswith(SUMMONED) or post.reason in ("mention", "quote")


def native_id(post: Post) -> str:
    return post.native.removesuffix(SUMMONED) or post.ref.id
