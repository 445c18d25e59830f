"""Per-module adaptations: where a test module builds its own loop double, give it a real loop.

test_pep492 and test_runners are about the public API (``async with`` on locks, coroutine
introspection, ``asyncio.run``, ``asyncio.Runner``) but run it on ``asyncio.BaseEventLoop()``
with a mocked selector and mocked ``_process_events`` / ``_write_to_self``, which only exist to
make the abstract base class runnable. Those mocks poke asyncio internals that greenloop's run
loop does not go through, so the helper that builds the double is replaced, in *both* runs (the
reference must run the same test code), by one that returns a real loop of the loop under test.
Everything the tests assert on is kept: test_runners' ``shutdown_ag_run`` flag still records
that ``shutdown_asyncgens()`` ran.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from ._loops import make_loop

__all__ = ["adapt"]


def _adapt_runners(module: ModuleType) -> None:
    def new_loop(self: Any) -> Any:
        loop: Any = make_loop()
        loop.shutdown_ag_run = False
        real_shutdown_asyncgens = loop.shutdown_asyncgens

        async def shutdown_asyncgens() -> None:
            loop.shutdown_ag_run = True
            await real_shutdown_asyncgens()

        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop

    module.BaseTest.new_loop = new_loop


def _adapt_pep492(module: ModuleType) -> None:
    base = module.BaseTest
    parent_setup = super(base, base).setUp  # test_utils.TestCase.setUp, unbound

    def setUp(self: Any) -> None:
        parent_setup(self)
        self.loop = make_loop()
        self.set_event_loop(self.loop)

    base.setUp = setUp


_ADAPTERS: dict[str, Callable[[ModuleType], None]] = {
    "test_pep492": _adapt_pep492,
    "test_runners": _adapt_runners,
}


def adapt(module_name: str, module: ModuleType) -> bool:
    """Apply ``module_name``'s adaptation to the imported test module; True if there was one."""
    adapter = _ADAPTERS.get(module_name)
    if adapter is None:
        return False
    adapter(module)
    return True
