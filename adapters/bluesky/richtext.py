"""Bluesky rich text: the 300-grapheme limit, facets for outgoing text, and links of incoming
posts converted from UTF-8 byte offsets to Python string indices."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import regex
from atproto_client.utils import facet_detection

from bridge.model import Link

# Bluesky: app.bsky.feed.post text is at most 300 graphemes (and 3000 bytes).
MAX_GRAPHEMES = 300
MAX_BYTES = 3000
_GRAPHEME = regex.compile(r"\X")


def graphemes(text: str) -> int:
    """User-perceived characters (extended grapheme clusters), as Bluesky counts them."""
    return len(_GRAPHEME.findall(text))


def check_text(text: str) -> str | None:
    """None if ``text`` may be posted, else why not (with the count)."""
    if not text or not text.strip():
        return "the text is empty"
    n = graphemes(text)
    if n > MAX_GRAPHEMES:
        return f"the text is {n} graphemes; Bluesky allows {MAX_GRAPHEMES}"
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        return f"the text is {size} bytes; Bluesky allows {MAX_BYTES}"
    return None


async def build_facets(text: str, resolve_did: Callable[[str], Awaitable[str | None]]) -> list[dict[str, Any]]:
    """Facets for links, #hashtags, $cashtags and @mentions in ``text``, with UTF-8 byte
    offsets, as app.bsky.richtext.facet wants them. A mention whose handle does not resolve
    stays plain text."""
    facets: list[dict[str, Any]] = [f.model_dump(by_alias=True, exclude_none=True) for f in facet_detection.detect_facets(text)]
    dids: dict[str, str | None] = {}
    for mention in facet_detection.detect_mentions(text):
        handle = mention.handle.lower()
        if handle not in dids:
            dids[handle] = await resolve_did(handle)
        did = dids[handle]
        if did:
            facets.append(
                {
                    "$type": "app.bsky.richtext.facet",
                    "index": {"byteStart": mention.byte_start, "byteEnd": mention.byte_end},
                    "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}],
                }
            )
    facets.sort(key=lambda f: f["index"]["byteStart"])
    return facets


def byte_to_str_index(text: str) -> Callable[[int], int | None]:
    """A function mapping a UTF-8 byte offset of ``text`` to its str index (None when the
    offset is out of range or falls inside a character)."""
    table: dict[int, int] = {}
    pos = 0
    for i, ch in enumerate(text):
        table[pos] = i
        pos += len(ch.encode("utf-8"))
    table[pos] = len(text)
    return table.get


def links_from_facets(text: str, facets: Iterable[Mapping[str, Any]] | None) -> tuple[Link, ...]:
    """The link facets of a post as Links over Python string indices. Malformed facets (bad
    offsets, missing fields) are skipped, never raised: the post is still relayed."""
    if not facets:
        return ()
    to_index = byte_to_str_index(text)
    out = []
    for facet in facets:
        if not isinstance(facet, Mapping):
            continue
        index = facet.get("index")
        if not isinstance(index, Mapping):
            continue
        start, end = index.get("byteStart"), index.get("byteEnd")
        if not isinstance(start, int) or not isinstance(end, int) or start >= end:
            continue
        s, e = to_index(start), to_index(end)
        if s is None or e is None:
            continue
        for feature in facet.get("features") or ():
            if not isinstance(feature, Mapping):
                continue
            kind = feature.get("$type", "")
            if kind == "app.bsky.richtext.facet#link" and isinstance(feature.get("uri"), str):
                out.append(Link(s, e, feature["uri"]))
            elif kind == "app.bsky.richtext.facet#mention" and isinstance(feature.get("did"), str):
                out.append(Link(s, e, f"https://bsky.app/profile/{feature['did']}"))
            elif kind == "app.bsky.richtext.facet#tag" and isinstance(feature.get("tag"), str):
                out.append(Link(s, e, f"https://bsky.app/hashtag/{feature['tag']}"))
    out.sort(key=lambda link: link.start)
    return tuple(out)
