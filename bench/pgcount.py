"""A TCP forwarder to Postgres on 127.0.0.1 that counts the statements its clients run.

The server here has ``pg_stat_statements`` available but not preloaded (it needs a server
restart), and the bridge's workers are other processes, so their connections cannot be
wrapped. This counts on the wire instead, what every client connection through it asks the
server to run (Postgres frontend/backend protocol 3.0): one per simple ``Query`` message ('Q')
and one per ``Execute`` message ('E', the extended protocol asyncpg uses: one per statement
run, one per row set of an ``executemany``). Parse, Bind, Describe and Sync are not counted
(they are the same statement's round trips). ``LISTEN`` and the notifications the server sends
back cost no statement once listening.

SSL: the forwarder answers the client's SSLRequest with "N" itself, so that the rest of the
conversation is readable; everything else is forwarded unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter
from urllib.parse import urlparse, urlunparse

from tests.tcp_proxy import free_port

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


class StatementCounter:
    """``url(database_url)`` gives the URL through the forwarder; ``statements`` the count so far."""

    def __init__(self, target_url: str) -> None:
        u = urlparse(target_url)
        self.target = (u.hostname or "127.0.0.1", u.port or 5432)
        self.port = free_port()
        self.statements = 0
        self.by_query: Counter[str] = Counter()  # the same count, per statement text
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, database_url: str) -> str:
        """``database_url`` (same server) pointed at the forwarder."""
        u = urlparse(database_url)
        netloc = (u.netloc.rsplit("@", 1)[0] + "@" if "@" in u.netloc else "") + f"127.0.0.1:{self.port}"
        return urlunparse(u._replace(netloc=netloc))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            # Untyped start-up messages: SSL/GSSAPI requests (refused here), then the StartupMessage.
            while True:
                head = await reader.readexactly(8)
                length, code = struct.unpack("!ii", head)
                if length == 8 and code in (_SSL_REQUEST, _GSSENC_REQUEST):
                    writer.write(b"N")
                    await writer.drain()
                    continue
                startup = head + await reader.readexactly(length - 8)
                break
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except (OSError, asyncio.IncompleteReadError, struct.error):
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        up_writer.write(startup)
        prepared: dict[bytes, str] = {}  # this connection's named statements → their text
        bound = ""  # the text of the statement last bound (what the next Execute runs)

        async def upstream() -> None:
            try:
                while True:
                    head = await reader.readexactly(5)
                    kind, length = head[:1], struct.unpack("!i", head[1:])[0]
                    body = await reader.readexactly(length - 4)
                    nonlocal bound
                    if kind == b"P":  # Parse: name, text, …
                        name, text = body.split(b"\0", 2)[:2]
                        prepared[name] = text.decode(errors="replace")
                        bound = prepared[name]
                    elif kind == b"B":  # Bind: portal, statement name, …
                        bound = prepared.get(body.split(b"\0", 2)[1], bound)
                    elif kind == b"Q":
                        self.statements += 1
                        self.by_query[body.rstrip(b"\0").decode(errors="replace")] += 1
                    elif kind == b"E":
                        self.statements += 1
                        self.by_query[bound] += 1
                    up_writer.write(head + body)
                    await up_writer.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    up_writer.transport.abort()

        async def downstream() -> None:
            try:
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.transport.abort()

        await asyncio.gather(upstream(), downstream())
        self._writers.discard(writer)
        self._writers.discard(up_writer)
