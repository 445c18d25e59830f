"""Knot: a static web server in plain thread-per-connection style.

After §5 of "Why Events Are a Bad Idea" (von Behren, Condit, Brewer, HotOS 2003). One thread
accepts; every connection gets a thread of its own that reads a request, answers it and loops,
with ordinary blocking calls. Whether those threads are greenloop's green threads, gevent's or
the kernel's is decided in runtime.py and nowhere else.

A connection's life, top to bottom (``Knot.converse``):

    wait for bytes (idle timeout; once a request has started, the request timeout)
    feed them to the parser; for each complete request, in order:
        route it (405, 400, or a cache key) -> cache lookup -> on a miss, read the file on an
        OS thread -> queue the answer
    write the queued answers in one go (pipelined requests share a write)

Every resource a client can make us hold is bounded: bytes per request (Limits), time per
request and between requests (timeouts), time to take our answer (send timeout), the number of
connections (503 beyond it), and the cache (bytes). Timeouts are deadlines that one reaper
thread enforces (``Knot.reap``).
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from .files import Entry, PageCache, load, read_exactly, resolved_root
from .http import CLOSING, Limits, Request, RequestReader, error_response, file_response, route
from .runtime import Runtime

RECV_SIZE = 65536
# Queued answers are written once they exceed this, or when the parser has no more complete
# requests; below it they are joined into one buffer (one send), above it sent one by one.
FLUSH_AT = 65536
STREAM_CHUNK = 256 * 1024
# After an error answer, how long to keep reading (and dropping) what the client still sends
# before closing: closing with unread input sends a reset, and a reset can make the client's
# kernel discard our answer before the client has read it (Apache's "lingering close").
LINGER = 1.0
CLOSE = 1  # answer(): the connection ends normally after this answer
# accept() failures that say "not now" rather than "broken": out of descriptors or memory.
_ACCEPT_RESOURCE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ACCEPT_TRANSIENT = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR}


@dataclass
class Config:
    root: str
    max_conns: int = 10000
    cache_bytes: int = 64 << 20
    max_entry: int = 4 << 20  # bigger files are streamed, not cached
    idle_timeout: float = 15.0  # between requests on a kept-alive connection
    request_timeout: float = 10.0  # from a request's first byte to its last
    send_timeout: float = 15.0  # for the client to take one batch of answers
    limits: Limits | None = None


class Client:
    """One connection: its socket, the answers queued on it, and its deadline.

    Timeouts are deadlines rather than socket timeouts: the connection's thread notes by when
    the client must have done its part (sent the request, taken the answers) and one reaper
    thread ends the connections whose deadline has passed (``Knot.reap``). That keeps a timer
    out of every wait, and it is the mechanism the event-style reference server uses too (one
    sweep a second), so the two are compared like for like.
    """

    def __init__(self, sock: Any, send_timeout: float) -> None:
        self.sock = sock
        self.send_timeout = send_timeout
        self.deadline = float("inf")
        self.sending = False  # waiting for the client to take our bytes, not to send its own
        self.expired = False
        self.parts: list[bytes] = []
        self.size = 0

    def expire(self) -> None:
        """Called by the reaper: wake the connection's thread from its wait, for good."""
        self.expired = True
        try:  # a blocked recv returns b"" (we may still send a 408); a blocked send fails
            self.sock.shutdown(socket.SHUT_RDWR if self.sending else socket.SHUT_RD)
        except OSError:
            pass

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        parts = self.parts
        if not parts:
            return
        # Emptied before sending (a failed send loses the batch with the connection), and
        # emptied in place: a new list per flush would be an object that outlives the next
        # wait, which with thousands of clients the garbage collector promotes to its oldest
        # generation by the thousand, bringing on full collections sooner.
        big = self.size > 4 * FLUSH_AT
        batch = parts[:] if big else parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self.size = 0
        self.deadline, self.sending = time.monotonic() + self.send_timeout, True
        if big:
            for part in batch:  # big bodies: sent one by one, no copy just to save a send
                self.sock.sendall(part)
        else:
            self.sock.sendall(batch)
        self.sending = False


class Knot:
    def __init__(self, cfg: Config, runtime: Runtime) -> None:
        self.cfg = cfg
        self.rt = runtime
        self.root = resolved_root(cfg.root)
        self.limits = cfg.limits or Limits()
        self.cache = PageCache(cfg.cache_bytes)
        # Guards the cache and the connection count. On green threads it is never contended
        # (nothing in its sections blocks); on OS threads it is needed.
        self.lock = threading.Lock()
        self.active = 0
        self.clients: set[Client] = set()  # for the reaper
        self._last_warning = 0.0

    # -- the acceptor thread ---------------------------------------------------------------

    def accept_forever(self, listener: socket.socket) -> None:
        listener = self.rt.wrap(listener)
        self.rt.spawn(self.reap)
        while True:
            try:
                conn, _ = listener.accept()
            except OSError as exc:
                if exc.errno in _ACCEPT_RESOURCE:
                    # The connection stays in the backlog; try again when some other
                    # connection has closed. Never spin, never die.
                    self.warn(f"accept: {os.strerror(exc.errno)}; retrying")
                    self.rt.sleep(0.05)
                    continue
                if exc.errno in _ACCEPT_TRANSIENT:
                    continue  # that client gave up before we got to it
                raise
            with self.lock:
                full = self.active >= self.cfg.max_conns
                if not full:
                    self.active += 1
            try:
                if full:
                    raise RuntimeError("connection limit reached")
                self.rt.spawn(self.connection, conn)
            except RuntimeError as exc:  # full, or no thread to be had ("can't start new thread")
                if not full:
                    self.warn(f"accept: {exc}")
                    with self.lock:
                        self.active -= 1
                self.refuse(conn)

    def refuse(self, conn: socket.socket) -> None:
        """Turn a connection away with a 503, without ever waiting for the client."""
        try:
            conn.setblocking(False)
            conn.send(error_response(503, keep_alive=False))
        except OSError:
            pass
        conn.close()

    # -- the reaper thread --------------------------------------------------------------------

    def reap(self) -> None:
        """End the connections whose deadline has passed, a few times per shortest timeout."""
        cfg = self.cfg
        interval = min(1.0, cfg.idle_timeout / 4, cfg.request_timeout / 4, cfg.send_timeout / 4)
        while True:
            self.rt.sleep(interval)
            now = time.monotonic()
            with self.lock:
                late = [client for client in self.clients if client.deadline < now]
            for client in late:
                client.expire()

    # -- one thread per connection ---------------------------------------------------------

    def connection(self, conn: Any) -> None:
        client = None
        try:
            conn = self.rt.wrap(conn)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = Client(conn, self.cfg.send_timeout)
            with self.lock:
                self.clients.add(client)
            if self.converse(client):
                self.linger(conn)
        except OSError:
            pass  # reset, broken pipe, a client that stopped reading: it is gone
        except Exception as exc:  # a bug: lose this connection, not the server
            self.warn(f"connection failed: {exc!r}")
        finally:
            conn.close()
            with self.lock:
                self.clients.discard(client)  # type: ignore[arg-type]
                self.active -= 1

    def converse(self, out: Client) -> bool:
        """Answer requests in order until the client, a timeout or an error ends it.

        Returns True if it ended on an error answer (the client may still be sending).
        """
        reader = RequestReader(self.limits)
        try:
            return self._converse(out, reader)
        finally:
            reader.close()

    def _converse(self, out: Client, reader: RequestReader) -> bool:
        cfg = self.cfg
        while True:
            # Until the next request starts, the idle timeout runs; from its first byte, the
            # request timeout, however slowly the rest trickles in (slowloris).
            if reader.in_request:
                out.deadline = reader.started + cfg.request_timeout
            else:
                out.deadline = time.monotonic() + cfg.idle_timeout
            try:
                data = out.sock.recv(RECV_SIZE)
            except OSError:  # gevent wakes a reader whose socket is shut down with EBADF
                if not out.expired:
                    raise
            if out.expired:  # the reaper woke us: too slow
                if reader.in_request:
                    out.add(error_response(408, keep_alive=False, head_only=reader.head_only()))
                    out.flush()
                return False
            if not data:
                return False  # closed or half-closed: every complete request was answered already
            error = reader.feed(data)
            while reader.done:
                status = self.answer(reader.done.popleft(), out)
                if status:
                    out.flush()
                    return status != CLOSE
            if error:
                out.add(error_response(error, keep_alive=False, head_only=reader.head_only()))
                out.flush()
                return True
            out.flush()

    def answer(self, req: Request, out: Client) -> int:
        """Queue the answer to ``req``. Returns 0 to go on, else the connection must close
        after it: CLOSE if that is normal (asked for, or HTTP/1.0), the error status if not."""
        keep_alive = req.keep_alive and not req.close
        key = route(req)
        try:
            entry = key if isinstance(key, int) else self.lookup(key)
        except Exception as exc:  # an unexpected failure reading the file (or a bug): say so
            self.warn(f"{req.target!r}: {exc!r}")
            entry = 500
        if isinstance(entry, int):
            closing = entry in CLOSING
            out.add(error_response(entry, keep_alive and not closing, head_only=req.method == b"HEAD"))
            return entry if closing else 0 if keep_alive else CLOSE
        head, with_body = file_response(req, entry, keep_alive)
        out.add(head)
        if with_body:
            if entry.body is not None:
                out.add(entry.body)
            elif not self.stream(entry, out):
                return 500  # the file shrank: the length we promised can no longer be met
        return 0 if keep_alive else CLOSE

    def linger(self, conn: Any) -> None:
        """Close gently after an error answer (see LINGER): end our side, drain theirs."""
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            if not conn.recv(RECV_SIZE):
                return

    def lookup(self, key: bytes) -> Entry | int:
        """The page cache, and on a miss the file system (on a real OS thread)."""
        with self.lock:
            entry = self.cache.get(key)
        if entry is None:
            entry = self.rt.offload(load, self.root, key, self.cfg.max_entry)
            if isinstance(entry, Entry):
                with self.lock:
                    self.cache.put(key, entry)
        return entry

    def stream(self, entry: Entry, out: Client) -> bool:
        """Send a file too big for the cache, chunk by chunk; False if it shrank meanwhile."""
        fd = self.rt.offload(os.open, entry.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for offset in range(0, entry.size, STREAM_CHUNK):
                size = min(STREAM_CHUNK, entry.size - offset)
                chunk = self.rt.offload(read_exactly, fd, size, offset)
                if chunk is None:
                    return False
                out.add(chunk)
        finally:
            os.close(fd)
        return True

    def warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 1.0:  # at most one line a second, whatever happens
            self._last_warning = now
            print(f"knot[{os.getpid()}]: {message}", file=sys.stderr, flush=True)
