"""A small search service for the test AppView, answering by words in names and bios.

bsky.app's AppView hands actor and post search to a search service of its own
(``app.bsky.unspecced.searchActorsSkeleton`` / ``searchPostsSkeleton``, which return DIDs and
post URIs that the AppView then hydrates). The dev AppView's built-in search matches a
substring of the handle only; started with ``AtprotoStack.start(..., search_url=service.url)``
it asks this service instead, which matches every word of the query (case-insensitive) against
an account's handle, display name and bio, or a post's text, the way people expect bsky.app to.

It reads the network as it is at each call: the PDS's repositories (com.atproto.sync.listRepos),
their profiles from the AppView (app.bsky.actor.getProfiles) and their posts from the PDS
(com.atproto.repo.listRecords). Cursors are offsets.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx


class SearchService:
    def __init__(self) -> None:
        self.pds = ""  # set once the stack is up (the stack needs our URL first)
        self.appview = ""
        self.calls: list[tuple[str, str]] = []  # (method, q) as the AppView asked
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                method = url.path.removeprefix("/xrpc/")
                try:
                    body = service.answer(method, params)
                    status = 200
                except KeyError:
                    body, status = {"error": "MethodNotImplemented", "message": method}, 501
                except Exception as exc:  # a test service: say what broke
                    body, status = {"error": "InternalServerError", "message": repr(exc)}, 500
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="search-service", daemon=True)

    def start(self) -> SearchService:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- answers -------------------------------------------------------------------------------

    def answer(self, method: str, params: dict[str, str]) -> dict[str, Any]:
        q = params.get("q", "")
        self.calls.append((method, q))
        limit = max(1, min(int(params.get("limit") or 25), 100))
        start = int(params.get("cursor") or 0)
        if method == "app.bsky.unspecced.searchActorsSkeleton":
            hits = [
                {"did": p["did"]}
                for p in self._profiles()
                if _matches(q, p.get("handle"), p.get("displayName"), p.get("description"))
            ]
            key = "actors"
        elif method == "app.bsky.unspecced.searchPostsSkeleton":
            hits = [{"uri": uri} for uri, text in self._posts() if _matches(q, text)]
            key = "posts"
        else:
            raise KeyError(method)
        page = hits[start : start + limit]
        out: dict[str, Any] = {key: page}
        if start + limit < len(hits):
            out["cursor"] = str(start + limit)
        return out

    def _repos(self, client: httpx.Client) -> list[str]:
        res = client.get(f"{self.pds}/xrpc/com.atproto.sync.listRepos", params={"limit": 1000})
        res.raise_for_status()
        return [r["did"] for r in res.json().get("repos", [])]

    def _profiles(self) -> list[dict[str, Any]]:
        with httpx.Client(timeout=10) as client:
            dids = self._repos(client)
            out: list[dict[str, Any]] = []
            for i in range(0, len(dids), 25):
                res = client.get(f"{self.appview}/xrpc/app.bsky.actor.getProfiles", params={"actors": dids[i : i + 25]})
                res.raise_for_status()
                out += res.json().get("profiles", [])
            return sorted(out, key=lambda p: p.get("handle", ""))

    def _posts(self) -> list[tuple[str, str]]:
        """(uri, text) of every post, newest first."""
        found: list[tuple[str, str, str]] = []
        with httpx.Client(timeout=10) as client:
            for did in self._repos(client):
                res = client.get(
                    f"{self.pds}/xrpc/com.atproto.repo.listRecords",
                    params={"repo": did, "collection": "app.bsky.feed.post", "limit": 100},
                )
                if res.status_code != 200:
                    continue
                for r in res.json().get("records", []):
                    v = r.get("value") or {}
                    found.append((str(v.get("createdAt", "")), r["uri"], str(v.get("text", ""))))
        found.sort(reverse=True)
        return [(uri, text) for _, uri, text in found]


def _matches(q: str, *fields: Any) -> bool:
    words = q.casefold().split()
    hay = " ".join(str(f or "") for f in fields).casefold()
    return bool(words) and all(w in hay for w in words)
