"""asyncio's default executor on real OS threads, whatever ``threading`` has been patched into.

``loop.run_in_executor(None, ...)`` and ``asyncio.to_thread()`` exist to run code that must
not run on the loop's thread: after ``patch_all()`` they must still get real OS threads.
asyncio creates that executor as ``concurrent.futures.ThreadPoolExecutor(...)``, whose module
looks up ``threading.Thread``, ``queue.SimpleQueue`` and (through ``_base.Future``)
``threading.Condition`` at call time: after patching those are green.

So this module runs a private copy of ``concurrent.futures.thread`` whose globals name the
unpatched ``threading`` and ``queue`` and whose futures wait on an unpatched Condition (the
worker that resolves them is a real thread). ``RealThreadPoolExecutor`` is a subclass of the
public ``ThreadPoolExecutor`` with the copy's methods, so ``isinstance`` checks (asyncio's
``set_default_executor``) still hold. ``install_default_executor()`` points asyncio's
``base_events`` at it. Reusing the running interpreter's own source keeps the executor's
behaviour exactly that of the Python version in use.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.thread as _thread_pool
import importlib.util
import os
import sys
import types
from concurrent.futures import _base
from typing import Any

__all__ = [
    "RealThreadPoolExecutor",
    "install_default_executor",
    "internal_executor",
    "internal_threads_alive",
    "threading",
]


def _original(name: str) -> types.ModuleType:
    from greenloop.monkey import original_module

    return original_module(name)


def _rebind(func: types.FunctionType, namespace: dict[str, Any]) -> types.FunctionType:
    new = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
    new.__kwdefaults__ = func.__kwdefaults__
    new.__qualname__ = func.__qualname__
    new.__doc__ = func.__doc__
    new.__dict__.update(func.__dict__)
    return new


def _rebind_attr(value: Any, namespace: dict[str, Any]) -> Any:
    if isinstance(value, types.FunctionType):
        return _rebind(value, namespace)
    if isinstance(value, property):
        parts: list[Any] = [
            _rebind(f, namespace) if isinstance(f, types.FunctionType) else f
            for f in (value.fget, value.fset, value.fdel)
        ]
        return property(parts[0], parts[1], parts[2], value.__doc__)
    if isinstance(value, (classmethod, staticmethod)) and isinstance(value.__func__, types.FunctionType):
        return type(value)(_rebind(value.__func__, namespace))
    return value


def _sealed_threading() -> types.ModuleType:
    """The original ``threading``, immune to the patching of its own module's globals.

    Patching sets attributes on the ``threading`` module, and the original classes look
    their collaborators up there at call time (``Event()`` makes a ``Condition()``,
    ``Thread()`` makes an ``Event()``), so after ``patch_all()`` even the original classes
    would build green parts. Real threads need real parts: here every function and class
    method of the original module is re-created over a private copy of the unpatched
    namespace. The copy shares the module's state (``_active``, ``_limbo``, the shutdown
    locks), so real threads started here are seen by ``threading.enumerate()`` and joined
    at exit as usual; the classes subclass the originals, so ``isinstance`` still holds.
    """
    snap = _original("threading")
    sealed = types.ModuleType("threading", snap.__doc__)
    namespace: dict[str, Any] = sealed.__dict__
    namespace.update(snap.__dict__)
    for name, value in snap.__dict__.items():
        if isinstance(value, types.FunctionType) and value.__module__ == "threading":
            namespace[name] = _rebind(value, namespace)
        elif isinstance(value, type) and value.__module__ == "threading" and name != "BrokenBarrierError":
            attrs = {
                key: _rebind_attr(attr, namespace)
                for key, attr in vars(value).items()
                if key not in ("__dict__", "__weakref__")
            }
            cls = type(value.__name__, (value,), attrs)
            cls.__qualname__ = value.__qualname__
            cls.__module__ = "threading"
            namespace[name] = cls
    return sealed


#: The unpatched ``threading`` for code that must use real OS threads and locks.
threading = _sealed_threading()


def _load_private_pool() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("greenloop._real_thread_pool", _thread_pool.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base = types.ModuleType("concurrent.futures._base")
    base.__dict__.update(_base.__dict__)

    class Future(_base.Future):  # type: ignore[type-arg]
        """A Future resolved by a real thread: its waiters block on an OS-level Condition."""

        def __init__(self) -> None:
            super().__init__()
            self._condition = threading.Condition()

    Future.__module__ = "concurrent.futures._base"
    base.Future = Future  # type: ignore[attr-defined]
    module.__dict__.update(
        threading=threading,
        queue=_original("queue"),
        _base=base,
        _global_shutdown_lock=threading.Lock(),
    )
    return module


_pool = _load_private_pool()


class RealThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """A ThreadPoolExecutor whose workers are real OS threads even after ``patch_all()``."""


for _name, _value in vars(_pool.ThreadPoolExecutor).items():
    if isinstance(_value, types.FunctionType):
        setattr(RealThreadPoolExecutor, _name, _value)
del _name, _value


class _ExecutorFactory(type):
    """Metaclass: calling the class makes a real-thread pool; isinstance stays the public one."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return RealThreadPoolExecutor(*args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, concurrent.futures.ThreadPoolExecutor)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, concurrent.futures.ThreadPoolExecutor)


class _DefaultExecutorClass(metaclass=_ExecutorFactory):
    """Stands for ``concurrent.futures.ThreadPoolExecutor`` inside asyncio.base_events."""


def install_default_executor() -> None:
    """Make asyncio's default executor (run_in_executor(None), to_thread) use real threads."""
    base_events = sys.modules.get("asyncio.base_events")
    if base_events is None:
        return
    current = getattr(base_events, "concurrent", None)
    if getattr(current, "__greenloop_original__", False):
        return  # already installed
    futures = types.ModuleType("concurrent.futures")
    futures.__dict__.update(concurrent.futures.__dict__)
    futures.ThreadPoolExecutor = _DefaultExecutorClass  # type: ignore[attr-defined]
    package = types.ModuleType("concurrent")
    package.futures = futures  # type: ignore[attr-defined]
    package.__greenloop_original__ = True  # type: ignore[attr-defined]
    base_events.concurrent = package  # type: ignore[attr-defined]


# -- greenloop's own OS threads ------------------------------------------------------------------

# The green socket's DNS lookups run here, not on the loop's default executor. The stdlib
# resolves in the calling thread, so a program never sees a resolver thread: these are not
# counted by the patched ``_thread._count()`` (test.support's thread-leak checks compare it
# before and after a test) nor kept in ``threading._dangling``, and ``set_default_executor``
# (the program's own pool) is not used up by lookups it did not ask to offload.
_internal_pool: RealThreadPoolExecutor | None = None


def _hide_worker() -> None:
    threading._dangling.discard(threading.current_thread())  # type: ignore[attr-defined]


def internal_executor() -> RealThreadPoolExecutor:
    """The process's pool of greenloop-internal OS threads (created at first use)."""
    global _internal_pool
    pool = _internal_pool
    if pool is None:
        pool = _internal_pool = RealThreadPoolExecutor(
            thread_name_prefix="greenloop-resolver", initializer=_hide_worker
        )
    return pool


def internal_threads_alive() -> int:
    """How many of greenloop's internal OS threads are running."""
    pool = _internal_pool
    if pool is None:
        return 0
    return sum(1 for t in list(pool._threads) if t.is_alive())  # type: ignore[attr-defined]


def _forget_internal_pool() -> None:
    # A forked child has none of the parent's threads: the pool's bookkeeping (idle
    # semaphore, thread set) would make submit() wait for workers that do not exist.
    global _internal_pool
    _internal_pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_internal_pool)
