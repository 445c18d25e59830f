"""I/O on the loop: sockets, servers, TLS, pipes, subprocesses, signals and fd registration.

Every test runs on asyncio's selector loop (the reference) and on greenloop. Everything
listens and connects on 127.0.0.1 / ::1 only.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator

import pytest
from _util import assert_same_error, error_of, has_ipv6, needs_epoll, run

HAS_IPV6 = has_ipv6()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback (::1) on this machine")


# -- helpers ---------------------------------------------------------------------------------


class Collect(asyncio.Protocol):
    """Collects what it receives; futures for the connection's milestones."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.data = bytearray()
        self.made: asyncio.Future[asyncio.BaseTransport] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.transport: asyncio.BaseTransport | None = None
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        self.data += data
        for n, fut in self.waiters:
            if len(self.data) >= n and not fut.done():
                fut.set_result(None)

    def eof_received(self):
        self.eof.set_result(None)

    def connection_lost(self, exc):
        if not self.eof.done():
            self.eof.set_result(None)
        self.lost.set_result(exc)

    async def received(self, n: int) -> bytes:
        if len(self.data) < n:
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append((n, fut))
            await fut
        return bytes(self.data)


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        self.transport.close()


async def tcp_pair(
    loop: asyncio.AbstractEventLoop, family: int = socket.AF_INET
) -> tuple[socket.socket, socket.socket]:
    """A connected pair of non-blocking TCP sockets, made with sock_accept/sock_connect."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen()
        listener.setblocking(False)
        client = socket.socket(family, socket.SOCK_STREAM)
        client.setblocking(False)
        try:
            (conn, peer), none = await asyncio.gather(
                loop.sock_accept(listener), loop.sock_connect(client, listener.getsockname())
            )
        except BaseException:
            client.close()
            raise
    assert none is None
    assert peer == client.getsockname()
    assert conn.gettimeout() == 0  # sock_accept returns non-blocking sockets
    return client, conn


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short directory name: a Unix socket path must fit in 108 bytes."""
    path = tempfile.mkdtemp(prefix="gl-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tls() -> dict[str, ssl.SSLContext]:
    """Server and client TLS contexts for 'localhost', from a CA the test generates."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return {"server": server, "client": client}


# -- sock_* methods ----------------------------------------------------------------------------


def test_sock_connect_accept_recv_sendall(loop):
    async def main():
        client, conn = await tcp_pair(loop)
        with client, conn:
            payload = os.urandom(1 << 20)  # larger than the socket buffers: sendall must wait
            received = bytearray()

            async def reader():
                while len(received) < len(payload):
                    chunk = await loop.sock_recv(conn, 65536)
                    assert chunk
                    received.extend(chunk)

            await asyncio.gather(loop.sock_sendall(client, payload), reader())
            assert received == payload
            client.shutdown(socket.SHUT_WR)
            assert await loop.sock_recv(conn, 10) == b""  # EOF

    run(loop, main())


def test_sock_recv_into(loop):
    async def main():
        client, conn = await tcp_pair(loop)
        with client, conn:
            buf = bytearray(10)
            pending = loop.create_task(loop.sock_recv_into(conn, buf))
            await asyncio.sleep(0.01)
            assert not pending.done()  # waits for data
            await loop.sock_sendall(client, b"abc")
            n = await pending
            assert buf[:n] == b"abc"
            view = memoryview(buf)[5:]
            await loop.sock_sendall(client, b"0123456789")
            n = await loop.sock_recv_into(conn, view)
            assert n == 5 and buf[5:] == b"01234"

    run(loop, main())


def test_sock_recv_cancelled_leaves_socket_usable(loop):
    async def main():
        client, conn = await tcp_pair(loop)
        with client, conn:
            t = loop.create_task(loop.sock_recv(conn, 10))
            await asyncio.sleep(0.01)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            await loop.sock_sendall(client, b"after")
            assert await loop.sock_recv(conn, 10) == b"after"

    run(loop, main())


@pytest.mark.parametrize(
    "family", [socket.AF_INET, pytest.param(socket.AF_INET6, marks=needs_ipv6)], ids=["v4", "v6"]
)
def test_sock_sendto_recvfrom(loop, family):
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"

    async def main():
        with socket.socket(family, socket.SOCK_DGRAM) as a, socket.socket(family, socket.SOCK_DGRAM) as b:
            a.bind((host, 0))
            b.bind((host, 0))
            a.setblocking(False)
            b.setblocking(False)
            pending = loop.create_task(loop.sock_recvfrom(b, 100))
            await asyncio.sleep(0.01)
            assert not pending.done()
            assert await loop.sock_sendto(a, b"datagram", b.getsockname()) == 8
            data, addr = await pending
            assert data == b"datagram"
            assert addr[:2] == a.getsockname()[:2]
            buf = bytearray(4)
            await loop.sock_sendto(b, b"reply!", a.getsockname())
            n, addr = await loop.sock_recvfrom_into(a, buf)
            assert (n, bytes(buf)) == (4, b"repl")  # truncated to the buffer
            assert addr[:2] == b.getsockname()[:2]
            await loop.sock_sendto(b, b"xyz", a.getsockname())
            n, _ = await loop.sock_recvfrom_into(a, buf, 2)
            assert n == 2 and buf[:2] == b"xy"

    run(loop, main())


def test_sock_sendfile(loop, tmp_path):
    path = tmp_path / "payload"
    payload = os.urandom(300_000)
    path.write_bytes(payload)

    async def main(f):
        client, conn = await tcp_pair(loop)
        with client, conn:
            received = bytearray()

            async def reader(n):
                while len(received) < n:
                    chunk = await loop.sock_recv(conn, 65536)
                    assert chunk
                    received.extend(chunk)

            sent, _ = await asyncio.gather(loop.sock_sendfile(client, f), reader(len(payload)))
            assert sent == len(payload)
            assert received == payload
            assert f.tell() == len(payload)
            # offset and count
            received.clear()
            sent, _ = await asyncio.gather(loop.sock_sendfile(client, f, 1000, 5000), reader(5000))
            assert sent == 5000
            assert received == payload[1000:6000]
            assert f.tell() == 6000

    with open(path, "rb") as f:
        run(loop, main(f))


def test_sock_method_bad_input(loop, tmp_path):
    (tmp_path / "f").write_text("text")
    with (
        socket.socket() as blocking,
        socket.socket(type=socket.SOCK_DGRAM) as udp,
        open(tmp_path / "f") as text_file,
        open(tmp_path / "f", "rb") as binary_file,
    ):
        udp.setblocking(False)
        msgs = [
            assert_same_error(loop, lambda lp: run(lp, lp.sock_sendfile(udp, binary_file))),
            assert_same_error(loop, lambda lp: run(lp, lp.sock_sendfile(blocking, text_file))),
            assert_same_error(loop, lambda lp: run(lp, lp.sock_sendfile(blocking, binary_file, -1))),
            assert_same_error(loop, lambda lp: run(lp, lp.sock_sendfile(blocking, binary_file, 0, 0))),
        ]

        def debug_recv(lp):
            lp.set_debug(True)
            return run(lp, lp.sock_recv(blocking, 1))

        msgs.append(assert_same_error(loop, debug_recv))
    assert msgs == [
        "only SOCK_STREAM type sockets are supported",
        "file should be opened in binary mode",
        "offset must be a non-negative integer (got -1)",
        "count must be a positive integer (got 0)",
        "the socket must be non-blocking",
    ]


def test_sock_connect_refused(loop):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        addr = s.getsockname()  # bound, not listening: connections are refused

        async def main():
            with socket.socket() as c:
                c.setblocking(False)
                with pytest.raises(ConnectionRefusedError):
                    await loop.sock_connect(c, addr)

        run(loop, main())


# -- create_connection / create_server ---------------------------------------------------------


def test_create_server_and_connection(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        async with server:
            assert server.is_serving()
            assert server.get_loop() is loop
            (sock,) = server.sockets
            host, port = sock.getsockname()
            transport, proto = await loop.create_connection(Collect, host, port)
            assert transport.get_extra_info("peername") == (host, port)
            assert isinstance(transport.get_extra_info("socket"), asyncio.trsock.TransportSocket)
            transport.write(b"hello ")
            transport.writelines([b"echo ", b"server"])
            assert await proto.received(17) == b"hello echo server"
            assert transport.can_write_eof()
            transport.write_eof()
            await proto.eof
            assert await proto.lost is None
            transport.close()
        assert not server.is_serving()
        await server.wait_closed()

    run(loop, main())


@pytest.mark.parametrize("ending", ["close", "abort", "peer reset"])
def test_green_transport_freed_without_garbage_collection(green_loop, ending):
    """A socket transport whose connection is lost is freed by reference counting.

    asyncio's selector transport keeps a bound method of itself (``_read_ready_cb``): on 3.11
    every closed transport, on 3.12+ one lost without close(), waits with its socket and
    protocol for a full collection (every second or two at 16,384 connections).
    greenloop breaks the cycle (asyncio's own loop fails this test: that is the point).
    """
    loop = green_loop

    async def main():
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.setblocking(False)
            connecting = loop.create_task(loop.create_connection(Collect, *listener.getsockname()))
            peer, _ = await loop.sock_accept(listener)
            transport, proto = await connecting
            with peer:
                transport.write(b"ping")
                assert await loop.sock_recv(peer, 4) == b"ping"
                if ending == "close":
                    transport.close()
                elif ending == "abort":
                    transport.abort()
                else:  # a reset from the peer: the transport's read fails, no close() call
                    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    peer.close()
                got = await proto.lost
            assert (got is None) == (ending != "peer reset")
            ref = weakref.ref(transport)
            del transport, proto, connecting
            return ref

    gc.disable()
    try:
        ref = run(loop, main())
        assert ref() is None, gc.get_referrers(ref())
    finally:
        gc.enable()


def test_server_start_serving_and_serve_forever(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, start_serving=False)
        assert not server.is_serving()
        port = server.sockets[0].getsockname()[1]
        await server.start_serving()
        assert server.is_serving()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.close()
        await writer.wait_closed()

        forever = loop.create_task(server.serve_forever())
        await asyncio.sleep(0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"pong")
        assert await reader.readexactly(4) == b"pong"
        writer.close()
        await writer.wait_closed()
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
        # Cancelling serve_forever() closes the server.
        assert not server.is_serving()
        await server.wait_closed()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(RuntimeError, match=r"^server .* is closed$"):
            await server.serve_forever()

    run(loop, main())


def test_create_server_on_existing_socket_and_multiple_hosts(loop):
    async def main():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            server = await loop.create_server(Echo, sock=sock)
            async with server:
                assert server.sockets[0].getsockname() == sock.getsockname()
                reader, writer = await asyncio.open_connection(*sock.getsockname())
                writer.write(b"x")
                assert await reader.readexactly(1) == b"x"
                writer.close()
                await writer.wait_closed()
            await server.wait_closed()
        hosts = ["127.0.0.1", "::1"] if HAS_IPV6 else ["127.0.0.1"]
        server = await loop.create_server(Echo, hosts, 0)
        async with server:
            assert sorted(s.family for s in server.sockets) == sorted(
                socket.AF_INET6 if ":" in h else socket.AF_INET for h in hosts
            )
            for s in server.sockets:
                reader, writer = await asyncio.open_connection(*s.getsockname()[:2])
                writer.write(b"y")
                assert await reader.readexactly(1) == b"y"
                writer.close()
                await writer.wait_closed()
        await server.wait_closed()

    run(loop, main())


def test_create_connection_refused_and_bad_input(loop):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            run(loop, loop.create_connection(asyncio.Protocol, "127.0.0.1", port))
    msgs = [
        assert_same_error(
            loop,
            lambda lp: run(lp, lp.create_connection(asyncio.Protocol, "127.0.0.1", 1, server_hostname="x")),
        ),
        assert_same_error(loop, lambda lp: run(lp, lp.create_connection(asyncio.Protocol))),
        assert_same_error(
            loop,
            lambda lp: run(lp, lp.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl_handshake_timeout=1)),
        ),
    ]
    assert msgs == [
        "server_hostname is only meaningful with ssl",
        "host and port was not specified and no sock specified",
        "ssl_handshake_timeout is only meaningful with ssl",
    ]


@needs_ipv6
def test_happy_eyeballs_falls_back_to_next_address(loop):
    """::1 first, where the connect hangs (full backlog); happy eyeballs moves on to 127.0.0.1."""

    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with socket.socket(socket.AF_INET6) as stalled, socket.socket(socket.AF_INET6) as filler:
            stalled.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                stalled.bind(("::1", port))
            except OSError:
                server.close()
                pytest.skip("the same port is taken on ::1")
            stalled.listen(0)
            filler.setblocking(False)
            await loop.sock_connect(filler, ("::1", port))  # fills the backlog of 0

            async def both_families(host, port, **kwargs):
                # "localhost" resolving to ::1 first, then 127.0.0.1
                assert host == "localhost"
                return [
                    (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::1", port, 0, 0)),
                    (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port)),
                ]

            loop.getaddrinfo = both_families
            try:
                transport, proto = await loop.create_connection(
                    Collect, "localhost", port, happy_eyeballs_delay=0.05, interleave=1
                )
            finally:
                del loop.getaddrinfo
            assert transport.get_extra_info("peername") == ("127.0.0.1", port)
            transport.write(b"eyeballs")
            assert await proto.received(8) == b"eyeballs"
            transport.close()
            await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


@needs_ipv6
@pytest.mark.parametrize("happy_eyeballs_delay", [None, 0.05])
def test_create_connection_tries_each_address(loop, happy_eyeballs_delay):
    """::1 refuses, 127.0.0.1 accepts; then both accept and the first address wins."""

    async def main():
        server4 = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server4.sockets[0].getsockname()[1]

        async def both_families(host, port, **kwargs):
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::1", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port)),
            ]

        loop.getaddrinfo = both_families
        try:
            transport, _ = await loop.create_connection(
                Collect, "localhost", port, happy_eyeballs_delay=happy_eyeballs_delay
            )
            assert transport.get_extra_info("peername") == ("127.0.0.1", port)
            transport.close()
            try:
                server6 = await loop.create_server(Echo, "::1", port)
            except OSError:
                server4.close()
                pytest.skip("the same port is taken on ::1")
            transport, _ = await loop.create_connection(
                Collect, "localhost", port, happy_eyeballs_delay=happy_eyeballs_delay, interleave=2
            )
            assert transport.get_extra_info("peername")[:2] == ("::1", port)
            transport.close()
            server6.close()
            await server6.wait_closed()
        finally:
            del loop.getaddrinfo
            server4.close()
            await server4.wait_closed()

    run(loop, main())


def test_connect_accepted_socket(loop):
    async def main():
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            connecting = loop.create_task(asyncio.open_connection(*listener.getsockname()))
            conn, _ = await loop.sock_accept(listener)
            transport, proto = await loop.connect_accepted_socket(Collect, conn)
            reader, writer = await connecting
            writer.write(b"accepted")
            assert await proto.received(8) == b"accepted"
            transport.write(b"back")
            assert await reader.readexactly(4) == b"back"
            writer.close()
            await writer.wait_closed()
            await proto.lost
            transport.close()

    run(loop, main())


# -- Unix sockets --------------------------------------------------------------------------------


def test_unix_server_and_connection(loop, short_tmp):
    path = os.path.join(short_tmp, "sock")

    async def main():
        server = await loop.create_unix_server(Echo, path)
        async with server:
            assert server.sockets[0].getsockname() == path
            transport, proto = await loop.create_unix_connection(Collect, path)
            transport.write(b"over unix")
            assert await proto.received(9) == b"over unix"
            transport.close()
            await proto.lost
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"streams")
            assert await reader.readexactly(7) == b"streams"
            writer.close()
            await writer.wait_closed()
        await server.wait_closed()

    run(loop, main())
    if sys.version_info >= (3, 13):
        assert not os.path.exists(path)  # 3.13 servers remove their socket file on close


def test_unix_connection_refused(loop, short_tmp):
    with pytest.raises(FileNotFoundError):
        run(loop, loop.create_unix_connection(asyncio.Protocol, os.path.join(short_tmp, "missing")))


# -- UDP ---------------------------------------------------------------------------------------


class DatagramEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data.upper(), addr)


class DatagramCollect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, object]] = asyncio.Queue()
        self.errors: asyncio.Queue[OSError] = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.queue.put_nowait((data, addr))

    def error_received(self, exc):
        self.errors.put_nowait(exc)


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)], ids=["v4", "v6"])
def test_udp_echo(loop, host):
    async def main():
        server_t, _ = await loop.create_datagram_endpoint(DatagramEcho, local_addr=(host, 0))
        server_addr = server_t.get_extra_info("sockname")
        client_t, client = await loop.create_datagram_endpoint(DatagramCollect, remote_addr=server_addr[:2])
        try:
            for i in range(20):
                client_t.sendto(b"ping %d" % i)
            got = [await client.queue.get() for _ in range(20)]
            assert sorted(data for data, _ in got) == sorted(b"PING %d" % i for i in range(20))
            assert all(addr[:2] == server_addr[:2] for _, addr in got)
            # An unconnected endpoint addresses each datagram.
            free_t, free = await loop.create_datagram_endpoint(DatagramCollect, local_addr=(host, 0))
            free_t.sendto(b"free", server_addr)
            data, addr = await free.queue.get()
            assert data == b"FREE"
            assert addr[:2] == server_addr[:2]
            free_t.close()
        finally:
            client_t.close()
            server_t.close()
        await asyncio.sleep(0)

    run(loop, main())


def test_udp_error_received(loop):
    with socket.socket(type=socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed_addr = s.getsockname()

    async def main():
        t, proto = await loop.create_datagram_endpoint(DatagramCollect, remote_addr=closed_addr)
        try:
            t.sendto(b"anyone?")
            exc = await proto.errors.get()
            assert isinstance(exc, ConnectionRefusedError)
        finally:
            t.close()
        await asyncio.sleep(0)

    run(loop, main())


def test_udp_bad_input(loop):
    msgs = [
        assert_same_error(
            loop,
            lambda lp: run(
                lp,
                lp.create_datagram_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", 0), reuse_address=True),
            ),
        ),
        assert_same_error(loop, lambda lp: run(lp, lp.create_datagram_endpoint(asyncio.DatagramProtocol))),
    ]
    # reuse_address was refused with a ValueError, then removed (3.11: TypeError).
    assert "reuse_address" in msgs[0]
    assert msgs[1] == "unexpected address family"


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_server_and_client(loop, tls):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=tls["server"])
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(
            Collect, "127.0.0.1", port, ssl=tls["client"], server_hostname="localhost"
        )
        assert transport.get_extra_info("sslcontext") is tls["client"]
        assert transport.get_extra_info("peercert")["subjectAltName"][0] == ("DNS", "localhost")
        payload = os.urandom(200_000)
        transport.write(payload)
        assert await proto.received(len(payload)) == payload
        transport.close()
        await proto.lost
        # A client that does not trust the CA fails the handshake.
        with pytest.raises(ssl.SSLCertVerificationError):
            await loop.create_connection(
                asyncio.Protocol,
                "127.0.0.1",
                port,
                ssl=ssl.create_default_context(),
                server_hostname="localhost",
            )
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_start_tls_upgrade(loop, tls):
    async def handle(reader, writer):
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(tls["server"])
        line = await reader.readline()
        writer.write(b"secure " + line)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        assert writer.get_extra_info("sslcontext") is None
        await writer.start_tls(tls["client"], server_hostname="localhost")
        assert writer.get_extra_info("sslcontext") is tls["client"]
        writer.write(b"hello\n")
        assert await reader.readline() == b"secure hello\n"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_loop_start_tls(loop, tls):
    """loop.start_tls() on protocol-level transports, both sides."""

    async def main():
        server_proto = Collect()
        server = await loop.create_server(lambda: server_proto, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(Collect, "127.0.0.1", port)
        plain_server_transport = await server_proto.made
        client_tls, server_tls = await asyncio.gather(
            loop.start_tls(transport, proto, tls["client"], server_hostname="localhost"),
            loop.start_tls(plain_server_transport, server_proto, tls["server"], server_side=True),
        )
        assert client_tls.get_extra_info("sslcontext") is tls["client"]
        assert server_tls.get_extra_info("sslcontext") is tls["server"]
        client_tls.write(b"encrypted")
        assert await server_proto.received(9) == b"encrypted"
        server_tls.write(b"reply")
        assert await proto.received(5) == b"reply"
        client_tls.close()
        await server_proto.lost
        server_tls.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


# -- transport sendfile ----------------------------------------------------------------------


@pytest.mark.parametrize("use_tls", [False, True], ids=["plain", "tls"])
def test_transport_sendfile(loop, tmp_path, tls, use_tls):
    path = tmp_path / "payload"
    payload = os.urandom(500_000)
    path.write_bytes(payload)

    async def main(f):
        received: asyncio.Future[Collect] = loop.create_future()

        def factory():
            proto = Collect()
            received.set_result(proto)
            return proto

        server_ssl = tls["server"] if use_tls else None
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ssl)
        port = server.sockets[0].getsockname()[1]
        client_ssl = {"ssl": tls["client"], "server_hostname": "localhost"} if use_tls else {}
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, **client_ssl)
        proto = await received
        if use_tls:
            with pytest.raises(RuntimeError, match=r"^fallback is disabled and native sendfile is not"):
                await loop.sendfile(transport, f, fallback=False)
        sent = await loop.sendfile(transport, f)
        assert sent == len(payload)
        sent = await loop.sendfile(transport, f, offset=10, count=100)
        assert sent == 100
        assert await proto.received(len(payload) + 100) == payload + payload[10:110]
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    with open(path, "rb") as f:
        run(loop, main(f))


# -- pipes ---------------------------------------------------------------------------------------


def test_read_and_write_pipes(loop):
    async def main(rpipe, wpipe):
        rtransport, rproto = await loop.connect_read_pipe(Collect, rpipe)
        wtransport, wproto = await loop.connect_write_pipe(Collect, wpipe)
        assert rtransport.get_extra_info("pipe") is rpipe
        payload = os.urandom(300_000)  # more than the pipe buffer: the write transport buffers
        wtransport.write(payload)
        wtransport.write(b"end")
        assert await rproto.received(len(payload) + 3) == payload + b"end"
        wtransport.close()
        await wproto.lost
        await rproto.eof  # the reader sees EOF once the writer is closed
        assert await rproto.lost is None
        assert rpipe.closed and wpipe.closed  # each transport closed its pipe

    rfd, wfd = os.pipe()
    with open(rfd, "rb", buffering=0) as rpipe, open(wfd, "wb", buffering=0) as wpipe:
        run(loop, main(rpipe, wpipe))


def test_write_pipe_reader_closed(loop):
    async def main(rfd, wpipe):
        wtransport, wproto = await loop.connect_write_pipe(Collect, wpipe)
        os.close(rfd)
        exc = await wproto.lost  # the write end notices the reader went away
        assert exc is None or isinstance(exc, BrokenPipeError)
        assert wtransport.is_closing()
        assert wpipe.closed

    rfd, wfd = os.pipe()
    with open(wfd, "wb", buffering=0) as wpipe:
        run(loop, main(rfd, wpipe))


# -- subprocesses --------------------------------------------------------------------------------

PY_UPPER = (
    "import sys; d = sys.stdin.read(); sys.stdout.write(d.upper()); sys.stderr.write('err'); sys.exit(3)"
)


def test_subprocess_exec_pipes(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PY_UPPER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(b"hello from the loop")
        assert (out, err) == (b"HELLO FROM THE LOOP", b"err")
        assert proc.returncode == 3

    run(loop, main())


def test_subprocess_shell(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "read x; echo $((x * 6)); echo oops >&2; exit 5",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate(b"7\n")
        assert out == b"42\noops\n"
        assert await proc.wait() == 5

    run(loop, main())


def test_subprocess_kill_and_concurrency(loop):
    async def main():
        sleeper = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", f"print({i} * {i})", stdout=asyncio.subprocess.PIPE
            )
            for i in range(4)
        ]
        outs = await asyncio.gather(*(p.communicate() for p in procs))
        assert [int(out) for out, _ in outs] == [i * i for i in range(4)]
        assert [p.returncode for p in procs] == [0] * 4
        assert sleeper.returncode is None
        sleeper.kill()
        assert await sleeper.wait() == -signal.SIGKILL

    run(loop, main())


def test_subprocess_protocol(loop):
    class Proto(asyncio.SubprocessProtocol):
        def __init__(self):
            self.out = bytearray()
            self.exited = loop.create_future()
            self.pipes_closed = set()

        def pipe_data_received(self, fd, data):
            assert fd == 1
            self.out += data

        def pipe_connection_lost(self, fd, exc):
            self.pipes_closed.add(fd)

        def process_exited(self):
            self.exited.set_result(None)

    async def main():
        transport, proto = await loop.subprocess_exec(
            Proto, sys.executable, "-c", "print('via protocol')", stdin=None, stderr=None
        )
        await proto.exited
        for _ in range(100):  # the pipe may close just after the exit is seen
            if 1 in proto.pipes_closed:
                break
            await asyncio.sleep(0.01)
        assert transport.get_returncode() == 0
        assert bytes(proto.out) == b"via protocol\n"
        assert 1 in proto.pipes_closed
        transport.close()

    run(loop, main())


# -- signals ---------------------------------------------------------------------------------------


def test_signal_handler(loop):
    async def main():
        got = loop.create_future()
        calls = []

        def handler(*args):
            calls.append(args)
            if not got.done():
                got.set_result(threading.get_ident())

        loop.add_signal_handler(signal.SIGUSR1, handler, "arg", 2)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            assert await got == threading.get_ident()  # runs as a callback on the loop's thread
            assert calls == [("arg", 2)]
        finally:
            assert loop.remove_signal_handler(signal.SIGUSR1) is True
        assert loop.remove_signal_handler(signal.SIGUSR1) is False
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL

    run(loop, main())


def test_signal_from_thread_wakes_sleeping_loop(loop):
    async def main():
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR2, lambda: got.done() or got.set_result("woken"))
        try:
            # The loop has nothing else to do: it sleeps until the signal's wake-up byte arrives.
            t = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR2))
            t.start()
            try:
                assert await got == "woken"
            finally:
                t.join()
        finally:
            loop.remove_signal_handler(signal.SIGUSR2)

    run(loop, main())


def test_signal_handlers_removed_on_close(loop_factory):
    lp = loop_factory()
    try:
        lp.add_signal_handler(signal.SIGUSR1, print)
        assert signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL
    finally:
        lp.close()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_signal_bad_input(loop):
    async def coro_handler():
        pass

    msgs = [
        assert_same_error(loop, lambda lp: lp.add_signal_handler(signal.SIGKILL, print)),
        assert_same_error(loop, lambda lp: lp.add_signal_handler(0, print)),
        assert_same_error(loop, lambda lp: lp.add_signal_handler("SIGUSR1", print)),
        assert_same_error(loop, lambda lp: lp.add_signal_handler(signal.SIGUSR1, coro_handler)),
        assert_same_error(loop, lambda lp: lp.remove_signal_handler(0)),
    ]
    assert msgs == [
        f"sig {int(signal.SIGKILL)} cannot be caught",
        "invalid signal number 0",
        "sig must be an int, not 'SIGUSR1'",
        "coroutines cannot be used with add_signal_handler()",
        "invalid signal number 0",
    ]
    errors = []

    def other_thread():
        errors.append(error_of(loop.add_signal_handler, signal.SIGUSR1, print))

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert errors[0][0] is RuntimeError
    assert "main thread" in errors[0][1]


# -- fd registration: closed and reused fd numbers -----------------------------------------------


def _socketpair_with_fd(fd: int) -> tuple[socket.socket, socket.socket]:
    """A socketpair whose first socket has descriptor number ``fd`` (just freed)."""
    a, b = socket.socketpair()
    if a.fileno() == fd:
        return a, b
    if b.fileno() == fd:
        return b, a
    a.close()
    b.close()
    pytest.fail(f"fd {fd} was not reused")


def test_reused_fd_after_remove_reader(loop):
    """Closing a registered fd and removing it afterwards: its number is then free to reuse."""
    old, old_peer = socket.socketpair()
    fd = old.fileno()
    stale = []
    loop.add_reader(fd, stale.append, "old reader")
    old.close()
    assert loop.remove_reader(fd) is True
    new, peer = _socketpair_with_fd(fd)
    with new, peer, old_peer:
        new.setblocking(False)
        got = loop.create_future()
        loop.add_reader(fd, lambda: got.done() or got.set_result(new.recv(100)))
        run(loop, asyncio.sleep(0.02))
        assert not got.done()
        peer.send(b"fresh")
        assert run(loop, got) == b"fresh"
        assert loop.remove_reader(fd) is True
    assert stale == []


# The tests below close a registered fd *without* removing it first. asyncio's own loop does
# not survive that: its epoll selector still lists the number, so add_reader() on the socket
# that reuses it either issues EPOLL_CTL_MOD and raises FileNotFoundError, or (same event
# mask) issues no epoll_ctl at all and never delivers the new socket's events. greenloop's
# poller promises better (greenloop/_poller.py docstring), so these are greenloop-only tests.


def test_green_reused_fd_reader_after_reader(green_loop):
    loop = green_loop
    old, old_peer = socket.socketpair()
    fd = old.fileno()
    stale = []
    loop.add_reader(fd, stale.append, "old reader")
    old.close()  # no remove_reader()
    new, peer = _socketpair_with_fd(fd)
    with new, peer, old_peer:
        new.setblocking(False)
        got = loop.create_future()
        try:
            loop.add_reader(fd, lambda: got.done() or got.set_result(new.recv(100)))
            run(loop, asyncio.sleep(0.02))
            assert not got.done()
            peer.send(b"fresh")
            assert run(loop, got, timeout=1) == b"fresh"
        finally:
            loop.remove_reader(fd)
    assert stale == []


@needs_epoll
def test_green_reused_fd_reader_after_writer(green_loop):
    loop = green_loop
    old, old_peer = socket.socketpair()
    fd = old.fileno()
    stale = []
    loop.add_writer(fd, stale.append, "old writer")
    old.close()  # no remove_writer()
    new, peer = _socketpair_with_fd(fd)
    with new, peer, old_peer:
        new.setblocking(False)
        got = loop.create_future()
        try:
            loop.add_reader(fd, lambda: got.done() or got.set_result(new.recv(100)))
            run(loop, asyncio.sleep(0.02))
            assert not got.done()
            peer.send(b"fresh")
            assert run(loop, got, timeout=1) == b"fresh"
        finally:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
    assert stale == []


def test_green_reused_fd_number_of_a_dup(green_loop):
    """The closed fd had a dup that stays open: events on that old file must not be delivered."""
    loop = green_loop
    old, old_peer = socket.socketpair()
    fd = old.fileno()
    twin = old.dup()  # keeps the old file, and its epoll registration, alive
    loop.add_reader(fd, lambda: None)
    old.close()
    new, peer = _socketpair_with_fd(fd)
    with new, peer, old_peer, twin:
        new.setblocking(False)
        calls = []

        def on_readable():
            try:
                calls.append(new.recv(100))
            except BlockingIOError:
                calls.append("spurious")

        try:
            loop.add_reader(fd, on_readable)
            old_peer.send(b"to the old file")  # readable through twin, not through fd
            run(loop, asyncio.sleep(0.05))
            assert calls == []
            peer.send(b"fresh")
            run(loop, asyncio.sleep(0.05))
            assert calls == [b"fresh"]
        finally:
            loop.remove_reader(fd)
