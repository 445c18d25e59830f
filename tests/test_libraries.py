"""Real libraries on the loop: aiohttp (server and client, HTTP and HTTPS) and asyncio streams.

These are ``@pytest.mark.asyncio`` tests: pytest-asyncio runs each of them on asyncio's loop
and on greenloop (see conftest.py). Everything listens and connects on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import greenloop

aiohttp = pytest.importorskip("aiohttp")
web = pytest.importorskip("aiohttp.web")
trustme = pytest.importorskip("trustme")

N_CONCURRENT = 200


@pytest.fixture(scope="module")
def tls() -> dict[str, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return {"server": server, "client": client}


# -- pytest-asyncio itself -------------------------------------------------------------------


@pytest_asyncio.fixture
async def fixture_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    await asyncio.sleep(0)
    yield asyncio.get_running_loop()
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_pytest_asyncio_runs_on_each_loop(loop_name, fixture_loop):
    running = asyncio.get_running_loop()
    if loop_name == "greenloop":
        assert type(running) is greenloop.Loop
    else:
        assert type(running) is asyncio.SelectorEventLoop
    # Async fixtures run on the test's loop.
    assert fixture_loop is running
    task = asyncio.current_task()
    assert task is not None and task.get_loop() is running
    await asyncio.sleep(0.001)


# -- aiohttp ---------------------------------------------------------------------------------


def make_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.query.get('name', 'world')}")

    async def echo_json(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"echo": body, "method": request.method})

    async def upload(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(65536):
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(100):
            await resp.write(bytes([i]) * 10_000)
        await resp.write_eof()
        return resp

    async def peer(request: web.Request) -> web.Response:
        return web.Response(text=str(request.transport.get_extra_info("peername")[1]))

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await sock.send_str(msg.data[::-1])
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await sock.send_bytes(msg.data)
        return sock

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_post("/json", echo_json)
    app.router.add_put("/upload", upload)
    app.router.add_get("/stream", stream)
    app.router.add_get("/peer", peer)
    app.router.add_get("/ws", ws)
    return app


async def start_app(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    (address,) = runner.addresses
    return runner, address[1]


async def round_trips(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(f"{base}/", params={"name": "loop"}) as r:
        assert r.status == 200
        assert await r.text() == "hello loop"
    async with session.post(f"{base}/json", json={"a": [1, 2, 3]}) as r:
        assert await r.json() == {"echo": {"a": [1, 2, 3]}, "method": "POST"}
    body = os.urandom(1 << 20)
    async with session.put(f"{base}/upload", data=body) as r:
        assert await r.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    async with session.get(f"{base}/stream") as r:
        data = await r.read()
        assert data == b"".join(bytes([i]) * 10_000 for i in range(100))
    async with session.get(f"{base}/missing") as r:
        assert r.status == 404
    # Keep-alive: a connector limited to one connection reuses it.
    ports = set()
    for _ in range(5):
        async with session.get(f"{base}/peer") as r:
            ports.add(await r.text())
    assert len(ports) == 1
    ws_url = base.replace("http", "ws", 1) + "/ws"
    async with session.ws_connect(ws_url) as sock:
        await sock.send_str("greenloop")
        assert await sock.receive_str() == "poolneerg"
        await sock.send_bytes(b"\x00\x01" * 1000)
        assert await sock.receive_bytes() == b"\x00\x01" * 1000


@pytest.mark.asyncio
async def test_aiohttp_http_round_trips():
    runner, port = await start_app(make_app())
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            await round_trips(session, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_aiohttp_https_round_trips(tls):
    runner, port = await start_app(make_app(), ssl_context=tls["server"])
    try:
        connector = aiohttp.TCPConnector(limit=1, ssl=tls["client"])
        async with aiohttp.ClientSession(connector=connector) as session:
            await round_trips(session, f"https://localhost:{port}")
            # The certificate names 127.0.0.1 too.
            async with session.get(f"https://127.0.0.1:{port}/") as r:
                assert await r.text() == "hello world"
        # A client that does not trust the test CA is refused.
        untrusting = aiohttp.TCPConnector(ssl=ssl.create_default_context())
        async with aiohttp.ClientSession(connector=untrusting) as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"https://localhost:{port}/")
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_aiohttp_many_concurrent_requests():
    arrived = 0
    all_arrived = asyncio.Event()

    async def barrier(request: web.Request) -> web.Response:
        # Every request waits until all of them are in flight at once.
        nonlocal arrived
        arrived += 1
        if arrived == N_CONCURRENT:
            all_arrived.set()
        await all_arrived.wait()
        return web.Response(text=request.match_info["i"])

    app = web.Application()
    app.router.add_get("/{i}", barrier)
    runner, port = await start_app(app)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def one(i: int) -> str:
                async with session.get(f"http://127.0.0.1:{port}/{i}") as r:
                    assert r.status == 200
                    return await r.text()

            results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(N_CONCURRENT))), 30)
        assert results == [str(i) for i in range(N_CONCURRENT)]
    finally:
        await runner.cleanup()


# -- asyncio streams -------------------------------------------------------------------------


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_streams_echo():
    server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
        writer.write(b"first line\n")
        assert await reader.readline() == b"first line\n"
        writer.write(b"a:b:")
        writer.write(b"c\n")
        assert await reader.readuntil(b":") == b"a:"
        assert await reader.readexactly(3) == b"b:c"
        assert await reader.readline() == b"\n"
        # A large line: both sides must honour flow control (drain / pause_reading).
        big = os.urandom(3 << 20).hex().encode() + b"\n"
        send = asyncio.ensure_future(_write_all(writer, big))
        received = bytearray()
        while len(received) < len(big):
            received += await reader.read(1 << 16)
        await send
        assert received == big
        writer.write_eof()
        assert await reader.read() == b""
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()
    await server.wait_closed()


async def _write_all(writer: asyncio.StreamWriter, data: bytes) -> None:
    for i in range(0, len(data), 1 << 18):
        writer.write(data[i : i + (1 << 18)])
        await writer.drain()


@pytest.mark.asyncio
async def test_streams_many_concurrent_connections():
    server = await asyncio.start_server(echo_handler, "127.0.0.1", 0, backlog=N_CONCURRENT)
    port = server.sockets[0].getsockname()[1]
    connected = 0
    all_connected = asyncio.Event()

    async def client(i: int) -> bytes:
        nonlocal connected
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            connected += 1
            if connected == N_CONCURRENT:
                all_connected.set()
            await all_connected.wait()  # all connections open at once
            for j in range(3):
                writer.write(b"client %d message %d\n" % (i, j))
            lines = [await reader.readline() for _ in range(3)]
            assert lines == [b"client %d message %d\n" % (i, j) for j in range(3)]
            writer.write_eof()
            return await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()

    async with server:
        results = await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(N_CONCURRENT))), 30)
    await server.wait_closed()
    assert results == [b""] * N_CONCURRENT


@pytest.mark.asyncio
async def test_streams_tls_echo(tls):
    server = await asyncio.start_server(echo_handler, "127.0.0.1", 0, ssl=tls["server"])
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls["client"], server_hostname="localhost"
        )
        for i in range(50):
            writer.write(b"tls line %d\n" % i)
        assert [await reader.readline() for _ in range(50)] == [b"tls line %d\n" % i for i in range(50)]
        writer.close()
        await writer.wait_closed()
    await server.wait_closed()
