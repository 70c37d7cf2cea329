"""A TCP forwarder on 127.0.0.1 for fault tests, between the bridge and a server it talks to.

A test can open and close it (the server unreachable: nothing listens), ``cut()`` every open
connection at once (a network failure), ``hang()`` it (connections accepted, nothing answered),
and read ``request_lines``: the first line of each connection (the HTTP request line, e.g.
which cursor a firehose client asked for). ``swallow_answer_to(marker)`` lets the next request
containing ``marker`` through to the server but drops the server's answer (the request was done,
the client never learns it): ``swallowed`` is set when that request went through.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.hanging = False
        self.connections = 0
        self.request_lines: list[str] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._swallow: bytes = b""
        self.swallowed = asyncio.Event()

    async def open(self) -> None:
        """Start listening (again) on the proxy's port and forward."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def close(self) -> None:
        """Stop listening and cut every connection: the target is unreachable."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def cut(self) -> None:
        """Abort every open connection at once, as a network failure would."""
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    def hang(self, on: bool = True) -> None:
        """While on, bytes in either direction are dropped (open connections and new ones): the
        peer stops answering without closing anything, and a request sent meanwhile never
        arrives (it is not delivered late, when the client has long given up on it)."""
        self.hanging = on

    def swallow_answer_to(self, marker: bytes) -> None:
        """Forward the next request whose bytes contain ``marker``, and drop every byte the server
        sends back on that connection from then on."""
        self._swallow = marker
        self.swallowed.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        first = True
        muted = False

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            nonlocal first, muted
            try:
                while data := await src.read(65536):
                    if upstream and first:
                        first = False
                        self.request_lines.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                    if upstream and self._swallow and self._swallow in data:
                        self._swallow, muted = b"", True
                        self.swallowed.set()
                    if self.hanging or (muted and not upstream):
                        continue
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        self._writers.discard(writer)
        self._writers.discard(up_writer)
