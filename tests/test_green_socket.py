"""greenloop.green.socket: the stdlib socket API on green threads.

The shared scenarios run three ways (the ``impl`` fixture): the stdlib socket on real OS
threads (the reference: if a scenario fails there, the scenario is wrong), the green socket
on green threads of one greenloop loop, and the green socket on real OS threads with no loop,
where it must behave exactly like the stdlib. The green-specific tests follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import io
import os
import socket as std_socket
import ssl
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _util import TIMEOUT

import greenloop
from greenloop import _green
from greenloop.green import socket as gsocket


def _ipv6_works() -> bool:
    if not std_socket.has_ipv6:
        return False
    try:
        with std_socket.socket(std_socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _ipv6_works()


# -- the three implementations ----------------------------------------------------------------


class _Thread:
    """A real OS thread with join() returning the result or raising the exception."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(fn, args), daemon=True)
        self._thread.start()

    def _main(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._result = fn(*args)
        except BaseException as exc:
            self._error = exc

    def join(self, timeout: float | None = TIMEOUT) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"thread still running after {timeout} s")
        if self._error is not None:
            raise self._error
        return self._result


class Impl:
    """A socket module plus a way to run concurrent code: the unit the scenarios are run on."""

    def __init__(self, name: str, mod: Any, green: bool) -> None:
        self.name = name
        self.mod = mod
        self.green = green  # green threads on a loop, else real OS threads

    def __repr__(self) -> str:
        return self.name

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run the scenario ``fn`` to completion (in a green thread, or in a real OS thread)."""
        if not self.green:
            return _Thread(fn).join()

        async def main() -> Any:
            return await asyncio.wait_for(greenloop.spawn(fn), TIMEOUT)

        return greenloop.run(main())

    def spawn(self, fn: Callable[..., Any], *args: Any) -> Any:
        return greenloop.spawn(fn, *args) if self.green else _Thread(fn, *args)

    def sleep(self, seconds: float) -> None:
        if self.green:
            greenloop.sleep(seconds)
        else:
            time.sleep(seconds)


IMPLS = {
    "stdlib-threads": Impl("stdlib-threads", std_socket, green=False),
    "green-greenthreads": Impl("green-greenthreads", gsocket, green=True),
    "green-osthreads": Impl("green-osthreads", gsocket, green=False),
}


@pytest.fixture(params=list(IMPLS))
def impl(request: pytest.FixtureRequest) -> Impl:
    return IMPLS[request.param]


def _tcp_server(mod: Any, family: int = std_socket.AF_INET, host: str = "127.0.0.1") -> Any:
    srv = mod.socket(family, std_socket.SOCK_STREAM)
    srv.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_REUSEADDR, 1)
    srv.bind((host, 0))
    srv.listen(128)
    return srv


def _echo_once(conn: Any) -> int:
    """Echo everything until EOF; return the byte count."""
    total = 0
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return total
            conn.sendall(data)
            total += len(data)


def _recv_exactly(sock: Any, n: int) -> bytes:
    chunks = []
    while n:
        data = sock.recv(min(n, 65536))
        assert data, "unexpected EOF"
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


# -- shared scenarios ---------------------------------------------------------------------------


def test_tcp_echo(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        with _tcp_server(mod) as srv:
            server = impl.spawn(lambda: _echo_once(srv.accept()[0]))
            with mod.create_connection(srv.getsockname()) as c:
                assert type(c) is mod.socket
                for i in range(20):
                    msg = b"message %d " % i * (i + 1)
                    c.sendall(msg)
                    assert _recv_exactly(c, len(msg)) == msg
                c.shutdown(std_socket.SHUT_WR)
                assert c.recv(10) == b""
            assert server.join() == sum(len(b"message %d " % i * (i + 1)) for i in range(20))

    impl.run(body)


def test_accept_returns_same_class_and_timeout_rules(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        with _tcp_server(mod) as srv:
            srv.settimeout(5.0)
            c = mod.create_connection(srv.getsockname())
            conn, addr = srv.accept()
            with c, conn:
                assert type(conn) is mod.socket
                assert addr == c.getsockname()
                # Issue #7995: a connection accepted from a listener with a timeout is blocking.
                assert conn.gettimeout() is None
                assert conn.getblocking()
                assert conn.family == std_socket.AF_INET
                assert conn.type == std_socket.SOCK_STREAM
                assert isinstance(conn, std_socket.socket)
                d = conn.dup()
                with d:
                    assert type(d) is mod.socket
                    assert d.gettimeout() is None
                    d.sendall(b"via dup")
                    assert c.recv(100) == b"via dup"

    impl.run(body)


def test_recv_into_and_recvfrom_into(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        a, b = mod.socketpair()
        with a, b:
            sender = impl.spawn(lambda: (impl.sleep(0.02), a.sendall(b"hello world")))
            buf = bytearray(5)
            assert b.recv_into(buf) == 5
            assert buf == b"hello"
            sender.join()
            buf = bytearray(10)
            n, _addr = b.recvfrom_into(buf, 3)
            assert (n, bytes(buf[:3])) == (3, b" wo")
            assert b.recv(100, std_socket.MSG_PEEK) == b"rld"
            assert b.recvfrom(100)[0] == b"rld"

    impl.run(body)


def test_udp_sendto_recvfrom(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        a = mod.socket(std_socket.AF_INET, std_socket.SOCK_DGRAM)
        b = mod.socket(std_socket.AF_INET, std_socket.SOCK_DGRAM)
        with a, b:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))

            def reply() -> None:
                data, addr = b.recvfrom(100)
                b.sendto(data.upper(), addr)
                data, addr = b.recvfrom(100)
                b.sendto(data.upper(), 0, addr)  # the three-argument form

            peer = impl.spawn(reply)
            a.sendto(b"ping", b.getsockname())
            assert a.recvfrom(100) == (b"PING", b.getsockname())
            a.sendto(b"pong", 0, b.getsockname())
            buf = bytearray(10)
            assert a.recvfrom_into(buf) == (4, b.getsockname())
            assert buf[:4] == b"PONG"
            peer.join()

    impl.run(body)


def test_recv_timeout(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        a, b = mod.socketpair()
        with a, b:
            b.settimeout(0.05)
            assert b.gettimeout() == 0.05
            assert b.timeout == 0.05
            assert b.getblocking()
            t0 = time.monotonic()
            with pytest.raises(std_socket.timeout, match=r"^timed out$") as info:
                b.recv(10)
            assert type(info.value) is TimeoutError
            assert 0.04 <= time.monotonic() - t0 < 2.0
            # Still usable after a timeout.
            a.sendall(b"x")
            assert b.recv(10) == b"x"

    impl.run(body)


def test_accept_timeout(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        with _tcp_server(mod) as srv:
            srv.settimeout(0.05)
            with pytest.raises(TimeoutError, match="timed out"):
                srv.accept()

    impl.run(body)


def test_non_blocking_modes(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        a, b = mod.socketpair()
        with a, b:
            b.settimeout(0)
            assert (b.gettimeout(), b.getblocking(), b.timeout) == (0.0, False, 0.0)
            with pytest.raises(BlockingIOError) as info:
                b.recv(10)
            assert info.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
            b.setblocking(True)
            assert (b.gettimeout(), b.getblocking()) == (None, True)
            b.setblocking(False)
            assert b.gettimeout() == 0.0
            with pytest.raises(BlockingIOError):
                b.recv_into(bytearray(1))
            b.settimeout(None)
            assert b.gettimeout() is None
            b.settimeout(2)
            assert b.gettimeout() == 2.0 and isinstance(b.gettimeout(), float)
            # The stdlib's validation, messages included.
            with pytest.raises(ValueError, match="Timeout value out of range"):
                b.settimeout(-1)
            with pytest.raises(TypeError):
                b.settimeout("1")  # type: ignore[arg-type]
            assert b.gettimeout() == 2.0

    impl.run(body)


def test_default_timeout_applies(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        old = std_socket.getdefaulttimeout()
        std_socket.setdefaulttimeout(0.05)
        try:
            a, b = mod.socketpair()
        finally:
            std_socket.setdefaulttimeout(old)
        with a, b:
            assert a.gettimeout() == 0.05
            with pytest.raises(TimeoutError):
                a.recv(1)

    impl.run(body)


def test_connect_refused(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        with _tcp_server(mod) as srv:
            addr = srv.getsockname()
        with mod.socket() as c:
            assert c.connect_ex(addr) == errno.ECONNREFUSED
        with mod.socket() as c, pytest.raises(ConnectionRefusedError):
            c.connect(addr)
        with pytest.raises(ConnectionRefusedError):
            mod.create_connection(addr)

    impl.run(body)


def test_connect_timeout(impl: Impl) -> None:
    # A listener with backlog 0 that never accepts: Linux drops the SYNs of the second
    # connection, so connect() waits until its timeout.
    mod = impl.mod

    def body() -> None:
        srv = mod.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        first = mod.create_connection(srv.getsockname())
        with srv, first, mod.socket() as c, mod.socket() as d:
            c.settimeout(0.1)
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match="timed out"):
                c.connect(srv.getsockname())
            assert time.monotonic() - t0 >= 0.09
            d.settimeout(0.05)
            assert d.connect_ex(srv.getsockname()) == errno.EWOULDBLOCK

    impl.run(body)


def test_sendall_large_with_slow_reader(impl: Impl) -> None:
    mod = impl.mod
    payload = os.urandom(1 << 20)

    def body() -> None:
        a, b = mod.socketpair()
        with a, b:
            a.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_SNDBUF, 16384)

            def reader() -> bytes:
                got = bytearray()
                while len(got) < len(payload):
                    got += b.recv(65536)
                return bytes(got)

            r = impl.spawn(reader)
            a.sendall(memoryview(payload))
            assert r.join() == payload

    impl.run(body)


def test_sendall_timeout_covers_whole_call(impl: Impl) -> None:
    # The peer keeps reading a little, so each send makes progress: the timeout still ends
    # the call, because (since 3.5) it bounds the whole sendall(), not each chunk.
    mod = impl.mod

    def body() -> None:
        a, b = mod.socketpair()
        with a, b:
            a.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_SNDBUF, 4096)
            stop = threading.Event()

            def trickle() -> None:
                b.settimeout(0.02)
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        b.recv(512)
                    impl.sleep(0.01)

            r = impl.spawn(trickle)
            a.settimeout(0.2)
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match="timed out"):
                a.sendall(b"x" * (8 << 20))
            elapsed = time.monotonic() - t0
            stop.set()
            r.join()
            assert 0.18 <= elapsed < 2.0

    impl.run(body)


def test_makefile_readline(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        a, b = mod.socketpair()
        with a, b:

            def writer() -> None:
                with a.makefile("w", encoding="utf-8", newline="\n") as f:
                    for i in range(100):
                        f.write(f"line {i}\n")
                        if i % 10 == 0:
                            f.flush()
                            impl.sleep(0.001)
                a.shutdown(std_socket.SHUT_WR)

            w = impl.spawn(writer)
            with b.makefile("rb") as f:
                lines = f.readlines()
            w.join()
            assert lines == [f"line {i}\n".encode() for i in range(100)]
            # The file kept its own reference: closing it left the socket usable.
            assert b.fileno() >= 0

    impl.run(body)


def test_makefile_timeout(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        a, b = mod.socketpair()
        with a, b:
            b.settimeout(0.05)
            with b.makefile("rb") as f, pytest.raises(TimeoutError):
                f.readline()

    impl.run(body)


def test_sendfile(impl: Impl, tmp_path: Any) -> None:
    mod = impl.mod
    data = os.urandom(3 << 20)
    path = tmp_path / "blob"
    path.write_bytes(data)

    def body() -> None:
        with _tcp_server(mod) as srv:
            c = mod.create_connection(srv.getsockname())
            conn, _ = srv.accept()
            with c, conn:
                r = impl.spawn(_recv_exactly, conn, len(data) + 1000 + 500)
                with open(path, "rb") as f:
                    assert c.sendfile(f) == len(data)
                    assert f.tell() == len(data)
                    assert c.sendfile(f, 5000, 1000) == 1000
                    assert f.tell() == 6000
                # Not a regular file: the send() fallback.
                assert c.sendfile(io.BytesIO(data[:500])) == 500
                assert r.join() == data + data[5000:6000] + data[:500]

    impl.run(body)


def test_sendfile_non_blocking_refused(impl: Impl, tmp_path: Any) -> None:
    mod = impl.mod
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 100)

    def body() -> None:
        a, b = mod.socketpair()
        with a, b, open(path, "rb") as f:
            a.setblocking(False)
            with pytest.raises(ValueError, match="non-blocking sockets are not supported"):
                a.sendfile(f)

    impl.run(body)


def test_shutdown_wakes_reader(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        a, b = mod.socketpair()
        with a, b:
            r = impl.spawn(b.recv, 10)
            impl.sleep(0.05)
            b.shutdown(std_socket.SHUT_RDWR)
            assert r.join() == b""

    impl.run(body)


def test_shutdown_wakes_accept(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        with _tcp_server(mod) as srv:
            r = impl.spawn(srv.accept)
            impl.sleep(0.05)
            srv.shutdown(std_socket.SHUT_RDWR)
            with pytest.raises(OSError) as info:
                r.join()
            assert info.value.errno == errno.EINVAL

    impl.run(body)


def test_closed_socket_errors(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        a, b = mod.socketpair()
        b.close()
        a.close()
        for op in (lambda: a.recv(1), lambda: a.send(b"x"), lambda: a.sendall(b"x")):
            with pytest.raises(OSError) as info:
                op()
            assert info.value.errno == errno.EBADF
        with pytest.raises(OSError) as info:
            a.settimeout(1)
        assert info.value.errno == errno.EBADF
        assert "[closed]" in repr(a)

    impl.run(body)


def test_unix_stream_and_dgram(impl: Impl, tmp_path: Any) -> None:
    mod = impl.mod
    path = str(tmp_path / "s.sock")
    dpath = str(tmp_path / "d.sock")

    def body() -> None:
        with mod.socket(std_socket.AF_UNIX, std_socket.SOCK_STREAM) as srv:
            srv.bind(path)
            srv.listen(5)
            server = impl.spawn(lambda: _echo_once(srv.accept()[0]))
            with mod.socket(std_socket.AF_UNIX) as c:
                c.connect(path)
                c.sendall(b"unix")
                assert c.recv(10) == b"unix"
            assert server.join() == 4
        with mod.socket(std_socket.AF_UNIX, std_socket.SOCK_DGRAM) as d:
            d.bind(dpath)
            with mod.socket(std_socket.AF_UNIX, std_socket.SOCK_DGRAM) as s:
                r = impl.spawn(d.recvfrom, 100)
                impl.sleep(0.01)
                s.sendto(b"datagram", dpath)
                assert r.join()[0] == b"datagram"

    impl.run(body)


def test_unix_connect_waits_for_full_backlog(impl: Impl, tmp_path: Any) -> None:
    # A blocking connect() to a Unix listener whose backlog is full waits until it accepts.
    mod = impl.mod
    path = str(tmp_path / "b.sock")

    def body() -> None:
        with mod.socket(std_socket.AF_UNIX) as srv:
            srv.bind(path)
            srv.listen(0)
            first = mod.socket(std_socket.AF_UNIX)
            first.connect(path)
            late = mod.socket(std_socket.AF_UNIX)
            with first, late:
                r = impl.spawn(late.connect, path)
                impl.sleep(0.05)
                for _ in range(2):
                    conn, _ = srv.accept()
                    conn.close()
                r.join()
                assert late.getpeername() == path

    impl.run(body)


def test_recvmsg_sendmsg_fd_passing(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        a, b = mod.socketpair()
        r, w = os.pipe()
        try:
            with a, b:
                receiver = impl.spawn(mod.recv_fds, b, 100, 1)
                impl.sleep(0.01)
                assert mod.send_fds(a, [b"fd"], [r]) == 2
                msg, fds, _flags, _addr = receiver.join()
                assert msg == b"fd"
                os.write(w, b"!")
                assert os.read(fds[0], 1) == b"!"
                os.close(fds[0])
                assert a.sendmsg([b"a", b"b"]) == 2
                assert b.recvmsg(10) == (b"ab", [], 0, None)
        finally:
            os.close(r)
            os.close(w)

    impl.run(body)


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback")
def test_ipv6_loopback(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        with _tcp_server(mod, std_socket.AF_INET6, "::1") as srv:
            server = impl.spawn(lambda: _echo_once(srv.accept()[0]))
            with mod.create_connection(("::1", srv.getsockname()[1])) as c:
                assert c.family == std_socket.AF_INET6
                c.sendall(b"six")
                assert c.recv(10) == b"six"
            assert server.join() == 3

    impl.run(body)


def test_create_server_and_localhost_connection(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        with mod.create_server(("127.0.0.1", 0)) as srv:
            assert type(srv) is mod.socket
            server = impl.spawn(lambda: _echo_once(srv.accept()[0]))
            # A host name: resolved by getaddrinfo (on a resolver thread for the green socket).
            with mod.create_connection(("localhost", srv.getsockname()[1]), timeout=5) as c:
                assert c.gettimeout() == 5.0
                c.sendall(b"hi")
                assert c.recv(10) == b"hi"
            assert server.join() == 2

    impl.run(body)


def test_ssl_wrap(impl: Impl) -> None:
    # ssl works on the stdlib socket class, so it must accept this one (the green ssl module
    # is another matter; here both ends are real OS threads or green threads as given).
    trustme = pytest.importorskip("trustme")
    mod = impl.mod
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    if impl.green:
        pytest.skip("SSLSocket does its own blocking I/O: green SSL is greenloop.green.ssl's job")

    def body() -> None:
        with _tcp_server(mod) as srv:

            def serve() -> bytes:
                conn, _ = srv.accept()
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    data = tls.recv(100)
                    tls.sendall(data[::-1])
                    return bytes(data)

            server = impl.spawn(serve)
            raw = mod.create_connection(srv.getsockname())
            with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"secret")
                assert tls.recv(100) == b"terces"
            assert server.join() == b"secret"

    impl.run(body)


# -- green-specific ---------------------------------------------------------------------------


def run_green(fn: Callable[[], Any]) -> Any:
    return IMPLS["green-greenthreads"].run(fn)


def test_module_mirrors_stdlib() -> None:
    for name in std_socket.__all__:
        assert hasattr(gsocket, name), name
    for name in gsocket.__implements__:
        assert getattr(gsocket, name) is not getattr(std_socket, name), name
    assert gsocket.AF_INET is std_socket.AF_INET
    assert gsocket.timeout is TimeoutError
    assert gsocket.error is OSError
    assert gsocket._GLOBAL_DEFAULT_TIMEOUT is std_socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
    assert issubclass(gsocket.socket, std_socket.socket)


def test_two_hundred_echo_clients_in_one_loop() -> None:
    n_clients, rounds = 200, 5

    def serve(srv: Any, gts: list[Any]) -> None:
        for _ in range(n_clients):
            conn, _ = srv.accept()
            gts.append(greenloop.spawn(_echo_once, conn))

    def client(port: int, i: int) -> int:
        with gsocket.create_connection(("127.0.0.1", port)) as c:
            for r in range(rounds):
                msg = f"client {i} round {r}".encode() * (1 + i % 7)
                c.sendall(msg)
                assert _recv_exactly(c, len(msg)) == msg
                greenloop.sleep(0)
        return i

    def body() -> None:
        with _tcp_server(gsocket) as srv:
            srv.listen(n_clients)
            handlers: list[Any] = []
            acceptor = greenloop.spawn(serve, srv, handlers)
            port = srv.getsockname()[1]
            clients = [greenloop.spawn(client, port, i) for i in range(n_clients)]
            assert [gt.join() for gt in clients] == list(range(n_clients))
            acceptor.join()
            assert len(handlers) == n_clients
            for gt in handlers:
                gt.join()

    t0 = time.monotonic()
    run_green(body)
    assert time.monotonic() - t0 < TIMEOUT


def test_close_wakes_waiting_reader_with_ebadf() -> None:
    def body() -> None:
        a, b = gsocket.socketpair()
        with a:
            r = greenloop.spawn(b.recv, 10)
            greenloop.sleep(0.02)
            b.close()
            with pytest.raises(OSError) as info:
                r.join(TIMEOUT)
            assert info.value.errno == errno.EBADF

    run_green(body)


def test_close_wakes_waiting_accept_and_writer() -> None:
    def body() -> None:
        srv = _tcp_server(gsocket)
        acc = greenloop.spawn(srv.accept)
        a, b = gsocket.socketpair()
        a.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_SNDBUF, 4096)
        w = greenloop.spawn(a.sendall, b"x" * (4 << 20))
        greenloop.sleep(0.02)
        srv.close()
        a.close()
        for gt in (acc, w):
            with pytest.raises(OSError) as info:
                gt.join(TIMEOUT)
            assert info.value.errno == errno.EBADF
        b.close()

    run_green(body)


def test_close_from_os_thread_wakes_green_waiter() -> None:
    def body() -> None:
        a, b = gsocket.socketpair()
        with a:
            r = greenloop.spawn(b.recv, 10)
            greenloop.sleep(0.02)
            t = threading.Thread(target=b.close)
            t.start()
            with pytest.raises(OSError) as info:
                r.join(TIMEOUT)
            assert info.value.errno == errno.EBADF
            t.join()

    run_green(body)


def test_one_waiter_per_direction() -> None:
    def body() -> None:
        a, b = gsocket.socketpair()
        with a, b:
            first = greenloop.spawn(b.recv, 10)
            greenloop.sleep(0.01)
            with pytest.raises(RuntimeError, match="already waiting to read from this socket"):
                b.recv(10)
            # The other direction is free, and the first reader still gets its data.
            b.sendall(b"to a")
            assert a.recv(10) == b"to a"
            a.sendall(b"to b")
            assert first.join(TIMEOUT) == b"to b"

    run_green(body)


def test_waiting_on_fd_taken_by_another_waiter_is_an_error() -> None:
    def body() -> None:
        a, b = gsocket.socketpair()
        with a, b:
            other = greenloop.spawn(greenloop.wait_readable, b.fileno())
            greenloop.sleep(0.01)
            with pytest.raises(RuntimeError, match="already being waited on for reading"):
                b.recv(10)
            a.sendall(b"!")
            other.join(TIMEOUT)
            assert b.recv(10) == b"!"

    run_green(body)


def test_cancel_recv_then_reuse() -> None:
    def body() -> None:
        a, b = gsocket.socketpair()
        with a, b:
            r = greenloop.spawn(b.recv, 10)
            greenloop.sleep(0.01)
            r.cancel()
            with pytest.raises(asyncio.CancelledError):
                r.join(TIMEOUT)
            # The waiter is gone: another green thread can wait, and gets the data.
            r2 = greenloop.spawn(b.recv, 10)
            greenloop.sleep(0.01)
            a.sendall(b"after")
            assert r2.join(TIMEOUT) == b"after"

    run_green(body)


@pytest.mark.parametrize("priority", [greenloop.PRIORITY_DEFAULT, greenloop.PRIORITY_DEFAULT - 1])
def test_wait_after_a_short_read_is_woken_cancelled_and_reused(priority: int) -> None:
    # After a short read, recv() waits before reading (the socket is probably empty): the
    # path a thread-per-connection server takes once per request. At the default priority it
    # is the lean wait; at another priority the general one. Both must wake on data, take
    # cancel() while waiting and cancel() that came before the wait, and leave no waiter.
    def body() -> None:
        a, b = gsocket.socketpair()
        with a, b:

            def reader() -> list[bytes]:
                got = [b.recv(10)]  # a short read: the next recv() waits first
                got.append(b.recv(10))
                return got

            a.sendall(b"one")
            r = greenloop.spawn(reader, priority=priority)
            greenloop.sleep(0.01)
            a.sendall(b"two")
            assert r.join(TIMEOUT) == [b"one", b"two"]

            r = greenloop.spawn(reader, priority=priority)
            a.sendall(b"three")
            greenloop.sleep(0.01)  # read "three", now waiting in the second recv()
            r.cancel()
            with pytest.raises(asyncio.CancelledError):
                r.join(TIMEOUT)

            def cancelled_before_waiting() -> None:
                assert b.recv(10) == b"four"
                greenloop.current_green_thread().cancel()  # type: ignore[union-attr]
                b.recv(10)  # raises at once: the cancel came while it had no wait

            a.sendall(b"four")
            r = greenloop.spawn(cancelled_before_waiting, priority=priority)
            with pytest.raises(asyncio.CancelledError):
                r.join(TIMEOUT)
            # No waiter was left behind by either cancel: a new wait gets the next bytes.
            r = greenloop.spawn(b.recv, 10, priority=priority)
            greenloop.sleep(0.01)
            a.sendall(b"five")
            assert r.join(TIMEOUT) == b"five"

    run_green(body)


class _CountingPoller:
    """Wraps the selector's epoll (or poll) object, recording the calls that change interest."""

    def __init__(self, poller: Any) -> None:
        self._poller = poller
        self.calls: list[tuple[str, int]] = []

    def register(self, fd: int, *args: Any) -> Any:
        self.calls.append(("register", fd))
        return self._poller.register(fd, *args)

    def modify(self, fd: int, *args: Any) -> Any:
        self.calls.append(("modify", fd))
        return self._poller.modify(fd, *args)

    def unregister(self, fd: int) -> Any:
        self.calls.append(("unregister", fd))
        return self._poller.unregister(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._poller, name)


def test_registration_kept_across_waits_and_dropped_when_idle() -> None:
    def body() -> None:
        loop = asyncio.get_running_loop()
        selector = loop._selector  # type: ignore[attr-defined]
        fd_map = selector.get_map()
        if not hasattr(selector, "_selector"):
            pytest.skip("GREENLOOP_POLLER=select: no kernel object to count calls on")
        counting = selector._selector = _CountingPoller(selector._selector)
        try:
            a, b = gsocket.socketpair()
            with a, b:
                fd = b.fileno()
                handles = []
                for i in range(5):
                    r = greenloop.spawn(b.recv, 10)
                    greenloop.sleep(0.005)
                    a.sendall(b"%d" % i)
                    assert r.join(TIMEOUT) == b"%d" % i
                    # Still registered, with the same handle: the next wait re-arms for free.
                    handle = fd_map[fd].data[0]
                    assert handle is not None and not handle.cancelled()
                    handles.append(handle)
                assert all(h is handles[0] for h in handles)
                # Five waits, one registration.
                assert [c for c in counting.calls if c[1] == fd] == [("register", fd)]
                # Data while nobody waits: the loop unregisters the fd instead of spinning.
                a.sendall(b"unread")
                greenloop.sleep(0.01)
                assert fd not in fd_map
                assert b.recv(10) == b"unread"
                r = greenloop.spawn(b.recv, 10)
                greenloop.sleep(0.005)
                a.sendall(b"y")
                r.join(TIMEOUT)
                assert fd in fd_map
            # close() removed it before closing the fd.
            assert fd not in fd_map
            assert [c for c in counting.calls if c[1] == fd] == [
                ("register", fd),
                ("unregister", fd),
                ("register", fd),
                ("unregister", fd),
            ]
        finally:
            selector._selector = counting._poller

    run_green(body)


def test_close_with_both_directions_registered_leaves_the_selector() -> None:
    # A socket waited on for reading and for writing at once holds one selector entry with
    # both; close() must drop the entry whole (and wake both waiters with EBADF), so that a
    # new file given the same fd number starts clean.
    def body() -> None:
        loop = asyncio.get_running_loop()
        fd_map = loop._selector.get_map()  # type: ignore[attr-defined]
        a, b = gsocket.socketpair()
        with a:
            b.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_SNDBUF, 4096)
            reader = greenloop.spawn(b.recv, 10)
            writer = greenloop.spawn(b.sendall, b"x" * (1 << 22))  # fills both buffers, waits
            greenloop.sleep(0.02)
            fd = b.fileno()
            r, w = fd_map[fd].data
            assert r is not None and w is not None
            b.close()
            assert fd not in fd_map
            for gt in (reader, writer):
                with pytest.raises(OSError) as info:
                    gt.join(TIMEOUT)
                assert info.value.errno == errno.EBADF
        c, d = gsocket.socketpair()  # likely reuses the numbers: must register afresh
        with c, d:
            r2 = greenloop.spawn(c.recv, 10)
            greenloop.sleep(0.005)
            d.sendall(b"fresh")
            assert r2.join(TIMEOUT) == b"fresh"

    run_green(body)


def test_unclosed_socket_collected_leaves_the_selector() -> None:
    def body() -> None:
        loop = asyncio.get_running_loop()
        fd_map = loop._selector.get_map()  # type: ignore[attr-defined]
        a, b = gsocket.socketpair()
        # Wait here, not in a spawned green thread: nothing else may keep a reference to b.
        loop.call_later(0.005, a.send, b"x")
        assert b.recv(10) == b"x"
        fd = b.fileno()
        assert fd in fd_map
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del b
            gc.collect()
        assert fd not in fd_map
        a.close()
        # A new socket that gets the same fd number works with asyncio's own readers.
        c, d = std_socket.socketpair()
        with c, d:
            c.setblocking(False)
            d.setblocking(False)
            d.sendall(b"reused")
            assert greenloop.await_(loop.sock_recv(c, 10)) == b"reused"

    run_green(body)


def test_green_thread_blocked_in_recv_keeps_few_objects_alive() -> None:
    # Each object a blocked thread keeps is walked by every full garbage collection: with
    # 16,384 connections those collections took a fifth of a loaded server's time. Today nine per
    # thread (the thread, its greenlet and that greenlet's bound switch, its context; the
    # socket's wait state, its waiter and selector entry); an asyncio task blocked in
    # loop.sock_recv() keeps about fifteen.
    n = 200

    def recv_one(sock: gsocket.socket) -> bytes:
        return sock.recv(1)

    def body() -> None:
        pairs = [gsocket.socketpair() for _ in range(n)]
        try:
            gc.collect()
            before = len(gc.get_objects())
            threads = [greenloop.spawn(recv_one, a) for a, _ in pairs]
            greenloop.sleep(0)
            greenloop.sleep(0)
            gc.collect()
            per_thread = (len(gc.get_objects()) - before) / n
            for _, b in pairs:
                b.send(b"x")
            assert [gt.join(TIMEOUT) for gt in threads] == [b"x"] * n
            del threads
        finally:
            for a, b in pairs:
                a.close()
                b.close()
        assert per_thread <= 9.5, per_thread

    run_green(body)


def test_green_thread_and_task_take_attributes_like_asyncio_tasks() -> None:
    # asyncio's C Task and Future take arbitrary attributes (libraries tag tasks this way);
    # greenloop's slotted GreenThread and GreenTask must too.
    async def main(green: bool) -> None:
        objs: list[Any] = [asyncio.current_task()]
        if green:
            objs.append(greenloop.spawn(lambda: None))
        for obj in objs:
            obj.tag = "mine"
            assert obj.tag == "mine"
        if green:
            await objs[1]

    asyncio.run(main(False))  # the reference: asyncio's own Task
    greenloop.run(main(True))


def test_blocking_recv_in_asyncio_task_does_not_stall_other_tasks() -> None:
    async def main() -> None:
        a, b = gsocket.socketpair()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        async def blocking_reader() -> bytes:
            data = b.recv(10)  # blocking-style, inside a coroutine
            assert asyncio.current_task() is task
            return data

        with a, b:
            tick_task = asyncio.create_task(ticker())
            task = asyncio.create_task(blocking_reader())
            asyncio.get_running_loop().call_later(0.1, a.sendall, b"late")
            assert await asyncio.wait_for(task, TIMEOUT) == b"late"
            tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick_task
        assert ticks >= 5

    greenloop.run(main())


def test_timeout_in_asyncio_task_and_cancellation() -> None:
    async def main() -> None:
        a, b = gsocket.socketpair()
        with a, b:
            b.settimeout(0.02)

            async def timed() -> None:
                b.recv(1)

            with pytest.raises(TimeoutError, match="timed out"):
                await timed()
            b.settimeout(None)

            async def forever() -> None:
                b.recv(1)

            with pytest.raises(TimeoutError):
                await asyncio.wait_for(forever(), 0.02)
            # Cancellation left no waiter behind.
            a.sendall(b"z")
            assert b.recv(1) == b"z"

    greenloop.run(main())


def test_os_thread_use_does_not_touch_the_loop() -> None:
    # A green socket used on a real OS thread while the loop runs: that thread blocks (and
    # times out) like the stdlib; green threads keep running; the loop's selector is untouched.
    def body() -> None:
        loop = asyncio.get_running_loop()
        fd_map = loop._selector.get_map()  # type: ignore[attr-defined]
        a, b = gsocket.socketpair()
        with a, b:

            def os_thread() -> list[Any]:
                out: list[Any] = []
                b.settimeout(0.05)
                try:
                    b.recv(1)
                except TimeoutError as exc:
                    out.append(str(exc))
                b.settimeout(None)
                out.append(b.recv(10))  # blocks this OS thread until a green thread sends
                out.append(b.fileno() in fd_map)
                return out

            worker = _Thread(os_thread)
            ticks = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < 0.15:
                ticks += 1
                greenloop.sleep(0.005)
            a.sendall(b"from green")
            result = greenloop.await_(loop.run_in_executor(None, worker.join))
            assert result == ["timed out", b"from green", False]
            assert ticks >= 10

    run_green(body)


def test_main_greenlet_drives_the_loop() -> None:
    # No loop running: a blocking call on the main greenlet runs the main-thread loop, so
    # green threads spawned from here make progress meanwhile.
    loop = _green.main_thread_loop()
    try:
        a, b = gsocket.socketpair()
        with a, b:
            greenloop.spawn(lambda: (greenloop.sleep(0.02), a.sendall(b"driven")))
            assert b.recv(10) == b"driven"
            b.settimeout(0.02)
            with pytest.raises(TimeoutError, match="timed out"):
                b.recv(10)
        # DNS from the main greenlet: the resolver thread's result arrives through the loop.
        try:
            expected = std_socket.getaddrinfo("localhost", 80, std_socket.AF_INET)
        except OSError:
            expected = None
        if expected is not None:
            assert gsocket.getaddrinfo("localhost", 80, std_socket.AF_INET) == expected
    finally:
        loop.close()


def test_blocking_call_from_plain_callback_is_an_error() -> None:
    async def main() -> None:
        a, b = gsocket.socketpair()
        with a, b:
            loop = asyncio.get_running_loop()
            outcome: asyncio.Future[BaseException] = loop.create_future()

            def callback() -> None:
                try:
                    b.recv(1)
                except BaseException as exc:
                    outcome.set_result(exc)

            loop.call_soon(callback)
            exc = await outcome
            assert isinstance(exc, greenloop.BlockingCallError)
            assert "socket.recv()" in str(exc)
            # The failed wait left nothing behind; data already there needs no wait at all.
            a.sendall(b"k")
            await asyncio.sleep(0.01)
            assert b.recv(1) == b"k"

    greenloop.run(main())


def test_asyncio_transport_on_a_green_socket() -> None:
    async def main() -> None:
        a, b = gsocket.socketpair()
        with b:
            reader, writer = await asyncio.open_connection(sock=a)
            assert a.gettimeout() == 0.0  # asyncio made it non-blocking through our API
            b.sendall(b"to transport\n")
            assert await reader.readline() == b"to transport\n"
            writer.write(b"from transport")
            await writer.drain()
            assert b.recv(100) == b"from transport"
            writer.close()
            await writer.wait_closed()

    greenloop.run(main())


def test_detach_restores_the_blocking_mode() -> None:
    a, b = gsocket.socketpair()
    with b:
        fd = a.detach()
        try:
            assert os.get_blocking(fd)  # timeout None: handed over as a blocking fd
        finally:
            os.close(fd)
    a, b = gsocket.socketpair()
    with a, b:
        assert not os.get_blocking(a.fileno())  # while green, the fd itself never blocks
        assert a.gettimeout() is None


def test_fromfd_and_adopted_sockets_are_green() -> None:
    a, b = std_socket.socketpair()
    with a, b:
        c = gsocket.fromfd(a.fileno(), a.family, a.type)
        with c:
            assert type(c) is gsocket.socket
            assert c.fileno() != a.fileno()
            assert c.gettimeout() is None
    pair = gsocket.socketpair()
    for s in pair:
        assert type(s) is gsocket.socket
        s.close()


@pytest.fixture
def slow_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Replace the original DNS functions by slow fakes that record the thread they run on."""
    calls: list[str] = []
    main_ident = threading.get_ident()

    def fake(name: str, result: Any) -> Callable[..., Any]:
        def resolver(*args: Any) -> Any:
            calls.append(f"{name}:{'loop thread' if threading.get_ident() == main_ident else 'worker'}")
            time.sleep(0.1)
            return result

        return resolver

    addrinfo = [(std_socket.AF_INET, std_socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))]
    monkeypatch.setattr(gsocket, "_orig_getaddrinfo", fake("getaddrinfo", addrinfo))
    monkeypatch.setattr(gsocket, "_orig_gethostbyname", fake("gethostbyname", "127.0.0.1"))
    monkeypatch.setattr(gsocket, "_orig_gethostbyname_ex", fake("gethostbyname_ex", ("h", [], ["127.0.0.1"])))
    monkeypatch.setattr(gsocket, "_orig_gethostbyaddr", fake("gethostbyaddr", ("h", [], ["127.0.0.1"])))
    monkeypatch.setattr(gsocket, "_orig_getnameinfo", fake("getnameinfo", ("h", "80")))
    monkeypatch.setattr(gsocket, "_orig_getfqdn", fake("getfqdn", "h.example"))
    yield calls


def test_dns_runs_in_os_threads(slow_resolver: list[str]) -> None:
    def body() -> None:
        ticks = 0
        done = False

        def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                greenloop.sleep(0.005)

        t = greenloop.spawn(ticker)
        lookups = [
            lambda: gsocket.getaddrinfo("example.invalid", 80),
            lambda: gsocket.gethostbyname("example.invalid"),
            lambda: gsocket.gethostbyname_ex("example.invalid"),
            lambda: gsocket.gethostbyaddr("127.0.0.1"),
            lambda: gsocket.getnameinfo(("127.0.0.1", 80), 0),
            lambda: gsocket.getfqdn("example.invalid"),
        ]
        t0 = time.monotonic()
        gts = [greenloop.spawn(f) for f in lookups]
        for gt in gts:
            gt.join(TIMEOUT)
        elapsed = time.monotonic() - t0
        done = True
        t.join()
        # Concurrent (the executor has several workers) and the loop kept ticking.
        assert elapsed < 0.5
        assert ticks >= 10

    run_green(body)
    assert sorted(slow_resolver) == sorted(
        f"{n}:worker"
        for n in (
            "getaddrinfo",
            "gethostbyname",
            "gethostbyname_ex",
            "gethostbyaddr",
            "getnameinfo",
            "getfqdn",
        )
    )


def test_numeric_addresses_resolve_in_place(slow_resolver: list[str]) -> None:
    def body() -> None:
        gsocket.getaddrinfo("127.0.0.1", 80)
        gsocket.getaddrinfo(None, 80)
        gsocket.gethostbyname("10.1.2.3")
        gsocket.getnameinfo(("127.0.0.1", 80), std_socket.NI_NUMERICHOST | std_socket.NI_NUMERICSERV)

    run_green(body)
    assert slow_resolver == [
        "getaddrinfo:loop thread",
        "getaddrinfo:loop thread",
        "gethostbyname:loop thread",
        "getnameinfo:loop thread",
    ]


def test_connect_resolves_host_names_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    original = gsocket._orig_getaddrinfo
    loop_thread = threading.get_ident()

    def spy(*args: Any) -> Any:
        seen.append(threading.get_ident() != loop_thread)
        return original(*args)

    monkeypatch.setattr(gsocket, "_orig_getaddrinfo", spy)

    def body() -> None:
        with _tcp_server(gsocket) as srv:
            server = greenloop.spawn(lambda: _echo_once(srv.accept()[0]))
            with gsocket.socket() as c:
                c.connect(("localhost", srv.getsockname()[1]))
                c.sendall(b"ok")
                assert c.recv(10) == b"ok"
            server.join()
            with gsocket.socket(std_socket.AF_INET, std_socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", 0))
                u.sendto(b"self", ("localhost", u.getsockname()[1]))
                assert u.recv(10) == b"self"

    run_green(body)
    assert seen == [True, True]


def test_real_dns_matches_stdlib() -> None:
    try:
        expected = std_socket.getaddrinfo("localhost", 80, std_socket.AF_INET, std_socket.SOCK_STREAM)
    except OSError:
        pytest.skip("localhost does not resolve here")
    got = run_green(lambda: gsocket.getaddrinfo("localhost", 80, std_socket.AF_INET, std_socket.SOCK_STREAM))
    assert got == expected
    # On a real OS thread (no loop): the original, called directly.
    assert _Thread(gsocket.gethostbyname, "localhost").join() == std_socket.gethostbyname("localhost")


def test_dns_errors_propagate() -> None:
    def body() -> None:
        with pytest.raises(std_socket.gaierror):
            gsocket.getaddrinfo("name.invalid", 80, flags=std_socket.AI_NUMERICHOST)
        with pytest.raises(std_socket.gaierror):
            gsocket.getaddrinfo("127.0.0.1", "no-such-service-xyz")

    run_green(body)


def test_read_after_a_short_read_waits_first_without_losing_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a short read, the next recv waits for readiness before reading (no EAGAIN try)."""
    calls: list[int] = []
    real_recv = gsocket._recv

    def counting_recv(sock: Any, *args: Any) -> bytes:
        calls.append(1)
        return real_recv(sock, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(gsocket, "_recv", counting_recv)

    def body() -> None:
        a, b = gsocket.socketpair()
        with a, b:
            r = greenloop.spawn(b.recv, 100)
            greenloop.sleep(0.005)
            a.sendall(b"one")
            assert r.join(TIMEOUT) == b"one"  # a short read: the socket is now drained
            calls.clear()
            r = greenloop.spawn(b.recv, 100)
            greenloop.sleep(0.005)
            assert not calls  # it waits without trying a read that would fail
            a.sendall(b"two")
            assert r.join(TIMEOUT) == b"two"
            assert len(calls) == 1  # one read, after the wake-up
            # Bytes queued before the call are still found: level-triggered readiness.
            a.sendall(b"three")
            assert b.recv(100) == b"three"
            # A full read (more may be waiting) reads first again; MSG_PEEK keeps the bytes.
            a.sendall(b"four")
            assert b.recv(2, std_socket.MSG_PEEK) == b"fo"
            calls.clear()
            assert b.recv(100) == b"four"
            assert len(calls) == 1

    run_green(body)


# -- the stdlib's edge cases (test_socket under patch_all() checks the same) --------------------


def _error(fn: Callable[[], Any]) -> tuple[type[BaseException], str] | None:
    try:
        fn()
    except Exception as exc:
        return type(exc), str(exc)
    return None


def test_argument_errors_match_stdlib() -> None:
    """Wrong arguments raise the stdlib's exceptions, messages included."""

    def outcomes(mod: Any) -> list[Any]:
        with mod.socket(std_socket.AF_INET, std_socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            addr = s.getsockname()
            calls: list[Callable[[], Any]] = [
                lambda: s.sendto(b"x"),
                lambda: s.sendto(b"x", 0, addr, 4),
                s.sendto,
                lambda: s.sendto("\u2620", addr),
                lambda: s.sendto(5j, 0, addr),
                lambda: s.sendto(b"x", None),
                lambda: s.sendto(b"x", "bar", addr),
                lambda: s.setblocking(1.5),  # TypeError on 3.11 (a C long), fine from 3.12
                lambda: s.setblocking(2**64),
                lambda: s.setblocking(None),
                lambda: mod.getnameinfo("not a tuple", 0),
                lambda: mod.getnameinfo(("127.0.0.1", 80), "0"),
            ]
            return [_error(call) for call in calls]

    expected = outcomes(std_socket)
    assert outcomes(gsocket) == expected
    assert run_green(lambda: outcomes(gsocket)) == expected


def test_getnameinfo_type_error_keeps_no_reference_to_its_argument() -> None:
    arg = "a string nobody else holds" + str(os.getpid())

    def refcount_after_error() -> int:
        before = sys.getrefcount(arg)
        try:
            gsocket.getnameinfo(arg, 0)  # type: ignore[arg-type]
        except TypeError:
            return sys.getrefcount(arg) - before
        raise AssertionError("no TypeError")

    assert run_green(refcount_after_error) == 0


def test_setblocking_and_settimeout_on_an_fd_closed_behind_the_socket(impl: Impl) -> None:
    mod = impl.mod

    def body() -> None:
        owner = mod.socket()
        sock = mod.socket(std_socket.AF_INET, std_socket.SOCK_STREAM, 0, owner.fileno())
        owner.close()
        try:
            with pytest.raises(OSError) as info:
                sock.setblocking(False)
            assert info.value.errno == errno.EBADF
            with pytest.raises(OSError):
                sock.setblocking(True)
            with pytest.raises(OSError):
                sock.settimeout(None)
            with pytest.raises(OSError):
                sock.settimeout(1.0)
        finally:
            sock.detach()  # never fails, even on the dead fd

    impl.run(body)


def test_msg_dontwait_raises_instead_of_waiting(impl: Impl) -> None:
    """A blocking socket given MSG_DONTWAIT raises BlockingIOError instead of waiting."""
    mod = impl.mod
    dontwait = std_socket.MSG_DONTWAIT

    def body() -> None:
        a, b = mod.socketpair()
        with a, b:
            assert b.gettimeout() is None
            for call in (
                lambda: b.recv(10, dontwait),
                lambda: b.recv_into(bytearray(10), 10, dontwait),
                lambda: b.recvfrom(10, dontwait),
                lambda: b.recvfrom_into(bytearray(10), 10, dontwait),
                lambda: b.recvmsg(10, 0, dontwait),
                lambda: b.recvmsg_into([bytearray(10)], 0, dontwait),
            ):
                with pytest.raises(BlockingIOError):
                    call()
            # After a short read that waited (greenloop then waits first on the next recv).
            writer = impl.spawn(lambda: (impl.sleep(0.05), a.sendall(b"x")))
            assert b.recv(10) == b"x"
            writer.join()
            with pytest.raises(BlockingIOError):
                b.recv(10, dontwait)
            with pytest.raises(BlockingIOError):
                b.recv_into(bytearray(10), 0, dontwait)
            a.sendall(b"yz")
            assert b.recv(10, dontwait) == b"yz"
            # Sending until the buffers are full: the call that would block raises.
            for send in (
                lambda: a.send(b"a" * 65536, dontwait),
                lambda: a.sendall(b"a" * 65536, dontwait),
                lambda: a.sendmsg([b"a" * 65536], [], dontwait),
            ):
                with pytest.raises(BlockingIOError):
                    for _ in range(10000):
                        send()
        with mod.socket(std_socket.AF_INET, std_socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            with pytest.raises(BlockingIOError):
                u.recv(10, dontwait)

    impl.run(body)


def test_dns_threads_are_greenloops_own() -> None:
    """Lookups run on greenloop's resolver threads, which thread counts do not include."""
    from greenloop.green import _realthreads
    from greenloop.green import thread as gthread

    def body() -> list[str]:
        # A host name, not a number: this one goes to a resolver thread.
        return [info[4][0] for info in gsocket.getaddrinfo("localhost", 80, std_socket.AF_INET)]

    before = gthread._count()
    dangling = set(threading._dangling)  # type: ignore[attr-defined]
    assert "127.0.0.1" in run_green(body)
    assert _realthreads.internal_threads_alive() >= 1
    assert gthread._count() == before
    assert set(threading._dangling) <= dangling  # type: ignore[attr-defined]
    names = {t.name for t in threading.enumerate()}
    assert any(name.startswith("greenloop-resolver") for name in names)


def test_create_connection_uses_the_socket_class_of_the_module() -> None:
    """As the stdlib's: ``socket.socket`` is looked up at each call (test_socket mocks it)."""
    srv = _tcp_server(gsocket)
    port = srv.getsockname()[1]

    def connect() -> None:
        # Unpatched: the stdlib module has its own class, and green sockets are made anyway.
        with gsocket.create_connection(("127.0.0.1", port)) as conn:
            assert type(conn) is gsocket.socket

    run_green(connect)
    srv.close()  # nobody listens on the port now

    class TimingOut(gsocket.socket):
        def connect(self, address: Any, /) -> None:
            raise TimeoutError("timed out")

    original = std_socket.socket
    std_socket.socket = TimingOut  # type: ignore[misc]
    try:
        with pytest.raises(TimeoutError):
            gsocket.create_connection(("127.0.0.1", port))
    finally:
        std_socket.socket = original  # type: ignore[misc]
