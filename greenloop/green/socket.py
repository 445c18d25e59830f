"""Cooperative ``socket``: the stdlib socket API, with blocking calls as waits on the loop.

``greenloop.green.socket`` mirrors the stdlib :mod:`socket` module: every name the stdlib
exports is here, and the names in ``__implements__`` are replaced by cooperative versions.
The ``socket`` class subclasses the stdlib's, so ``isinstance`` checks, ``makefile()``,
``dup()``, ``ssl`` and every C function that takes a socket keep working.

Theory of operation
-------------------
* The file descriptor is always non-blocking and the C-level timeout is always 0, so every
  C method either does its work or raises ``BlockingIOError`` at once. The timeout the user
  set lives in ``_gl_timeout``; ``gettimeout()``, ``getblocking()`` and ``timeout`` report it.
* Every blocking method first tries the syscall (the fast path: one C call, no future, no
  loop lookup). Only on ``BlockingIOError`` / ``InterruptedError`` does it wait for
  readiness and retry, as asyncio's ``sock_recv`` does; a user timeout of 0 re-raises instead.
* Where it waits depends on where it runs (``_green._resolve_loop``): on the loop's OS thread
  (green thread, task, or the main greenlet driving the loop) it parks on the loop; on any
  other OS thread it blocks that thread in ``poll()``, exactly like the stdlib socket.
* The timeout is per call and covers the whole call, retries included, as in CPython
  (``sendall`` included since 3.5); expiry raises ``TimeoutError("timed out")``, which is
  ``socket.timeout``.

Keeping the epoll registration
------------------------------
A request/response connection waits for reading over and over. Registering before and
unregistering after each wait (as ``greenloop.wait_readable`` does) costs two ``epoll_ctl``
calls per wait, and asyncio's ``_add_reader`` alone (a new Handle, a selector-key rebuild)
was 30 % of a green ping-pong's CPU. Instead a socket registers once per direction, with one
handle whose callback is the socket's ``_Waiter``, and leaves it armed when a wait ends. The
next wait checks that this handle is still the selector's live one for the fd (a dict lookup
and two identity tests) and only sets the waiter: no allocation, no syscall.

If the fd becomes ready while nobody waits, the callback finds no waiter and removes the
registration, so an idle socket never makes the loop spin, and any other waiter
(``wait_readable``, a transport) may take the fd over; the next wait registers afresh. A wake
that was already queued when the thread came back to wait again only costs a spurious retry
(the syscall raises ``BlockingIOError`` and the thread waits again).

The price: a registration outlives the wait, so it must be removed before the fd is closed
(``close()``, ``detach()``, and ``__del__`` for sockets garbage-collected unclosed).
Otherwise the selector keeps an entry for a closed fd; when the number is reused, a later
``add_reader`` with the same event mask only swaps handles and the new file is never added
to the epoll set. For the same reason, a wait that finds *someone else's* cancelled handle on
its fd re-registers from scratch.

Waiting first
-------------
In request/response traffic the read after an answer nearly always fails: the client has
not sent its next request yet. A failed read is a system call plus an exception whose
message CPython decodes through the locale (several thousand instructions), then the wait.
So a socket remembers whether its last read came back short (``drained``); if so and its
registration is still armed, the next ``recv``/``recv_into`` waits for readiness first and
reads once. The guess cannot lose data or deadlock: epoll is level-triggered, so if bytes did
arrive meanwhile the wait ends at the next poll. A full read (more may be queued) or a
registration dropped by an idle wake-up puts the socket back to reading first.

Only one waiter per socket and direction (as with ``greenloop.wait_readable``): a second
green thread reading a socket that another one is waiting to read gets a RuntimeError.
``close()`` wakes any waiter; it retries its syscall on the closed socket and gets the
stdlib's ``OSError(EBADF)``. ``shutdown()`` needs no help: the kernel reports the fd ready.

The DNS functions run the stdlib's originals on greenloop's resolver threads (real OS
threads, not the loop's default executor: see ``_realthreads.internal_executor``), so a slow
resolver never stalls the loop; numeric addresses, which need no resolver, and arguments of
the wrong type are handled in place. On a foreign OS thread every function here is the
blocking original.

Where the stdlib is the spec, the edge cases are taken care of off the fast path: argument
errors come from the C methods themselves, ``MSG_DONTWAIT`` makes a call raise instead of
wait (checked only once the syscall has said EAGAIN), ``setblocking()`` raises on an invalid
fd. One difference is by design: the fd itself is always non-blocking, so ``fcntl(F_GETFL)``
shows ``O_NONBLOCK`` on a socket the program made blocking (gevent's sockets do the same).

Private names relied on (guarded by the 3.11/3.12/3.13 test matrix): ``Loop._selector`` and
its ``_fd_to_key`` map (whose data is asyncio's ``(reader, writer)`` handle pair),
``Loop._add_reader/_add_writer/_remove_reader/_remove_writer``, ``Loop._thread_id``,
``asyncio.Handle._cancelled`` (read), the stdlib socket's
``_real_close``, ``_check_sendfile_params`` and ``_sendfile_use_send``, ``socket._accept``,
``socket._GLOBAL_DEFAULT_TIMEOUT``, and ``_socket.socket.__del__`` (the finalizer closing
the fd). ``greenloop.green.ssl`` builds on ``_gl_timeout`` and ``_gl_wait()``.
"""

from __future__ import annotations

import _socket
import errno as _errno
import os as _os
import select as _select
import selectors as _selectors
import socket as _stdsocket
import struct as _struct
import sys as _sys
import threading as _threading
from asyncio import wrap_future as _wrap_future
from collections.abc import Callable, Iterable
from operator import index as _index
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .. import _hub
from .._green import _resolve_loop, wait
from .._green import sleep as _sleep
from .._hub import Waiter
from .._loop import _running_loops
from .._poller import _EpollSelector

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

    from .._loop import Loop

_T = TypeVar("_T")

__implements__ = [
    "create_connection",
    "create_server",
    "fromfd",
    "getaddrinfo",
    "getfqdn",
    "gethostbyaddr",
    "gethostbyname",
    "gethostbyname_ex",
    "getnameinfo",
    "socket",
    "socketpair",
]

# Everything not replaced here is the stdlib's own object (constants, exceptions, helpers).
globals().update(
    {name: getattr(_stdsocket, name) for name in _stdsocket.__all__ if name not in __implements__}
)
__all__ = sorted(_stdsocket.__all__)  # noqa: PLE0605  (computed: whatever this Python's socket exports)


def __getattr__(name: str) -> Any:
    # The stdlib's private names (``_GLOBAL_DEFAULT_TIMEOUT``, ...) for code that imports this
    # module in place of ``socket``; also tells type checkers that every stdlib name exists.
    return getattr(_stdsocket, name)


# Originals, captured at import (before any patching could replace them).
_StdSocket = _stdsocket.socket
_csock = _socket.socket
_GLOBAL_DEFAULT_TIMEOUT: object = _stdsocket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
_orig_getaddrinfo = _stdsocket.getaddrinfo
_orig_gethostbyname = _stdsocket.gethostbyname
_orig_gethostbyname_ex = _stdsocket.gethostbyname_ex
_orig_gethostbyaddr = _stdsocket.gethostbyaddr
_orig_getnameinfo = _stdsocket.getnameinfo
_orig_getfqdn = _stdsocket.getfqdn
_orig_create_server = _stdsocket.create_server
_orig_socketpair = _stdsocket.socketpair
_poll = _select.poll
_POLLIN = _select.POLLIN
_POLLOUT = _select.POLLOUT
_get_ident = _threading.get_ident
_inet_pton = _socket.inet_pton
_getdefaulttimeout = _socket.getdefaulttimeout
_AF_INET = _socket.AF_INET
_AF_INET6 = _socket.AF_INET6
_SOCK_STREAM = _socket.SOCK_STREAM
# A per-call "do not wait" (Linux, BSDs): such a call raises BlockingIOError like a
# non-blocking socket's, whatever the socket's timeout.
_MSG_DONTWAIT: int = getattr(_socket, "MSG_DONTWAIT", 0)

# The C methods, called directly: with the C-level timeout at 0 they never block.
_recv = _csock.recv
_family = _csock.family.__get__
_type = _csock.type.__get__
_proto = _csock.proto.__get__
_recv_into = _csock.recv_into
_recvfrom = _csock.recvfrom
_recvfrom_into = _csock.recvfrom_into
_send = _csock.send
_sendto = _csock.sendto
_accept: Callable[[_csock], tuple[int, Any]] = _csock._accept  # type: ignore[attr-defined]
_connect = _csock.connect
_connect_ex = _csock.connect_ex
_fileno = _csock.fileno
_settimeout = _csock.settimeout
_gettimeout = _csock.gettimeout
_setblocking = _csock.setblocking
_csock_del: Callable[[_csock], None] = getattr(_csock, "__del__")  # noqa: B009  (untyped slot)

# 3.11's setblocking() reads its flag as a C long (TypeError for a float, OverflowError past
# LONG_MAX); from 3.12 on it takes any object's truth value.
_SETBLOCKING_TAKES_LONG = _sys.version_info < (3, 12)
_LONG_MAX = 2 ** (8 * _struct.calcsize("l") - 1) - 1


def _as_c_long(value: Any) -> int:
    number = _index(value)  # the same TypeError message as C's PyLong_AsLong
    if not -_LONG_MAX - 1 <= number <= _LONG_MAX:
        raise OverflowError("Python int too large to convert to C long")
    return number


_READ = _selectors.EVENT_READ
_WRITE = _selectors.EVENT_WRITE
# How long close() on a foreign OS thread waits for the loop to drop the fd (see _release).
_FOREIGN_CLOSE_WAIT = 1.0


def _ebadf() -> OSError:
    return OSError(_errno.EBADF, _os.strerror(_errno.EBADF))


class _Waiter:
    """One socket's registration for one direction, and the green context waiting on it.

    It is its own entry in the selector and in the loop's ready queue: it speaks the part of
    asyncio's Handle protocol that the selector loop and greenloop's run loop use
    (``_cancelled``, ``cancel()``, ``cancelled()``, ``_run()``), so a readiness event runs
    ``_run()`` directly, with no Handle, no Context.run and no callback in between. It holds
    the fd number, not the socket, so a registration never keeps a socket alive.
    """

    __slots__ = ("_cancelled", "fd", "fut", "loop", "spare", "write")

    _callback = None  # read by asyncio's slow-callback report in debug mode

    def __init__(self, loop: Loop, fd: int, write: bool) -> None:
        self.loop = loop
        self.fd = fd
        self.write = write
        self._cancelled = True  # True while not (or no longer) in the selector
        self.fut: Waiter | None = None  # set while a green context waits
        self.spare = Waiter(loop)  # the one-shot waiter, reset and reused for every wait

    def __repr__(self) -> str:
        what = "writable" if self.write else "readable"
        return f"<socket wait until fd {self.fd} is {what}{' (cancelled)' if self._cancelled else ''}>"

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled

    def _run(self) -> None:
        # The fd is ready: resume the parked green context right here, on the hub, not one
        # loop iteration later (as a future's callback would). This is Waiter.wake() for the
        # one case it has here, written out (every request of a thread-per-connection server
        # comes through it): only the run loop calls us, so we are on the hub, and fut is
        # our spare, reset with no result when the wait began.
        fut = self.fut
        if fut is None:
            self.disarm()  # ready while nobody waits: leave the epoll set until the next wait
        elif not fut._done:
            fut._done = True
            callback = fut._callback
            if callback is not None:
                fut._callback = None
                callback(fut)

    def registered(self) -> bool:
        """Are we the selector's live entry for this fd and direction?"""
        if self._cancelled:
            return False
        key = self.loop._selector._fd_to_key.get(self.fd)  # type: ignore[attr-defined]
        return key is not None and key.data[self.write] is self

    def register(self, what: str) -> None:
        """Put ourselves in the selector for our fd and direction (as ``_add_reader`` would)."""
        loop, fd, write = self.loop, self.fd, self.write
        loop._check_closed()
        selector: Any = loop._selector  # type: ignore[attr-defined]
        key = selector._fd_to_key.get(fd)
        current = None if key is None else key.data[write]
        if current is not None:
            if not current.cancelled():
                raise RuntimeError(
                    f"{what}: fd {fd} is already being waited on for "
                    f"{'writing' if write else 'reading'} by another green thread, task or "
                    "reader callback; only one waiter per fd and direction is supported"
                )
            # Someone else's finished registration, maybe for a closed file that had this
            # number: register afresh so that the epoll set surely holds *this* file.
            if write:
                loop._remove_writer(fd)  # type: ignore[attr-defined]
            else:
                loop._remove_reader(fd)  # type: ignore[attr-defined]
            key = selector._fd_to_key.get(fd)
        if key is None:
            data = (None, self) if write else (self, None)
            if type(selector) is _EpollSelector:
                selector.register_fd(fd, _WRITE if write else _READ, data)
            else:
                selector.register(fd, _WRITE if write else _READ, data)
        else:
            reader, writer = key.data
            data = (reader, self) if write else (self, writer)
            selector.modify(fd, key.events | (_WRITE if write else _READ), data)
        self._cancelled = False

    def disarm(self) -> None:
        """Remove our registration (if it is still ours); the fd must still be open."""
        if self.registered():
            selector: Any = self.loop._selector  # type: ignore[attr-defined]
            if type(selector) is _EpollSelector and selector._fd_to_key[self.fd].data[not self.write] is None:
                selector.unregister_fd(self.fd)  # the only interest in this fd: drop it whole
            elif self.write:
                self.loop._remove_writer(self.fd)  # type: ignore[attr-defined]
            else:
                self.loop._remove_reader(self.fd)  # type: ignore[attr-defined]
        self._cancelled = True


class _IoState:
    """A socket's waits on one loop: its reader and writer registrations.

    Created at a socket's first wait, so sockets that never wait (the fast path) pay nothing.
    """

    __slots__ = ("closing", "drained", "loop", "rwait", "wwait")

    def __init__(self, loop: Loop, fd: int) -> None:
        self.loop = loop
        # The last recv returned less than asked for: the socket is probably empty now.
        self.drained = False
        # Set when the socket is closed or detached: a waiter woken by that, retrying its
        # syscall before a foreign OS thread has actually closed the fd, must not wait again.
        self.closing = False
        self.rwait = _Waiter(loop, fd, False)
        # Made at the first wait for writing: most sockets never wait to write, and every
        # object a connection keeps alive is one more for each full garbage collection to walk.
        self.wwait: _Waiter | None = None


def _new_wwait(state: _IoState, loop: Loop, fd: int) -> _Waiter:
    waiter = state.wwait = _Waiter(loop, fd, True)
    return waiter


def _release(state: _IoState, fd: int) -> None:
    """Drop ``state``'s registrations for ``fd`` and wake its waiters; fd is still open."""
    loop = state.loop
    if loop.is_closed():
        return
    if loop.is_running() and loop._thread_id != _get_ident():
        # Closed from a foreign OS thread: the selector belongs to the loop's thread, so ask
        # it, and wait until it is done before the caller closes the fd. (epoll forgets a
        # closed fd by itself, but select() fails with EBADF on one, and a reused fd number
        # must not meet our stale entry.) Bounded, in case the loop's thread is itself
        # blocked waiting for this one: past the bound, epoll's and poll's selectors still
        # cope with the closed fd, and the entry is removed when the callback runs.
        done = _threading.Event()
        try:
            loop.call_soon_threadsafe(_release_on_loop, state, fd, done)
        except RuntimeError:  # the loop closed meanwhile: nothing left to clean
            return
        done.wait(_FOREIGN_CLOSE_WAIT)
        return
    _release_on_loop(state, fd)


def _release_on_loop(state: _IoState, fd: int, done: _threading.Event | None = None) -> None:
    try:
        _release_now(state, fd)
    finally:
        if done is not None:
            done.set()


def _release_now(state: _IoState, fd: int) -> None:
    if state.loop.is_closed():
        return
    # Only our own registrations: the number may already name another file.
    for waiter in (state.rwait, state.wwait):
        if waiter is None:
            continue
        try:
            waiter.disarm()
        except OSError:  # already closed by another thread; the selector dropped the key
            waiter.cancel()
        # The waiter retries its syscall on the closed socket and raises EBADF, as the
        # stdlib would. Woken from the next callback, not from here: close() may run in a
        # task step or a green thread, which the woken greenlet must not re-enter.
        fut = waiter.fut
        if fut is not None and not fut.done():
            fut.set_result(None)


def _poll_fd(fd: int, write: bool, timeout: float | None) -> None:
    """Foreign OS thread: block this thread until ``fd`` is ready, as the C socket does."""
    if fd < 0:
        raise _ebadf()
    poller = _poll()
    poller.register(fd, _POLLOUT if write else _POLLIN)
    # poll() retries EINTR itself with the remaining time (PEP 475).
    if not poller.poll(None if timeout is None else timeout * 1000.0):
        raise TimeoutError("timed out")


class socket(_StdSocket):
    """A stdlib socket whose blocking calls wait on greenloop's loop instead of the OS thread."""

    __slots__ = ("_gl_io", "_gl_timeout")

    _gl_timeout: float | None
    _gl_io: _IoState | None

    def __init__(
        self,
        family: _stdsocket.AddressFamily | int = -1,
        type: _stdsocket.SocketKind | int = -1,
        proto: int = -1,
        fileno: int | None = None,
    ) -> None:
        # Set first: __del__ and close() read them even if the C constructor fails.
        self._gl_io = None
        self._gl_timeout = None
        super().__init__(family, type, proto, fileno)
        # The C constructor applied getdefaulttimeout() (or SOCK_NONBLOCK): that is what the
        # user asked for. Then make the C level non-blocking with a zero timeout.
        timeout = _gettimeout(self)
        self._gl_timeout = timeout
        if timeout != 0.0:
            _setblocking(self, False)

    # -- timeouts: what the user set, not what the fd is ----------------------------------

    def settimeout(self, value: float | None, /) -> None:
        if value is not None:
            # Let C validate and normalise the value exactly as the stdlib does (TypeError,
            # "Timeout value out of range", rounding), then put the C level back to
            # non-blocking.
            _settimeout(self, value)
            value = _gettimeout(self)
        # On the fd (already non-blocking) this changes nothing, but it raises what the
        # stdlib's fcntl raises: EBADF on a closed socket or an fd closed behind its back.
        _settimeout(self, 0.0)
        self._gl_timeout = value

    def gettimeout(self) -> float | None:
        return self._gl_timeout

    def setblocking(self, flag: bool, /) -> None:
        if _SETBLOCKING_TAKES_LONG:
            flag = _as_c_long(flag)  # type: ignore[assignment]
        timeout = None if flag else 0.0
        _setblocking(self, False)  # no change to the fd; EBADF as above
        self._gl_timeout = timeout

    def getblocking(self) -> bool:
        return self._gl_timeout != 0.0

    @property
    def timeout(self) -> float | None:  # type: ignore[override]
        return self._gl_timeout

    # -- waiting ----------------------------------------------------------------------------

    def _gl_retry(self, op: Callable[..., _T], args: tuple[Any, ...], write: bool, what: str) -> _T:
        """The slow path: ``op(self, *args)`` would block; wait and retry until the timeout."""
        timeout = self._gl_timeout
        loop = _running_loops.get(_get_ident()) or _resolve_loop(what)  # the common case first
        if timeout is None and loop is not None:
            while True:  # the common case, kept to the fewest calls: no deadline, on a loop
                self._gl_park(loop, write, None, what)
                try:
                    return op(self, *args)
                except (BlockingIOError, InterruptedError):
                    pass  # a spurious wake-up: wait again
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            self._gl_wait(loop, write, deadline, what)
            try:
                return op(self, *args)
            except (BlockingIOError, InterruptedError):
                pass  # a spurious wake-up: wait again for what is left of the deadline

    def _gl_wait(self, loop: Loop | None, write: bool, deadline: float | None, what: str) -> None:
        """Wait until the fd is ready; raise ``TimeoutError("timed out")`` at ``deadline``."""
        if deadline is None:
            timeout = None
        else:
            timeout = deadline - _monotonic()
            if timeout <= 0.0:
                raise TimeoutError("timed out")
        if loop is None:
            _poll_fd(_fileno(self), write, timeout)
        else:
            self._gl_park(loop, write, timeout, what)

    def _gl_park(self, loop: Loop, write: bool, timeout: float | None, what: str) -> None:
        """Wait on ``loop`` for readiness (see "Keeping the epoll registration" above)."""
        fd = _fileno(self)
        if fd < 0:
            raise _ebadf()
        state = self._gl_io
        if state is None:
            state = self._gl_io = _IoState(loop, fd)
        elif state.closing:
            raise _ebadf()
        elif state.loop is not loop:
            state = self._gl_move(state, loop, fd, what)
        waiter = (state.wwait or _new_wwait(state, loop, fd)) if write else state.rwait
        if waiter.fut is not None:
            raise RuntimeError(
                f"{what}: another green thread or task is already waiting to "
                f"{'write to' if write else 'read from'} this socket (fd {fd}); only one waiter "
                "per socket and direction is supported"
            )
        if not waiter.registered():
            waiter.register(what)
        fut = waiter.fut = waiter.spare  # reused: make it a fresh one-shot Waiter again
        fut._done = False
        fut._result = fut._exception = None
        try:
            if loop._hub is None:
                wait(fut, timeout, what)  # drives the loop (main greenlet) or says why it can't
            else:
                _hub.park(loop, fut, timeout, what)  # wait() would look up the loop we know
        except TimeoutError:
            raise TimeoutError("timed out") from None
        finally:
            # The registration stays armed: if the fd becomes ready while nobody waits, the
            # waiter removes it then (_Waiter._run).
            waiter.fut = None

    def _gl_move(self, state: _IoState, loop: Loop, fd: int, what: str) -> _IoState:
        """The socket is now used on another loop: leave the old one's selector."""
        if state.rwait.fut is not None or (state.wwait is not None and state.wwait.fut is not None):
            raise RuntimeError(f"{what}: this socket is being waited on in another event loop")
        self._gl_io = new = _IoState(loop, fd)
        _release(state, fd)
        return new

    def _gl_forget(self) -> None:
        """Before the fd is closed or handed away: leave the loop, wake the waiters."""
        state = self._gl_io
        if state is not None and not state.closing:
            state.closing = True
            fd = _fileno(self)
            if fd >= 0:
                _release(state, fd)

    # -- closing ------------------------------------------------------------------------

    def _real_close(self, _ss: Any = _csock) -> None:
        # Called by close() once no makefile() object holds the socket. Like the stdlib's,
        # this must not need module globals (it can run during interpreter shutdown).
        if self._gl_io is not None:
            self._gl_forget()
        _ss.close(self)

    def __del__(self, _base_del: Callable[[_csock], None] = _csock_del) -> None:
        # Garbage-collected unclosed: leave the selector before the C finalizer closes the fd
        # (and warns, as the stdlib does).
        if self._gl_io is not None:
            try:
                self._gl_forget()
            except Exception:  # at interpreter shutdown the module's globals may be gone
                pass
        _base_del(self)

    def detach(self) -> int:
        self._gl_forget()
        if _fileno(self) >= 0:
            # Hand the fd over in the blocking mode the user set, as the stdlib socket would
            # (a child process given this fd must not find it non-blocking).
            try:
                _settimeout(self, self._gl_timeout)
            except OSError:
                pass  # the fd was closed behind the socket's back: detach() never fails
        return super().detach()

    # -- receiving ----------------------------------------------------------------------

    def _gl_read(self, op: Callable[..., _T], args: tuple[Any, ...], what: str) -> _T:
        """``recv``/``recv_into``: read first, or wait first after a short read (see "Waiting
        first" above): then the read would almost surely fail with EAGAIN."""
        state = self._gl_io
        # The last test (no flags: not MSG_DONTWAIT, nor a bad value) is reached only when
        # about to wait anyway; with flags, read first as the stdlib does.
        if (
            state is not None
            and state.drained
            and not state.rwait._cancelled
            and self._gl_timeout != 0.0
            and not args[-1]
        ):
            return self._gl_retry(op, args, False, what)
        try:
            return op(self, *args)
        except (BlockingIOError, InterruptedError):
            if self._gl_timeout == 0.0 or args[-1] & _MSG_DONTWAIT:  # flags: last argument
                raise
        return self._gl_retry(op, args, False, what)

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        state = self._gl_io
        if state is not None and state.drained and not flags and self._gl_timeout is None:
            # _gl_read()'s wait-first case, written out: a thread-per-connection server's
            # every request comes through here.
            loop = _running_loops.get(_get_ident())
            if loop is not None and not state.rwait._cancelled:
                while True:
                    self._gl_park(loop, False, None, "socket.recv()")
                    try:
                        data = _recv(self, bufsize)
                        break
                    except (BlockingIOError, InterruptedError):
                        pass  # a spurious wake-up: wait again
                state = self._gl_io
                if state is not None:
                    state.drained = len(data) < bufsize
                return data
        data = self._gl_read(_recv, (bufsize, flags), "socket.recv()")
        state = self._gl_io
        if state is not None:
            state.drained = len(data) < bufsize
        return data

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        n = self._gl_read(_recv_into, (buffer, nbytes, flags), "socket.recv_into()")
        state = self._gl_io
        if state is not None:
            state.drained = n < (nbytes or len(buffer))  # type: ignore[arg-type]
        return n

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        try:
            return _recvfrom(self, bufsize, flags)
        except (BlockingIOError, InterruptedError):
            if self._gl_timeout == 0.0 or flags & _MSG_DONTWAIT:
                raise
        return self._gl_retry(_recvfrom, (bufsize, flags), False, "socket.recvfrom()")

    def recvfrom_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        try:
            return _recvfrom_into(self, buffer, nbytes, flags)
        except (BlockingIOError, InterruptedError):
            if self._gl_timeout == 0.0 or flags & _MSG_DONTWAIT:
                raise
        return self._gl_retry(_recvfrom_into, (buffer, nbytes, flags), False, "socket.recvfrom_into()")

    if hasattr(_csock, "recvmsg"):

        def recvmsg(
            self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
        ) -> tuple[bytes, list[Any], int, Any]:
            try:
                return _csock.recvmsg(self, bufsize, ancbufsize, flags)
            except (BlockingIOError, InterruptedError):
                if self._gl_timeout == 0.0 or flags & _MSG_DONTWAIT:
                    raise
            return self._gl_retry(_csock.recvmsg, (bufsize, ancbufsize, flags), False, "socket.recvmsg()")

        def recvmsg_into(
            self, buffers: Iterable[WriteableBuffer], ancbufsize: int = 0, flags: int = 0, /
        ) -> tuple[int, list[Any], int, Any]:
            # The iterable may be single-use; the C method takes any sequence of buffers.
            buffers = list(buffers)
            try:
                return _csock.recvmsg_into(self, buffers, ancbufsize, flags)
            except (BlockingIOError, InterruptedError):
                if self._gl_timeout == 0.0 or flags & _MSG_DONTWAIT:
                    raise
            return self._gl_retry(
                _csock.recvmsg_into, (buffers, ancbufsize, flags), False, "socket.recvmsg_into()"
            )

    # -- sending ------------------------------------------------------------------------

    def send(self, data: ReadableBuffer, flags: int = 0, /) -> int:
        try:
            return _send(self, data, flags)
        except (BlockingIOError, InterruptedError):
            if self._gl_timeout == 0.0 or flags & _MSG_DONTWAIT:
                raise
        return self._gl_retry(_send, (data, flags), True, "socket.send()")

    def sendall(self, data: ReadableBuffer, flags: int = 0, /) -> None:
        try:
            sent = _send(self, data, flags)
        except (BlockingIOError, InterruptedError):
            if self._gl_timeout == 0.0 or flags & _MSG_DONTWAIT:
                raise
            sent = 0
        kind = type(data)
        if (kind is bytes or kind is bytearray) and sent == len(data):  # type: ignore[arg-type]
            return  # the common case: everything went in one syscall (no memoryview needed)
        with memoryview(data) as view:
            if sent == view.nbytes:
                return
            with view.cast("B") as rest:
                self._gl_sendall_rest(rest, sent, flags)

    def _gl_sendall_rest(self, view: memoryview, sent: int, flags: int) -> None:
        # One deadline for the whole call, as CPython's sendall (since 3.5).
        timeout = self._gl_timeout
        deadline = None if timeout is None else _monotonic() + timeout
        loop = _resolve_loop("socket.sendall()") if timeout != 0.0 else None
        total = len(view)
        while sent < total:
            try:
                sent += _send(self, view[sent:], flags)
                continue
            except (BlockingIOError, InterruptedError):
                if timeout == 0.0 or flags & _MSG_DONTWAIT:
                    raise
            self._gl_wait(loop, True, deadline, "socket.sendall()")

    @overload
    def sendto(self, data: ReadableBuffer, address: Any, /) -> int: ...
    @overload
    def sendto(self, data: ReadableBuffer, flags: int, address: Any, /) -> int: ...
    def sendto(self, *args: Any) -> int:
        # (data, address) or (data, flags, address): taken as *args so that a wrong count
        # gets the C method's own TypeError ("sendto() takes 2 or 3 arguments (1 given)").
        count = len(args)
        if count == 2:
            args = (args[0], self._gl_resolve(args[1], "socket.sendto()"))
        elif count == 3:
            args = (args[0], args[1], self._gl_resolve(args[2], "socket.sendto()"))
        try:
            return _sendto(self, *args)
        except (BlockingIOError, InterruptedError):
            if self._gl_timeout == 0.0 or (count == 3 and args[1] & _MSG_DONTWAIT):
                raise
        return self._gl_retry(_sendto, args, True, "socket.sendto()")

    if hasattr(_csock, "sendmsg"):

        def sendmsg(
            self,
            buffers: Iterable[ReadableBuffer],
            ancdata: Iterable[Any] = (),
            flags: int = 0,
            address: Any = None,
            /,
        ) -> int:
            # Both iterables may be single-use, and a retry passes them again.
            args = (list(buffers), list(ancdata), flags, address)
            try:
                return _csock.sendmsg(self, *args)
            except (BlockingIOError, InterruptedError):
                if self._gl_timeout == 0.0 or flags & _MSG_DONTWAIT:
                    raise
            return self._gl_retry(_csock.sendmsg, args, True, "socket.sendmsg()")

    if hasattr(_csock, "sendmsg_afalg"):

        def sendmsg_afalg(self, *args: Any, **kwargs: Any) -> int:
            def op(sock: socket) -> int:
                return _csock.sendmsg_afalg(sock, *args, **kwargs)

            try:
                return op(self)
            except (BlockingIOError, InterruptedError):
                if self._gl_timeout == 0.0 or kwargs.get("flags", 0) & _MSG_DONTWAIT:
                    raise
            return self._gl_retry(op, (), True, "socket.sendmsg_afalg()")

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send a file until EOF (or ``count`` bytes) with ``os.sendfile``; see the stdlib's.

        The stdlib's version waits in its own ``poll()``, which would stall the loop; this
        one waits cooperatively. Non-regular files fall back to ``send()``, as there.
        """
        sent = self._gl_sendfile_zero_copy(file, offset, count)
        if sent is None:
            return self._sendfile_use_send(file, offset, count)  # type: ignore[attr-defined, no-any-return]
        return sent

    def _gl_sendfile_zero_copy(self, file: Any, offset: int, count: int | None) -> int | None:
        """``os.sendfile`` the file; None means "not a regular file: use send() instead"."""
        self._check_sendfile_params(file, offset, count)  # type: ignore[attr-defined]
        if not hasattr(_os, "sendfile"):
            return None
        try:
            fileno = file.fileno()
            fsize = _os.fstat(fileno).st_size
        except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
            return None
        if not fsize:
            return 0
        timeout = self._gl_timeout
        if timeout == 0.0:
            raise ValueError("non-blocking sockets are not supported")
        sockno = _fileno(self)
        blocksize = min(count or fsize, 2**30)  # larger counts overflow on some systems
        loop = _resolve_loop("socket.sendfile()")
        total = 0
        try:
            while True:
                if count:
                    blocksize = count - total
                    if blocksize <= 0:
                        break
                try:
                    sent = _os.sendfile(sockno, fileno, offset, blocksize)
                except (BlockingIOError, InterruptedError):
                    # As the stdlib's: the timeout applies to each wait, not the whole call.
                    deadline = None if timeout is None else _monotonic() + timeout
                    self._gl_wait(loop, True, deadline, "socket.sendfile()")
                    continue
                except OSError:
                    if total == 0:
                        return None  # e.g. not an mmap-able file: send() can still do it
                    raise
                if sent == 0:
                    break  # EOF
                offset += sent
                total += sent
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset)

    # -- connections --------------------------------------------------------------------

    def accept(self) -> tuple[socket, Any]:
        try:
            fd, addr = _accept(self)
        except (BlockingIOError, InterruptedError):
            if self._gl_timeout == 0.0:
                raise
            fd, addr = self._gl_retry(_accept, (), False, "socket.accept()")
        # The C-level numbers: the family and type properties make enum members, slowly.
        sock = socket(_family(self), _type(self), _proto(self), fd)
        # As the stdlib (issue #7995): without a default timeout, a connection accepted on a
        # listening socket with a timeout is blocking, whatever the platform inherits.
        if _getdefaulttimeout() is None and self._gl_timeout:
            sock._gl_timeout = None
        return sock, addr

    def connect(self, address: Any, /) -> None:
        address = self._gl_resolve(address, "socket.connect()")
        try:
            _connect(self, address)
            return
        except (BlockingIOError, InterruptedError) as exc:
            if self._gl_timeout == 0.0:
                raise
            if exc.errno == _errno.EAGAIN:
                self._gl_connect_again(address, exc)
                return
        # EINPROGRESS (or EINTR): the connection goes on in the kernel; writable means done.
        err = self._gl_connect_wait("socket.connect()")
        if err:
            raise OSError(err, _os.strerror(err))

    def connect_ex(self, address: Any, /) -> int:
        address = self._gl_resolve(address, "socket.connect_ex()")
        err = _connect_ex(self, address)
        if self._gl_timeout == 0.0:
            return err
        if err == _errno.EAGAIN:
            try:
                self._gl_connect_again(address, None)
            except OSError as exc:
                return exc.errno or _errno.EIO
            return 0
        if err not in (_errno.EINPROGRESS, _errno.EINTR):
            return err
        try:
            return self._gl_connect_wait("socket.connect_ex()")
        except TimeoutError:
            return _errno.EWOULDBLOCK  # what CPython's connect_ex returns on timeout

    def _gl_connect_wait(self, what: str) -> int:
        timeout = self._gl_timeout
        deadline = None if timeout is None else _monotonic() + timeout
        self._gl_wait(_resolve_loop(what), True, deadline, what)
        err = self.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
        return 0 if err == _errno.EISCONN else err

    def _gl_connect_again(self, address: Any, exc: BaseException | None) -> None:
        # A Unix socket whose listener's backlog is full: a non-blocking connect() says EAGAIN
        # where a blocking one waits in the kernel until the listener accepts. CPython raises
        # it when a timeout is set, and waits without one. Nothing signals "retry now" (an
        # unconnected Unix socket polls writable at once), so retry with a growing sleep.
        if self._gl_timeout is not None:
            if exc is not None:
                raise exc
            raise BlockingIOError(_errno.EAGAIN, _os.strerror(_errno.EAGAIN))
        delay = 0.0005
        while True:
            _sleep(delay)
            delay = min(delay * 2, 0.05)
            try:
                _connect(self, address)
                return
            except (BlockingIOError, InterruptedError) as again:
                if again.errno != _errno.EAGAIN:
                    err = self._gl_connect_wait("socket.connect()")
                    if err:
                        raise OSError(err, _os.strerror(err)) from None
                    return

    def _gl_resolve(self, address: Any, what: str) -> Any:
        """Resolve a host name in an IP address on a resolver thread instead of in C.

        Numeric addresses (the usual case) and non-IP sockets pass through untouched; so does
        everything on a foreign OS thread, where C resolving (blocking) is the stdlib's way.
        """
        if type(address) is not tuple or len(address) < 2 or type(address[0]) is not str:
            return address
        family = _csock.family.__get__(self)
        if family not in (_AF_INET, _AF_INET6):
            return address
        host = address[0]
        if host in ("", "<broadcast>"):  # special names C handles without a resolver
            return address
        try:
            _inet_pton(family, host)
            return address
        except (OSError, ValueError):
            pass
        loop = _resolve_loop(what)
        if loop is None:
            return address
        infos = _offload(loop, _orig_getaddrinfo, (host, None, family), "socket.getaddrinfo()")
        return (infos[0][4][0], *address[1:])


# -- module functions --------------------------------------------------------------------


def _offload(loop: Loop, fn: Callable[..., _T], args: tuple[Any, ...], what: str) -> _T:
    """Run ``fn(*args)`` on greenloop's resolver threads (real OS threads) and wait for it."""
    from ._realthreads import internal_executor  # here: it imports greenloop.monkey

    loop._check_closed()  # as run_in_executor: no work submitted for a closed loop
    fut = _wrap_future(internal_executor().submit(fn, *args), loop=loop)
    try:
        return wait(fut, None, what)
    except BaseException:
        fut.cancel()
        raise


def _is_numeric_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return False
    for family in (_AF_INET, _AF_INET6):
        try:
            _inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def _is_digits(port: Any) -> bool:
    # A numeric service needs no services database lookup either.
    return isinstance(port, (str, bytes)) and port.isdigit() and port.isascii()


def getaddrinfo(  # noqa: PLR0917  (the stdlib's signature)
    host: bytes | str | None,
    port: bytes | str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[tuple[Any, Any, int, str, Any]]:
    """The stdlib's ``getaddrinfo``, run on a resolver thread unless nothing needs resolving."""
    if _is_numeric_host(host) and (isinstance(port, int) or port is None or _is_digits(port)):
        # AI_NUMERICHOST makes sure libc never consults a resolver.
        return _orig_getaddrinfo(host, port, family, type, proto, flags | _socket.AI_NUMERICHOST)
    loop = _resolve_loop("socket.getaddrinfo()")
    if loop is None:
        return _orig_getaddrinfo(host, port, family, type, proto, flags)
    return _offload(loop, _orig_getaddrinfo, (host, port, family, type, proto, flags), "socket.getaddrinfo()")


def gethostbyname(hostname: str, /) -> str:
    """The stdlib's ``gethostbyname``, run on a resolver thread unless ``hostname`` is numeric."""
    try:
        _inet_pton(_AF_INET, hostname)  # a dotted quad: C answers it without a resolver
        loop = None
    except (OSError, TypeError, ValueError):
        loop = _resolve_loop("socket.gethostbyname()")
    if loop is None:
        return _orig_gethostbyname(hostname)
    return _offload(loop, _orig_gethostbyname, (hostname,), "socket.gethostbyname()")


def gethostbyname_ex(hostname: str, /) -> tuple[str, list[str], list[str]]:
    """The stdlib's ``gethostbyname_ex``, run on a resolver thread."""
    loop = _resolve_loop("socket.gethostbyname_ex()")
    if loop is None:
        return _orig_gethostbyname_ex(hostname)
    return _offload(loop, _orig_gethostbyname_ex, (hostname,), "socket.gethostbyname_ex()")


def gethostbyaddr(ip_address: str, /) -> tuple[str, list[str], list[str]]:
    """The stdlib's ``gethostbyaddr``, run on a resolver thread."""
    loop = _resolve_loop("socket.gethostbyaddr()")
    if loop is None:
        return _orig_gethostbyaddr(ip_address)
    return _offload(loop, _orig_gethostbyaddr, (ip_address,), "socket.gethostbyaddr()")


def getnameinfo(sockaddr: Any, flags: int, /) -> tuple[str, str]:
    """The stdlib's ``getnameinfo``, run on a resolver thread unless asked for numbers only."""
    if not isinstance(sockaddr, tuple) or not isinstance(flags, int):
        # C's TypeError, raised here: nothing to resolve. The traceback holds this frame;
        # drop the arguments from it, so that, as with the C function, the exception keeps
        # no reference to them (test_socket counts references to the argument).
        try:
            return _orig_getnameinfo(sockaddr, flags)
        finally:
            del sockaddr, flags
    loop = None
    numeric = _socket.NI_NUMERICHOST | _socket.NI_NUMERICSERV
    if flags & numeric != numeric:
        loop = _resolve_loop("socket.getnameinfo()")
    if loop is None:
        return _orig_getnameinfo(sockaddr, flags)
    return _offload(loop, _orig_getnameinfo, (sockaddr, flags), "socket.getnameinfo()")


def getfqdn(name: str = "") -> str:
    """The stdlib's ``getfqdn`` (which calls ``gethostbyaddr``), run on a resolver thread."""
    loop = _resolve_loop("socket.getfqdn()")
    if loop is None:
        return _orig_getfqdn(name)
    return _offload(loop, _orig_getfqdn, (name,), "socket.getfqdn()")


def _adopt(sock: _StdSocket) -> socket:
    """A green socket for the same fd and timeout (``sock`` itself if it is one already)."""
    if isinstance(sock, socket):
        return sock
    timeout = sock.gettimeout()
    green = socket(sock.family, sock.type, sock.proto, sock.detach())
    if green.gettimeout() != timeout:
        green.settimeout(timeout)
    return green


def socketpair(
    family: int | _stdsocket.AddressFamily | None = None,
    type: _stdsocket.SocketKind | int = _SOCK_STREAM,
    proto: int = 0,
) -> tuple[socket, socket]:
    """The stdlib's ``socketpair``, returning green sockets."""
    a, b = _orig_socketpair(family, type, proto)
    return _adopt(a), _adopt(b)


def fromfd(
    fd: int,
    family: _stdsocket.AddressFamily | int,
    type: _stdsocket.SocketKind | int,
    proto: int = 0,
) -> socket:
    """The stdlib's ``fromfd``: a green socket on a duplicate of ``fd``.

    Note that the duplicate shares the open file with ``fd``: it becomes non-blocking too.
    """
    return socket(family, type, proto, _socket.dup(fd))


def create_server(
    address: Any,
    *,
    family: int = _AF_INET,
    backlog: int | None = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool = False,
) -> socket:
    """The stdlib's ``create_server`` (nothing in it blocks), returning a green socket."""
    sock = _orig_create_server(
        address, family=family, backlog=backlog, reuse_port=reuse_port, dualstack_ipv6=dualstack_ipv6
    )
    return _adopt(sock)


def create_connection(
    address: tuple[str | None, bytes | str | int | None],
    timeout: float | object | None = _GLOBAL_DEFAULT_TIMEOUT,
    source_address: Any = None,
    *,
    all_errors: bool = False,
) -> socket:
    """Connect to ``(host, port)`` and return the green socket, as the stdlib's does.

    Each address ``getaddrinfo`` returns is tried in turn. The last error is raised, or with
    ``all_errors`` an ExceptionGroup of all of them. ``timeout`` applies to each connect.
    """
    host, port = address
    # As the stdlib's, which looks ``socket`` up in its module at each call: after patching
    # that is this class, or whatever the program put there (test_socket mocks it).
    # Unpatched, the module still has the stdlib's class, and this function makes green ones.
    cls: type[socket] = _stdsocket.socket  # type: ignore[assignment]
    if cls is _StdSocket:
        cls = socket
    errors: list[OSError] = []
    for family, kind, proto, _canonname, sockaddr in getaddrinfo(host, port, 0, _SOCK_STREAM):
        sock = None
        try:
            sock = cls(family, kind, proto)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)  # type: ignore[arg-type]
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            errors.clear()  # their tracebacks reference this frame: break the cycle now
            return sock
        except OSError as exc:
            if sock is not None:
                sock.close()
            if not all_errors:
                errors.clear()  # only the last error is reported
            errors.append(exc)
    if not errors:
        raise OSError("getaddrinfo returns an empty list")
    try:
        if all_errors:
            raise ExceptionGroup("create_connection failed", errors)
        raise errors[0]
    finally:
        errors.clear()  # the traceback would otherwise keep a reference cycle alive
