"""Cooperative ``os``: ``waitpid``/``wait`` and ``read``/``write`` on pipes wait on the loop.

* ``waitpid(pid, 0)`` for one child waits on a pidfd (readable when the child exits), so it
  costs no polling; waits for any child (``pid <= 0``, ``wait()``) or for stop/continue
  events poll with ``WNOHANG`` at a backing-off interval (1 to 50 ms). ``WNOHANG`` calls, and
  children that have already exited, are answered at once without waiting, so this is safe
  from a plain loop callback too (asyncio's pidfd child watcher calls it there).
* ``read``/``write`` on a *blocking* pipe, FIFO, socket or character device wait until the fd
  is ready, then make the call (which then does not block). Non-blocking fds keep their
  semantics: ``BlockingIOError`` at once.
* Regular files and block devices are always "ready" to poll: a read that misses the page
  cache, a write that must wait for writeback, an ``fsync``, block the OS thread. When the
  program opts in (``patch_all(file_io=True)``, or ``GREENLOOP_FILE_IO=1`` in the
  environment, which ``python -m greenloop`` honours too), ``read``, ``write``, ``pread``,
  ``pwrite``, ``fsync`` and ``fdatasync`` on them run on a real OS thread (the loop's default
  executor) while only the calling green thread or task waits. Without the opt-in they stay
  the plain blocking calls: a thread hop costs tens of microseconds, far more than a read
  from the page cache, which is the common case. A call that cannot wait (a plain loop
  callback, an interpreter that is shutting down) is made directly, as the original.
  ``run_in_os_thread(fn, *args)`` does the same for any blocking callable, such as the methods
  of a file object from ``open()``, which this module cannot reach (see the README).

On an OS thread without a greenloop loop every function is the original.
"""

from __future__ import annotations

import asyncio
import functools
import os as _os
import select as _select
import stat as _stat
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from greenlet import getcurrent

from greenloop import _green

__implements__ = ["waitpid", "wait", "read", "write", "pread", "pwrite", "fsync", "fdatasync"]
__all__ = [
    "fdatasync",
    "file_io_offloaded",
    "fsync",
    "pread",
    "pwrite",
    "read",
    "run_in_os_thread",
    "set_file_io_offload",
    "wait",
    "waitpid",
    "write",
]

_T = TypeVar("_T")

_orig_waitpid = _os.waitpid
_orig_read = _os.read
_orig_write = _os.write
_orig_pread = _os.pread
_orig_pwrite = _os.pwrite
_orig_fsync = _os.fsync
_orig_fdatasync = _os.fdatasync
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


# -- file I/O on real OS threads (opt-in) ------------------------------------------------------

_offload_files = False


def set_file_io_offload(enabled: bool) -> None:
    """Turn the offloading of regular-file I/O to real OS threads on or off (process-wide)."""
    global _offload_files
    _offload_files = bool(enabled)


def file_io_offloaded() -> bool:
    """Whether regular-file I/O through ``os`` runs on real OS threads."""
    return _offload_files


def run_in_os_thread(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Call ``fn(*args, **kwargs)`` on a real OS thread; only the calling green thread or task
    waits for the result (or exception).

    Where nothing can wait cooperatively (an OS thread without a greenloop loop, a plain
    loop callback, interpreter shutdown) ``fn`` is simply called here. Cancelling the waiting
    green thread or task does not stop ``fn``: it runs to completion on its OS thread.
    """
    if kwargs:
        return _offloaded("run_in_os_thread()", functools.partial(fn, *args, **kwargs))
    return _offloaded("run_in_os_thread()", fn, *args)


def _waiting_loop(what: str) -> Any:
    """The greenloop loop the caller can wait on cooperatively, or None: call directly."""
    if sys.is_finalizing():
        return None
    loop = _green._resolve_loop(what)
    if loop is None or loop.is_closed():
        return None
    me = getcurrent()
    hub = loop._hub
    if hub is None:
        # Nothing runs the loop: only the main greenlet can drive it (see _green.wait).
        return loop if me.parent is None else None
    if me is hub and asyncio.current_task(loop) is None:
        return None  # a plain loop callback must not block (nor reorder the queue)
    return loop


def _is_file(fd: int) -> bool:
    """Whether ``fd`` is a regular file or a block device (I/O that polling cannot wait for)."""
    try:
        mode = _orig_fstat(fd).st_mode
    except (OSError, TypeError, ValueError, OverflowError):
        return False  # let the real call report the error
    return _stat.S_ISREG(mode) or _stat.S_ISBLK(mode)


def _offloaded(what: str, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` on a real OS thread while only the caller waits, where it can wait."""
    loop = _waiting_loop(what)
    if loop is None:
        return fn(*args)
    result: _T = _green.wait(loop.run_in_executor(None, fn, *args), None, what)
    return result


def _file_call(what: str, fn: Callable[..., _T], fd: int, *args: Any) -> _T:
    if _offload_files and _is_file(fd):
        return _offloaded(what, fn, fd, *args)
    return fn(fd, *args)


def pread(fd: int, length: int, offset: int, /) -> bytes:
    """Read at an offset; on a regular file, on a real OS thread if file I/O is offloaded."""
    return _file_call("os.pread()", _orig_pread, fd, length, offset)


def pwrite(fd: int, data: bytes, offset: int, /) -> int:
    """Write at an offset; on a regular file, on a real OS thread if file I/O is offloaded."""
    return _file_call("os.pwrite()", _orig_pwrite, fd, data, offset)


def fsync(fd: Any, /) -> None:
    """Flush a file to disk; on a real OS thread if file I/O is offloaded."""
    if _offload_files:
        _offloaded("os.fsync()", _orig_fsync, fd)
    else:
        _orig_fsync(fd)


def fdatasync(fd: Any, /) -> None:
    """Flush a file's data to disk; on a real OS thread if file I/O is offloaded."""
    if _offload_files:
        _offloaded("os.fdatasync()", _orig_fdatasync, fd)
    else:
        _orig_fdatasync(fd)


# -- pipes and other pollable fds --------------------------------------------------------------


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
    if _offload_files and _is_file(fd):
        return _file_call("os.read()", _orig_read, fd, length)
    if _green._resolve_loop("os.read()") is not None and _must_wait(fd, _POLLIN):
        _green.wait_readable(fd)
    return _orig_read(fd, length)


def write(fd: int, data: bytes, /) -> int:
    """Write to a file descriptor; on a full pipe, only the calling green thread waits."""
    if _offload_files and _is_file(fd):
        return _file_call("os.write()", _orig_write, fd, data)
    if _green._resolve_loop("os.write()") is not None and _must_wait(fd, _POLLOUT):
        _green.wait_writable(fd)
    return _orig_write(fd, data)
