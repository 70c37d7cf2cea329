"""The aiohttp transport under python-telegram-bot, against small aiohttp servers that misbehave
on purpose (the Bot API emulator covers the normal path in every other Telegram test)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from telegram import Bot, InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from adapters.telegram.transport import AiohttpRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a server answering every path with ``handler``; returns its root URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def request_() -> AsyncIterator[AiohttpRequest]:
    req = AiohttpRequest(pool_size=1, read_timeout=0.3, connect_timeout=0.3, pool_timeout=0.2)
    await req.initialize()
    yield req
    await req.shutdown()


async def test_a_bot_call_goes_through_and_its_answer_is_parsed(serve: Callable[[Handler], Awaitable[str]]) -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    async def get_me(request: web.Request) -> web.Response:
        seen.append((request.path, dict(await request.post())))  # type: ignore[arg-type]
        return web.json_response({"ok": True, "result": {"id": 7, "is_bot": True, "first_name": "B", "username": "b_bot"}})

    url = await serve(get_me)
    async with Bot("123:abc", base_url=f"{url}/bot", request=AiohttpRequest(pool_size=2)) as bot:
        assert bot.username == "b_bot"
        await bot.get_chat_member_count(chat_id=-5)
    assert seen[0][0] == "/bot123:abc/getMe"
    assert seen[1] == ("/bot123:abc/getChatMemberCount", {"chat_id": "-5"})


async def test_a_file_is_uploaded_as_multipart_with_the_other_fields(
    serve: Callable[[Handler], Awaitable[str]], request_: AiohttpRequest
) -> None:
    got: dict[str, object] = {}

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        got["chat_id"] = form["chat_id"]
        document = form["document"]
        assert isinstance(document, web.FileField)
        got["file"] = (document.filename, document.content_type, document.file.read())
        return web.json_response({"ok": True, "result": True})

    url = await serve(upload)
    data = RequestData(
        [
            RequestParameter.from_input("chat_id", 42),
            RequestParameter.from_input("document", InputFile(b"quarterly numbers", filename="q3.txt")),
        ]
    )
    status, body = await request_.do_request(f"{url}/bot1:x/sendDocument", "POST", data)
    assert status == 200 and b'"ok": true' in body
    assert got == {"chat_id": "42", "file": ("q3.txt", "text/plain", b"quarterly numbers")}


async def test_a_server_that_does_not_answer_times_out(
    serve: Callable[[Handler], Awaitable[str]], request_: AiohttpRequest
) -> None:
    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({})

    url = await serve(silent)
    with pytest.raises(TimedOut):
        await request_.do_request(f"{url}/bot1:x/getMe", "POST")


async def test_a_full_pool_times_out_without_sending(
    serve: Callable[[Handler], Awaitable[str]], request_: AiohttpRequest
) -> None:
    arrived: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        arrived.append(request.path)
        await asyncio.sleep(1)
        return web.json_response({"ok": True, "result": True})

    url = await serve(slow)
    first = asyncio.create_task(request_.do_request(f"{url}/bot1:x/first", "POST", read_timeout=2))
    await asyncio.sleep(0.1)
    with pytest.raises(TimedOut, match="not sent"):
        await request_.do_request(f"{url}/bot1:x/second", "POST", read_timeout=2)
    assert await first == (200, b'{"ok": true, "result": true}')
    assert arrived == ["/bot1:x/first"]


async def test_a_refused_connection_is_a_network_error(request_: AiohttpRequest) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkError, match=r"aiohttp\.ClientConnectorError") as caught:
        await request_.do_request(f"http://127.0.0.1:{port}/bot1:secret/getMe", "POST")
    assert "secret" not in str(caught.value)


async def test_it_must_be_initialized_and_may_be_reopened() -> None:
    req = AiohttpRequest()
    with pytest.raises(RuntimeError, match="not initialized"):
        await req.do_request("http://127.0.0.1:9/x", "POST")
    await req.initialize()
    await req.shutdown()
    await req.shutdown()  # twice is fine
    await req.initialize()
    await req.shutdown()
    with pytest.raises(ValueError, match="pool_size"):
        AiohttpRequest(pool_size=0)


async def test_http_proxy_and_no_proxy_from_the_environment(
    serve: Callable[[Handler], Awaitable[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    through: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        through.append(request.raw_path)  # a proxy is asked for the absolute URL
        return web.json_response({"ok": True, "result": True})

    proxy_url = await serve(proxy)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "direct.invalid")
    req = AiohttpRequest()
    await req.initialize()
    try:
        assert await req.do_request("http://api.telegram.invalid/bot1:x/getMe", "POST") == (200, b'{"ok": true, "result": true}')
        with pytest.raises(NetworkError):  # not through the proxy: the name does not resolve
            await req.do_request("http://direct.invalid/bot1:x/getMe", "POST", connect_timeout=1)
    finally:
        await req.shutdown()
    assert through == ["http://api.telegram.invalid/bot1:x/getMe"]


@pytest.mark.parametrize("kind", ["no scheme", "garbage answer"])
async def test_errors_never_carry_the_token(request_: AiohttpRequest, kind: str) -> None:
    """The message of a NetworkError reaches the ledger, /status and `bridge status`."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nonsense\r\n\r\n")  # aiohttp quotes the URL
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = "127.0.0.1/bot123456:SECRET/getMe" if kind == "no scheme" else f"http://127.0.0.1:{port}/bot123456:SECRET/getMe"
    try:
        with pytest.raises(NetworkError) as caught:
            await request_.do_request(url, "POST")
    finally:
        server.close()
        await server.wait_closed()
    assert "SECRET" not in str(caught.value) and "aiohttp." in str(caught.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ALL_PROXY": "PROXY"}, True),  # the fallback for any scheme
        ({"HTTP_PROXY": "PROXY_NO_SCHEME"}, True),  # host:port alone means http://host:port
        ({"HTTP_PROXY": "PROXY", "NO_PROXY": "api.telegram.invalid:80"}, False),  # host:port entries
    ],
)
async def test_proxy_variables_read_as_httpx_reads_them(
    serve: Callable[[Handler], Awaitable[str]], monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool
) -> None:
    through: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        through.append(request.raw_path)
        return web.json_response({"ok": True, "result": True})

    proxy_url = await serve(proxy)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        value = value.replace("PROXY_NO_SCHEME", proxy_url.removeprefix("http://")).replace("PROXY", proxy_url)
        monkeypatch.setenv(name, value)
    req = AiohttpRequest()
    await req.initialize()
    try:
        if expected:
            await req.do_request("http://api.telegram.invalid:80/bot1:x/getMe", "POST")
        else:
            with pytest.raises(NetworkError):
                await req.do_request("http://api.telegram.invalid:80/bot1:x/getMe", "POST", connect_timeout=1)
    finally:
        await req.shutdown()
    assert bool(through) is expected


async def test_a_redirect_is_not_followed(serve: Callable[[Handler], Awaitable[str]], request_: AiohttpRequest) -> None:
    async def moved(request: web.Request) -> web.Response:
        if request.path.endswith("/elsewhere"):
            return web.json_response({"ok": True, "result": "followed"})
        raise web.HTTPFound("/elsewhere")

    url = await serve(moved)
    status, _ = await request_.do_request(f"{url}/bot1:x/sendMessage", "POST")
    assert status == 302
