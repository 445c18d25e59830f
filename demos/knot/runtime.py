"""The one place that knows which thread implementation Knot runs on.

Knot's server code is plain threaded code on the stdlib socket API: ``accept``, ``recv`` and
``sendall`` block the calling thread, timeouts come from ``settimeout``. This module supplies
the threads and the sockets, and translates Knot's two scheduling hints:

* which thread is the acceptor (the one ``run`` starts) and which serve connections (those
  ``spawn`` starts), for the paper's policies: Knot-C favours active connections over
  accepting new ones, Knot-A the reverse;
* ``offload(fn)``: run a blocking file-system call on a real OS thread (the paper's disk
  thread pool) while only the calling (green) thread waits.

Runtimes:
  greenloop  green threads on greenloop's loop; policies map to green-thread priorities.
  gevent     gevent after monkey.patch_all(). gevent has no priorities: --policy is ignored.
  threads    one real OS thread per connection; the kernel schedules, --policy is ignored.
             (Run under ``python -m greenloop``, these threads become green threads.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

RUNTIMES = ("greenloop", "gevent", "threads")


class Runtime:
    """Threads for the real-OS-thread runtime; the base of the other two."""

    name = "threads"

    def __init__(self, policy: str) -> None:
        self.policy = policy

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        """Start a connection thread."""
        threading.Thread(target=fn, args=args, daemon=True).start()

    def offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)  # already on a real OS thread

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)  # gevent patches time.sleep; looked up at call time

    def wrap(self, sock: socket.socket) -> socket.socket:
        """The blocking-style socket object to use for ``sock`` (an accepted connection)."""
        return sock

    def run(self, main: Callable[[], Any]) -> Any:
        """Run the acceptor, ``main``, on this runtime; returns when it does."""
        # Thousands of threads at the default 8 MiB of stack each would reserve tens of GB
        # of address space; Knot's frames are shallow.
        threading.stack_size(512 * 1024)
        return main()


class GeventRuntime(Runtime):
    name = "gevent"

    def __init__(self, policy: str) -> None:
        super().__init__(policy)
        from gevent import monkey

        monkey.patch_all()
        import gevent

        self._gevent = gevent
        self._pool = gevent.get_hub().threadpool  # real OS threads

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        self._gevent.spawn(fn, *args)

    def offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._pool.apply(fn, args)


class GreenloopRuntime(Runtime):
    name = "greenloop"

    def __init__(self, policy: str) -> None:
        super().__init__(policy)
        import greenloop

        self._gl = greenloop
        self._executor = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="knot-disk")
        # The favoured side at the default level, the other one level below. A thread at the
        # default level is switched to the moment its socket is ready, in the loop's pass over
        # that iteration's events; a thread below waits until that pass is over (it still runs
        # in every iteration: levels never starve). Knot-C: every ready connection is served
        # before the acceptor takes the pending ones; Knot-A: the reverse. (Raising the
        # favoured side instead would not order them: a thread woken at or above the running
        # level is switched to at once, so both would run in the order of the events.)
        high, low = greenloop.PRIORITY_DEFAULT, greenloop.PRIORITY_DEFAULT - 1
        self._prio_conn, self._prio_acceptor = (low, high) if policy == "A" else (high, low)
        from greenloop.green.socket import socket as green_socket

        self._socket_class = green_socket

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        self._gl.spawn(fn, *args, priority=self._prio_conn)

    def sleep(self, seconds: float) -> None:
        self._gl.sleep(seconds)

    def offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return self._gl.await_(loop.run_in_executor(self._executor, fn, *args))

    def wrap(self, sock: socket.socket) -> Any:
        # The cooperative socket class: the stdlib's API, blocking calls as waits on the loop.
        if isinstance(sock, self._socket_class):
            return sock
        return self._socket_class(fileno=sock.detach())

    def run(self, main: Callable[[], Any]) -> Any:
        # A blocking call from the main greenlet drives the loop until it completes.
        return self._gl.spawn(main, priority=self._prio_acceptor).join()


def load(name: str, policy: str = "C") -> Runtime:
    """Set up runtime ``name``; for gevent this monkey-patches, so call it before other imports."""
    cls = {"greenloop": GreenloopRuntime, "gevent": GeventRuntime, "threads": Runtime}[name]
    return cls(policy)
