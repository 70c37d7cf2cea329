"""An emulator of Bluesky's chat service (chat.bsky.convo.*), which the reference AT
Protocol stack does not include.

On the real network a client calls these methods on its PDS with the header
``atproto-proxy: did:web:api.bsky.chat#bsky_chat``, and the PDS forwards them to the chat
service. The emulator takes that place: it refuses a request without that header or
without a bearer token (whose ``sub`` claim names the caller, as the PDS's service token
does), and checks the request shapes the lexicons define:

* ``getConvoForMembers`` (GET ``members``: 1-10 DIDs) → ``{convo: convoView}``
* ``getConvo`` (GET ``convoId``) → ``{convo}``
* ``listConvos`` (GET ``limit``, ``cursor``) → ``{convos, cursor?}``
* ``sendMessage`` (POST ``{convoId, message: {text, facets?, embed?}}``; text at most 1000
  graphemes / 10000 bytes) → messageView ``{id, rev, text, facets?, sender: {did}, sentAt}``
* ``getMessages`` (GET ``convoId``, ``limit``, ``cursor``) → ``{messages, cursor?}``, newest first
* ``getLog`` (GET ``cursor``) → ``{logs, cursor}``: logBeginConvo / logCreateMessage entries
  with a ``rev`` after the cursor

Errors are XRPC-shaped: ``{"error": "InvalidRequest", "message": ...}`` with status 400, 401
for a missing token. Tests add profiles, play the other side of a conversation
(``send_as``) and read what was sent (``messages_in``).
"""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import regex
from aiohttp import web

PROXY = "did:web:api.bsky.chat#bsky_chat"
MAX_GRAPHEMES = 1000
MAX_BYTES = 10000


class XrpcError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


@dataclass
class Convo:
    id: str
    members: list[str]
    rev: str
    messages: list[dict[str, Any]] = field(default_factory=list)


class BskyChatEmulator:
    def __init__(self) -> None:
        self.profiles: dict[str, dict[str, Any]] = {}
        self.convos: dict[str, Convo] = {}
        self.logs: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, nsid, headers)
        self._revs = itertools.count(1)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/xrpc/{nsid}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- test controls -------------------------------------------------------------------------

    def add_profile(self, did: str, handle: str, display_name: str = "") -> None:
        self.profiles[did] = {"did": did, "handle": handle, "displayName": display_name}

    def convo_with(self, *members: str) -> Convo:
        """The conversation among exactly ``members`` (created when new)."""
        wanted = sorted(set(members))
        for convo in self.convos.values():
            if sorted(convo.members) == wanted:
                return convo
        convo = Convo(id=f"convo{next(self._ids)}", members=wanted, rev=self._rev())
        self.convos[convo.id] = convo
        self.logs.append({"$type": "chat.bsky.convo.defs#logBeginConvo", "rev": convo.rev, "convoId": convo.id})
        return convo

    def send_as(self, sender: str, convo_id: str, text: str) -> dict[str, Any]:
        """Someone else writes in a conversation (what the bridge must pick up)."""
        return self._append(self.convos[convo_id], sender, {"text": text})

    def messages_in(self, convo_id: str) -> list[dict[str, Any]]:
        return list(self.convos[convo_id].messages)

    # --- the API ---------------------------------------------------------------------------------

    def _rev(self) -> str:
        return f"{next(self._revs):013d}"

    def _append(self, convo: Convo, sender: str, message: dict[str, Any]) -> dict[str, Any]:
        rev = self._rev()
        view: dict[str, Any] = {
            "$type": "chat.bsky.convo.defs#messageView",
            "id": f"msg{next(self._ids)}",
            "rev": rev,
            "text": message["text"],
            "sender": {"did": sender},
            "sentAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        if message.get("facets"):
            view["facets"] = message["facets"]
        convo.messages.append(view)
        convo.rev = rev
        self.logs.append({"$type": "chat.bsky.convo.defs#logCreateMessage", "rev": rev, "convoId": convo.id, "message": view})
        return view

    def _profile(self, did: str) -> dict[str, Any]:
        return self.profiles.get(did) or {"did": did, "handle": "handle.invalid"}

    def _convo_view(self, convo: Convo) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": convo.id,
            "rev": convo.rev,
            "members": [self._profile(m) for m in convo.members],
            "muted": False,
            "unreadCount": 0,
        }
        if convo.messages:
            view["lastMessage"] = convo.messages[-1]
        return view

    async def _dispatch(self, request: web.Request) -> web.Response:
        nsid = request.match_info["nsid"]
        self.requests.append((request.method, nsid, dict(request.headers)))
        try:
            caller = self._authorize(request)
            handler = getattr(self, "_" + nsid.rsplit(".", 1)[-1], None)
            if not nsid.startswith("chat.bsky.convo.") or handler is None:
                raise XrpcError(501, "MethodNotImplemented", f"Method Not Implemented: {nsid}")
            query = nsid in _QUERIES
            if request.method != ("GET" if query else "POST"):
                raise XrpcError(400, "InvalidRequest", f"{nsid} is a {'query' if query else 'procedure'}")
            if query:
                body: Any = None
            else:
                if request.content_type != "application/json":
                    raise XrpcError(400, "InvalidRequest", f"Wrong request encoding (Content-Type): {request.content_type}")
                try:
                    body = await request.json()
                except ValueError:
                    raise XrpcError(400, "InvalidRequest", "Request body is not JSON") from None
                if not isinstance(body, dict):
                    raise XrpcError(400, "InvalidRequest", "Request body must be an object")
            result = handler(caller, request.query, body)
        except XrpcError as exc:
            return web.json_response({"error": exc.error, "message": exc.message}, status=exc.status)
        return web.json_response(result)

    def _authorize(self, request: web.Request) -> str:
        if request.headers.get("atproto-proxy") != PROXY:
            raise XrpcError(
                400,
                "InvalidRequest",
                f"chat calls must carry atproto-proxy: {PROXY} (got {request.headers.get('atproto-proxy')!r})",
            )
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            raise XrpcError(401, "AuthMissing", "Authentication Required")
        try:
            payload = auth.removeprefix("Bearer ").split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            sub = claims["sub"]
        except (IndexError, ValueError, KeyError, TypeError):
            raise XrpcError(400, "InvalidToken", "Malformed token") from None
        if not isinstance(sub, str) or not sub.startswith("did:"):
            raise XrpcError(400, "InvalidToken", "Malformed token")
        return sub

    def _member_convo(self, caller: str, convo_id: Any) -> Convo:
        if not isinstance(convo_id, str) or not convo_id:
            raise XrpcError(400, "InvalidRequest", 'Error: Params must have the property "convoId"')
        convo = self.convos.get(convo_id)
        if convo is None or caller not in convo.members:
            raise XrpcError(400, "InvalidRequest", "Convo not found")
        return convo

    def _getConvoForMembers(self, caller: str, query: Any, _body: Any) -> dict[str, Any]:
        members = query.getall("members", [])
        if not 1 <= len(members) <= 10:
            raise XrpcError(400, "InvalidRequest", "members must hold 1 to 10 DIDs")
        if any(not m.startswith("did:") for m in members):
            raise XrpcError(400, "InvalidRequest", "members must be DIDs")
        return {"convo": self._convo_view(self.convo_with(caller, *members))}

    def _getConvo(self, caller: str, query: Any, _body: Any) -> dict[str, Any]:
        return {"convo": self._convo_view(self._member_convo(caller, query.get("convoId")))}

    def _listConvos(self, caller: str, query: Any, _body: Any) -> dict[str, Any]:
        mine = [c for c in self.convos.values() if caller in c.members]
        mine.sort(key=lambda c: c.rev, reverse=True)
        return {"convos": [self._convo_view(c) for c in mine[: int(query.get("limit", 50))]]}

    def _sendMessage(self, caller: str, _query: Any, body: dict[str, Any]) -> dict[str, Any]:
        convo = self._member_convo(caller, body.get("convoId"))
        message = body.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("text"), str):
            raise XrpcError(400, "InvalidRequest", 'Input/message must have the property "text"')
        text = message["text"]
        if len(regex.findall(r"\X", text)) > MAX_GRAPHEMES or len(text.encode()) > MAX_BYTES:
            raise XrpcError(400, "InvalidRequest", "Input/message/text must not be longer than 1000 graphemes")
        facets = message.get("facets")
        if facets is not None and not isinstance(facets, list):
            raise XrpcError(400, "InvalidRequest", "Input/message/facets must be an array")
        return self._append(convo, caller, message)

    def _getMessages(self, caller: str, query: Any, _body: Any) -> dict[str, Any]:
        convo = self._member_convo(caller, query.get("convoId"))
        limit = int(query.get("limit", 50))
        return {"messages": list(reversed(convo.messages))[:limit]}

    def _getLog(self, caller: str, query: Any, _body: Any) -> dict[str, Any]:
        cursor = query.get("cursor") or ""
        mine = {c.id for c in self.convos.values() if caller in c.members}
        logs = [e for e in self.logs if e["convoId"] in mine and e["rev"] > cursor]
        latest = max([e["rev"] for e in self.logs] or [cursor])
        return {"logs": logs, "cursor": latest}


_QUERIES = {
    "chat.bsky.convo.getConvoForMembers",
    "chat.bsky.convo.getConvo",
    "chat.bsky.convo.listConvos",
    "chat.bsky.convo.getMessages",
    "chat.bsky.convo.getLog",
}
