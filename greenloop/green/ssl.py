"""Cooperative ``ssl``: TLS sockets whose handshake, reads, writes and unwrap wait on the loop.

How: the green socket (``greenloop.green.socket``) keeps its C-level timeout at 0, and the
``_ssl`` C code honours the socket's C timeout, so every TLS operation either completes or
raises ``SSLWantReadError`` / ``SSLWantWriteError`` at once. ``SSLSocket`` here retries the
operation after waiting for the fd in the direction OpenSSL asked for, within the timeout the
user set (on a foreign OS thread that wait blocks the thread, as the stdlib would). It
subclasses the stdlib's ``ssl.SSLSocket`` *and* the green socket, so ``connect`` and
``accept`` are the green socket's and ``isinstance(s, ssl.SSLSocket)`` holds.

Late patching: the stdlib builds TLS sockets through the class attribute
``SSLContext.sslsocket_class``; patching sets it on ``ssl.SSLContext`` itself instead of
replacing the ``SSLContext`` class. So contexts created before ``patch_all()``, and libraries
that imported ``ssl`` (or ``from ssl import SSLContext``) before it, such as ``urllib3`` and
``requests``, get cooperative sockets too, and no second ``SSLContext`` class ever exists.
(Replacing the class is what leads to gevent's RecursionError when ``ssl`` was imported first.)

``SSLObject`` (TLS over memory BIOs, as asyncio uses it) does no I/O and needs nothing.
A socket wrapped before patching stays a blocking stdlib ``SSLSocket``.
"""

from __future__ import annotations

import ssl as _stdssl
from _socket import socket as _csocket
from collections.abc import Callable
from time import monotonic as _monotonic
from typing import Any, TypeVar

from greenloop._green import _resolve_loop

from . import socket as _green_socket

_T = TypeVar("_T")

# Not the module's ``SSLSocket`` name: the stdlib's methods say ``super(SSLSocket, self)``,
# which must keep naming the stdlib class. Patching sets ``SSLContext.sslsocket_class``.
__implements__: list[str] = []
__all__ = ["SSLSocket"]

_orig_sslsocket_class = _stdssl.SSLContext.sslsocket_class
_SSLWantReadError = _stdssl.SSLWantReadError
_SSLWantWriteError = _stdssl.SSLWantWriteError


class SSLSocket(_stdssl.SSLSocket, _green_socket.socket):  # type: ignore[misc]
    """``ssl.SSLSocket`` over a green socket: TLS I/O waits on the loop, not the OS thread."""

    # The stdlib's private state this class drives (typeshed omits it).
    _sslobj: Any

    def _gl_tls(self, op: Callable[..., _T], args: tuple[Any, ...], what: str, blocking: bool = False) -> _T:
        """Run a TLS operation, waiting for the fd whenever OpenSSL needs more I/O."""
        timeout = None if blocking else self._gl_timeout
        if timeout == 0.0:
            return op(*args)  # a non-blocking socket: the Want* errors are the caller's
        deadline = None if timeout is None else _monotonic() + timeout
        loop = None
        resolved = False
        while True:
            try:
                return op(*args)
            except _SSLWantReadError:
                write = False
            except _SSLWantWriteError:
                write = True
            if not resolved:
                loop = _resolve_loop(what)
                resolved = True
            self._gl_wait(loop, write, deadline, what)

    def settimeout(self, value: float | None, /) -> None:
        _green_socket.socket.settimeout(self, value)
        # ``SSLContext.wrap_socket`` builds this socket on the fd of the socket it wraps and
        # then detaches that one, which hands the fd back in *its* blocking mode; the C level
        # must be non-blocking again before any TLS call.
        if self.fileno() >= 0:
            _csocket.settimeout(self, 0.0)

    def do_handshake(self, block: bool = False) -> None:
        self._check_connected()  # type: ignore[attr-defined]
        sslobj = self._sslobj
        self._gl_tls(sslobj.do_handshake, (), "SSLSocket.do_handshake()", blocking=block)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        return self._gl_tls(super().read, (len, buffer), "SSLSocket.read()")

    def write(self, data: Any) -> int:
        return self._gl_tls(super().write, (data,), "SSLSocket.write()")

    def send(self, data: Any, flags: int = 0) -> int:
        if self._sslobj is None:
            return _green_socket.socket.send(self, data, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {self.__class__}")
        sent: int = self._gl_tls(self._sslobj.write, (data,), "SSLSocket.send()")
        return sent

    def unwrap(self) -> Any:
        if not self._sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        s = self._gl_tls(self._sslobj.shutdown, (), "SSLSocket.unwrap()")
        self._sslobj = None
        return s

    def verify_client_post_handshake(self) -> None:
        if not self._sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        self._gl_tls(
            self._sslobj.verify_client_post_handshake, (), "SSLSocket.verify_client_post_handshake()"
        )


def _after_patch() -> None:
    # Every context, whenever created, now wraps sockets with the green class.
    _stdssl.SSLContext.sslsocket_class = SSLSocket
