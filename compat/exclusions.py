"""What the conformance run leaves out of ``test.test_asyncio``, per Python version, and why.

The rule (from the issue): every test that exercises an event loop through asyncio's public
API runs against greenloop. The only tests left out are those whose *subject* is one of
CPython's private implementation classes or helpers: they construct that private class
themselves (often with a mocked selector or the ``TestLoop`` virtual-clock double), so the
loop under test never enters the picture, or they assert on internals that greenloop replaces
on purpose (``BaseEventLoop._run_once``). Nothing else may be added here; in particular a test
that fails on greenloop is a greenloop bug to fix, never an exclusion.

A target is a test id relative to ``test.test_asyncio``: a module (``test_selector_events``),
a class (``test_base_events.BaseEventLoopTests``) or a single test. The runner fails loudly if
a target matches no test on the running Python, so stale entries cannot pile up.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

__all__ = ["Exclusion", "exclusions_for", "matches"]


@dataclass(frozen=True)
class Exclusion:
    target: str
    reason: str


# Left out on every supported version (the test classes exist unchanged on 3.11-3.13).
_COMMON: tuple[Exclusion, ...] = (
    Exclusion(
        "test_base_events.BaseEventTests",
        "unit tests of the private helper base_events._ipaddr_info; no event loop involved",
    ),
    Exclusion(
        "test_base_events.BaseEventLoopTests",
        "constructs the private base_events.BaseEventLoop itself (mocked selector and "
        "_process_events) and drives its internals such as _run_once and _add_callback, "
        "which greenloop replaces with its own run loop",
    ),
    Exclusion(
        "test_base_events.BaseLoopSockSendfileTests",
        "constructs the private selector_events.BaseSelectorEventLoop itself to test its "
        "generic sendfile fallback",
    ),
    Exclusion(
        "test_base_events.TestSelectorUtils",
        "unit test of the private helper base_events._set_nodelay; no event loop involved",
    ),
    Exclusion(
        "test_selector_events",
        "unit tests of the private selector loop and transport classes "
        "(a BaseSelectorEventLoop subclass over a mock selector, _SelectorSocketTransport, "
        "_SelectorDatagramTransport) on mocks and the TestLoop double",
    ),
    Exclusion(
        "test_proactor_events",
        "unit tests of the private Windows proactor classes (BaseProactorEventLoop, "
        "_ProactorSocketTransport) driven by mocks",
    ),
    Exclusion(
        "test_windows_events",
        "Windows-only private classes (IocpProactor, _WindowsSelectorEventLoop); greenloop is "
        "a POSIX selector loop",
    ),
    Exclusion("test_windows_utils", "Windows-only private module asyncio.windows_utils"),
    Exclusion(
        "test_sslproto.SslProtoHandshakeTests",
        "drives the private sslproto.SSLProtocol state machine directly with mock transports "
        "and a mock SSL object",
    ),
    Exclusion(
        "test_subprocess.SubprocessTransportTests",
        "tests the private base_subprocess.BaseSubprocessTransport on the TestLoop double",
    ),
    Exclusion(
        "test_unix_events.UnixReadPipeTransportTests",
        "tests the private unix_events._UnixReadPipeTransport with a mocked os module on the TestLoop double",
    ),
    Exclusion(
        "test_unix_events.UnixWritePipeTransportTests",
        "tests the private unix_events._UnixWritePipeTransport with a mocked os module on the "
        "TestLoop double",
    ),
    Exclusion(
        "test_unix_events.BaseChildWatcherTests",
        "tests the private unix_events.BaseChildWatcher._do_waitpid",
    ),
    Exclusion(
        "test_unix_events.SafeChildWatcherTests",
        "pokes SafeChildWatcher's private state (_callbacks, _zombies) under a mocked "
        "os.waitpid on the TestLoop double",
    ),
    Exclusion(
        "test_unix_events.FastChildWatcherTests",
        "pokes FastChildWatcher's private state (_callbacks, _zombies) under a mocked "
        "os.waitpid on the TestLoop double",
    ),
)

# Per version: (major, minor) -> exclusions. 3.12 and 3.13 add test modules and classes
# (test_eager_task_factory, test_staggered, queue shutdown, TestServer2, TestFork, ...) but
# none of them is a test of a private implementation class, so the lists are the same today.
_BY_VERSION: dict[tuple[int, int], tuple[Exclusion, ...]] = {
    (3, 11): _COMMON,
    (3, 12): _COMMON,
    (3, 13): _COMMON,
}


def exclusions_for(version: tuple[int, int] | None = None) -> tuple[Exclusion, ...]:
    """The exclusions of ``version`` (default: the running interpreter)."""
    key = version if version is not None else (sys.version_info[0], sys.version_info[1])
    try:
        return _BY_VERSION[key]
    except KeyError:
        supported = ", ".join(f"{a}.{b}" for a, b in sorted(_BY_VERSION))
        raise SystemExit(
            f"compat: no exclusion list for Python {key[0]}.{key[1]} (supported: {supported}); "
            "add one to compat/exclusions.py"
        ) from None


def matches(target: str, test_id: str) -> bool:
    """Whether ``test_id`` (relative to test.test_asyncio) falls under ``target``."""
    return test_id == target or test_id.startswith(target + ".")
