"""python-telegram-bot's networking on aiohttp instead of httpx.

python-telegram-bot sends every Bot API call through a ``BaseRequest``. Sending a relayed post
(rendering included) with its default, ``HTTPXRequest``, took about 1.5 ms of CPU on this
project's benchmark machine, most of it in httpx/httpcore's connection pool; with this one, on
the aiohttp client the bridge already uses for Discord and its own emulators, about 0.85 ms
(``bench.pipeline`` measures both). A relay to many rooms spends most of its CPU here.

The contract is ``HTTPXRequest``'s: the same default timeouts (aiohttp has no write timeout;
the core's ``send_timeout`` bounds a stalled send), ``TimedOut`` for a timeout, ``NetworkError``
for everything else (its message never carries the token), ``HTTP(S)_PROXY``, ``ALL_PROXY``
and ``NO_PROXY`` honoured as httpx reads them (once, at the first request), no redirects.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

_TOKEN_IN_PATH = re.compile(r"/(file/)?bot[^/\s'\"]+")

# HTTPXRequest's defaults (python-telegram-bot 22).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 5.0
POOL_TIMEOUT = 1.0


def _origin(url: str) -> str:
    """scheme://host[:port] of ``url``, never its path: the path holds the bot token."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return "an invalid URL"
    return f"{parts.scheme}://{parts.netloc}"


def scrub(text: str) -> str:
    """``text`` with any Bot API token in a URL path replaced."""
    return _TOKEN_IN_PATH.sub(r"/\1bot<token>", text)


def _given(value: Any, default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


class AiohttpRequest(BaseRequest):
    """A ``BaseRequest`` on one ``aiohttp.ClientSession`` with at most ``pool_size`` connections."""

    def __init__(
        self,
        pool_size: int = 256,
        read_timeout: float | None = READ_TIMEOUT,
        connect_timeout: float | None = CONNECT_TIMEOUT,
        pool_timeout: float | None = POOL_TIMEOUT,
        on_unauthorized: Callable[[], None] | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._pool_size = pool_size
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}  # per origin, read from the environment once
        # Called on every 401 answer: the token was refused (revoked while running, say).
        self._on_unauthorized = on_unauthorized

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout (python-telegram-bot adds it to getUpdates' long-poll time)."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Open the session (again, after ``shutdown``); a no-op while it is open."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        """Close the session and its connections; a no-op when already closed."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one request; return the status and the body. Raises ``TimedOut`` when a timeout
        expires and ``NetworkError`` when the connection fails."""
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        read = _given(read_timeout, self._read_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        # aiohttp has no write timeout: a request whose body stalls is bounded by the core's
        # send_timeout. Waiting for a free connection and connecting share `connect`.
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=read,
        )
        data: Any
        if files:
            data = aiohttp.FormData(quote_fields=False)
            for name, value in (request_data.json_parameters if request_data else {}).items():
                data.add_field(name, value)
            for name, (filename, content, mimetype) in files.items():
                data.add_field(name, content, filename=filename, content_type=mimetype)
        else:
            data = request_data.json_parameters if request_data else None
        try:
            proxy = self._proxy_for(url)
            # No redirects: the Bot API does not send them, and aiohttp would turn a POST into a GET.
            async with self._session.request(
                method, url, data=data, timeout=timeout, proxy=proxy, allow_redirects=False
            ) as response:
                body = await response.read()
                if response.status == 401 and self._on_unauthorized is not None:
                    self._on_unauthorized()
                return response.status, body
        except aiohttp.ConnectionTimeoutError as exc:
            # Connecting, or waiting for a free connection of the pool: nothing was sent.
            raise TimedOut(
                message=f"Timed out: no connection to {_origin(url)} within {timeout.connect} s; the request was not sent"
            ) from exc
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            # aiohttp's messages may quote the URL, and the URL holds the token: these messages
            # end up in the ledger, `/status` and `bridge status`, past the log redaction.
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {scrub(str(exc))}") from exc

    def _proxy_for(self, url: str) -> str | None:
        """The proxy for ``url`` from the environment as httpx reads it (``HTTPS_PROXY`` or
        ``HTTP_PROXY`` by scheme, else ``ALL_PROXY``; ``http://`` when no scheme is given;
        ``NO_PROXY`` by host or host:port), looked up once per origin: aiohttp's own
        ``trust_env`` reads the environment on every request (half a millisecond each)."""
        origin = _origin(url)
        if origin not in self._proxies:
            parts = urlsplit(url)
            proxies = urllib.request.getproxies()
            proxy = proxies.get(parts.scheme) or proxies.get("all")
            if proxy and "://" not in proxy:
                proxy = f"http://{proxy}"
            self._proxies[origin] = None if not proxy or urllib.request.proxy_bypass(parts.netloc) else proxy
        return self._proxies[origin]
