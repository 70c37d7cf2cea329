"""The streaming API over websocket (docs: methods/streaming.md): where to connect, how to
connect with the token, and what a frame says.

The streaming server may live on another host than the REST API; the instance names it
(``configuration.urls.streaming`` of /api/v2/instance, ``urls.streaming_api`` of v1). The token
goes with the connection, so ``streaming_base`` accepts only the server's own host or a
``streaming.`` host of the same domain (``streaming.mastodon.social`` for ``mastodon.social``,
``streaming.example.com`` for ``social.example.com``) and
falls back to the server itself otherwise. Frames are ``{"stream": [...], "event": ...,
"payload": "<JSON as a string>"}``; ``parse_frame`` decodes the payload once and never raises.

A stream can drop at any time and loses what happened meanwhile: whoever reads it must catch
up through the REST API after every reconnect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from adapters.mastodon.http import MastodonHttp, MissingScope
from bridge.errors import AuthFailed, BridgeError, Permanent, Transient

# docs: methods/streaming.md — the events this bridge acts on.
EVENTS = frozenset({"update", "notification", "conversation", "delete", "status.update"})
# docs: methods/streaming.md#user — User token + read:statuses + read:notifications.
STREAM_SCOPES = {"user": "read:notifications", "direct": "read:statuses", "list": "read:lists", "hashtag": "read:statuses"}


@dataclass(frozen=True, slots=True)
class Frame:
    """One event: ``stream`` as the server names it (``["hashtag", "cats"]``), the ``event``,
    and its payload decoded (a dict for entities, a str for a delete's status id)."""

    stream: tuple[str, ...]
    event: str
    payload: Any


def streaming_base(instance: str, advertised: str) -> str:
    """The websocket root to connect to: ``advertised`` (the instance's streaming URL) when
    its host is the instance's or a sibling of it, else the instance's own host."""
    own = urlsplit(instance)
    scheme = "wss" if own.scheme == "https" else "ws"
    fallback = urlunsplit((scheme, own.netloc, "", "", ""))
    try:
        theirs = urlsplit(advertised or "")
        host = theirs.hostname or ""
    except ValueError:
        return fallback
    mine = own.hostname or ""
    if theirs.scheme not in ("ws", "wss", "http", "https") or not host:
        return fallback
    parent = mine.split(".", 1)[1] if mine.count(".") >= 2 else mine
    # Without a public-suffix list, a sibling is trusted only under Mastodon's own convention
    # (streaming.<parent>): "evil.co.uk" must not pass for a sibling of "social.co.uk".
    if host != mine and not host.endswith("." + mine) and host != "streaming." + parent:
        return fallback
    if own.scheme == "https" and theirs.scheme in ("ws", "http"):
        return fallback  # never downgrade the token to plain text
    ws_scheme = {"http": "ws", "https": "wss"}.get(theirs.scheme, theirs.scheme)
    return urlunsplit((ws_scheme, theirs.netloc, theirs.path.rstrip("/"), "", ""))


async def open_stream(http: MastodonHttp, base: str, stream: str, **params: str) -> aiohttp.ClientWebSocketResponse:
    """Connect to ``stream`` (``user``, ``direct``, ``hashtag`` with ``tag=``, ``list`` with
    ``list=``) with the token in the ``Authorization`` header (never in the URL, which proxies
    log). Maps a refused handshake like a REST answer: 401 → AuthFailed, 403 → MissingScope,
    anything else → Transient."""
    url = base.rstrip("/") + "/api/v1/streaming"
    query = {"stream": stream, **params}
    try:
        return await http.session().ws_connect(url, params=query, headers=http.auth_headers, heartbeat=30.0, autoping=True)
    except aiohttp.WSServerHandshakeError as exc:
        err: BridgeError
        if exc.status == 401:
            err = AuthFailed(f"{http.server} refused the Mastodon access token on the streaming API")
        elif exc.status == 403:
            err = MissingScope(STREAM_SCOPES.get(stream, ""), f"the {stream} stream", http.server)
        elif exc.status in (400, 404):
            err = Permanent(f"{http.server} has no {stream} stream for {params or 'us'} ({exc.status})")
        else:
            err = Transient(f"the {stream} stream of {http.server} refused the connection ({exc.status})")
        raise err from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise Transient(f"could not reach the streaming API of {http.server} ({type(exc).__name__})") from None


def parse_frame(data: Any) -> Frame | None:
    """A text frame as a Frame, or None when it is not one this bridge reads (malformed JSON,
    an unknown event, a payload that is not what the event carries)."""
    try:
        frame = json.loads(data)
    except (TypeError, ValueError):
        return None
    if not isinstance(frame, dict):
        return None
    event = frame.get("event")
    stream = frame.get("stream")
    if event not in EVENTS:
        return None
    names = tuple(str(x) for x in stream) if isinstance(stream, list) else ()
    payload = frame.get("payload")
    if event == "delete":
        return Frame(names, event, payload) if isinstance(payload, str) and payload else None
    if isinstance(payload, str):  # as Mastodon sends it: the entity as a JSON string
        try:
            payload = json.loads(payload)
        except ValueError:
            return None
    return Frame(names, event, payload) if isinstance(payload, dict) else None
