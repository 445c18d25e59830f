"""Cooperative ``os``: ``waitpid``/``wait`` and ``read``/``write`` on pipes wait on the loop.

* ``waitpid(pid, 0)`` for one child waits on a pidfd (readable when the child exits), so it
  costs no polling; waits for any child (``pid <= 0``, ``wait()``) or for stop/continue
  events poll with ``WNOHANG`` at a backing-off interval (1 to 50 ms). ``WNOHANG`` calls, and
  children that have already exited, are answered at once without waiting, so this is safe
  from a plain loop callback too (asyncio's pidfd child watcher calls it there).
* ``read``/``write`` on a *blocking* pipe, FIFO, socket or character device wait until the fd
  is ready, then make the call (which then does not block). Regular files are always
  "ready" to poll and stay blocking calls (see the README: file I/O is offloaded only where
  the program opts in). Non-blocking fds keep their semantics: ``BlockingIOError`` at once.

On an OS thread without a greenloop loop every function is the original.
"""

from __future__ import annotations

import os as _os
import select as _select
import stat as _stat

from greenloop import _green

__implements__ = ["waitpid", "wait", "read", "write"]
__all__ = ["read", "wait", "waitpid", "write"]

_orig_waitpid = _os.waitpid
_orig_read = _os.read
_orig_write = _os.write
_orig_fstat = _os.fstat
_orig_get_blocking = _os.get_blocking
_pidfd_open = getattr(_os, "pidfd_open", None)
_WNOHANG = _os.WNOHANG
_STATUS_EVENTS = getattr(_os, "WUNTRACED", 0) | getattr(_os, "WCONTINUED", 0)
_orig_poll = _select.poll
_POLLIN = _select.POLLIN
_POLLOUT = _select.POLLOUT


def waitpid(pid: int, options: int, /) -> tuple[int, int]:
    """Wait for completion of a child process; only the calling green thread waits."""
    if options & _WNOHANG:
        return _orig_waitpid(pid, options)
    loop = _green._resolve_loop("os.waitpid()")
    if loop is None:
        return _orig_waitpid(pid, options)
    result = _orig_waitpid(pid, options | _WNOHANG)
    if result[0] != 0:
        return result
    if pid > 0 and not options & _STATUS_EVENTS and _pidfd_open is not None:
        try:
            pidfd = _pidfd_open(pid)
        except OSError:
            pass  # no pidfd support (old kernel, seccomp): poll below
        else:
            try:
                _green.wait_readable(pidfd)
            finally:
                _os.close(pidfd)
            return _orig_waitpid(pid, options)
    delay = 0.001
    while True:
        _green.sleep(delay)
        result = _orig_waitpid(pid, options | _WNOHANG)
        if result[0] != 0:
            return result
        delay = min(delay * 2, 0.05)


def wait() -> tuple[int, int]:
    """Wait for completion of any child process; only the calling green thread waits."""
    return waitpid(-1, 0)


def _must_wait(fd: int, events: int) -> bool:
    """Whether a blocking call on ``fd`` could block now: a blocking, pollable fd not ready."""
    try:
        mode = _orig_fstat(fd).st_mode
        if not (_stat.S_ISFIFO(mode) or _stat.S_ISSOCK(mode) or _stat.S_ISCHR(mode)):
            return False  # regular files and directories never wait for readiness
        if not _orig_get_blocking(fd):
            return False  # a non-blocking fd: EAGAIN is what its owner expects
    except OSError:
        return False  # let the real call report the error
    poller = _orig_poll()
    poller.register(fd, events)
    return not poller.poll(0)


def read(fd: int, length: int, /) -> bytes:
    """Read from a file descriptor; on a pipe, only the calling green thread waits."""
    if _green._resolve_loop("os.read()") is not None and _must_wait(fd, _POLLIN):
        _green.wait_readable(fd)
    return _orig_read(fd, length)


def write(fd: int, data: bytes, /) -> int:
    """Write to a file descriptor; on a full pipe, only the calling green thread waits."""
    if _green._resolve_loop("os.write()") is not None and _must_wait(fd, _POLLOUT):
        _green.wait_writable(fd)
    return _orig_write(fd, data)
