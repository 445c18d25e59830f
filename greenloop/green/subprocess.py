"""Cooperative ``subprocess``: ``Popen.wait``/``communicate``, ``run``, ``check_output``, ``call``.

The stdlib already does most of the work: ``Popen.wait`` calls ``os.waitpid`` (green: a
pidfd wait) or, with a timeout, polls with ``time.sleep`` (green); ``Popen._communicate``
multiplexes the pipes with ``_PopenSelector`` (here the green ``PollSelector``) and honours
timeouts. What is left is ``communicate()``'s shortcut for a single pipe, which does a plain
blocking ``read()`` on it: ``Popen`` here takes the selector path on a loop, except when
stdin is the only pipe and the input fits in one atomic pipe write (``PIPE_BUF``), where the
stdlib's shortcut cannot block for long (then the wait for the child is cooperative).
``run``, ``check_output`` and ``call`` look ``Popen`` up in the module, so they get this one.
"""

from __future__ import annotations

import select as _select
import subprocess as _subprocess
import time as _time
from typing import Any

from greenloop import _green

from .selectors import PollSelector

__implements__ = ["Popen", "_PopenSelector"]
__all__ = ["Popen"]

_PopenSelector = PollSelector
_monotonic = _time.monotonic
_PIPE_BUF = _select.PIPE_BUF


def _fits_in_a_pipe_write(data: Any) -> bool:
    """Whether ``data`` goes into a pipe in one atomic write (at most PIPE_BUF bytes)."""
    if not data:
        return True
    if isinstance(data, str):
        return len(data) * 4 <= _PIPE_BUF  # at most 4 bytes a character once encoded
    return len(memoryview(data).cast("B")) <= _PIPE_BUF


class Popen(_subprocess.Popen):  # type: ignore[type-arg]
    """``subprocess.Popen`` whose ``communicate()`` never blocks the loop."""

    # The stdlib's private state this class drives (typeshed omits it).
    _communication_started: bool
    _sigint_wait_secs: float

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        if _green._resolve_loop("Popen.communicate()") is None:
            return super().communicate(input, timeout)  # type: ignore[no-any-return]
        if self._communication_started and input:
            raise ValueError("Cannot send input after starting communication")
        if (
            timeout is None
            and not self._communication_started
            and self.stdout is None
            and self.stderr is None
            and _fits_in_a_pipe_write(input)
        ):
            # The stdlib's own shortcut: write the input (if any) to stdin in one write that
            # cannot block for long, close it, then wait (cooperatively: os.waitpid is green).
            return super().communicate(input, timeout)  # type: ignore[no-any-return]
        endtime = None if timeout is None else _monotonic() + timeout
        try:
            stdout, stderr = self._communicate(input, endtime, timeout)  # type: ignore[attr-defined]
        except KeyboardInterrupt:
            # As the stdlib does: give the child a moment to exit on the same Ctrl-C.
            wait = self._sigint_wait_secs
            if timeout is not None:
                wait = min(wait, self._remaining_time(endtime))  # type: ignore[attr-defined]
            self._sigint_wait_secs = 0
            try:
                self._wait(timeout=wait)  # type: ignore[attr-defined]
            except _subprocess.TimeoutExpired:
                pass
            raise
        finally:
            self._communication_started = True
        self.wait(timeout=self._remaining_time(endtime))  # type: ignore[attr-defined]
        return stdout, stderr
