"""Making unmodified blocking code cooperative: ``patch_all()``, ``patch()``, the patch table.

Theory of operation
-------------------
``_PATCH_TABLE`` is the single, ordered list of what gets patched: each stdlib target module
and the cooperative modules (``greenloop.green.*``) whose ``__implements__`` names replace the
target's attributes. Patching sets attributes on the stdlib module object itself, so code that
does ``import socket`` and later calls ``socket.socket(...)`` gets the cooperative version,
whenever it was imported. Code that copied a name before patching (``from socket import
socket``) keeps the original; that is why patching should happen as early as possible, and
why ``python -m greenloop`` patches before the program's first import.

Three rules keep this safe:

1. **Originals are captured before anything is patched.** The first patch operation imports
   every cooperative module (so their own import-time references are originals) and takes a
   snapshot of every target module's namespace. ``get_original()`` and ``original_module()``
   answer from that snapshot.
2. **Code that reasons about OS threads keeps the originals.** asyncio (its loop, default
   executor, child watchers and self-pipe) and greenloop's own core look at ``threading``,
   ``socket``, ``select`` and ``selectors`` through module globals; those globals are pointed
   at the snapshots (``_KEEP_ORIGINAL``). In particular ``run_in_executor(None, ...)`` and
   ``asyncio.to_thread`` keep using real OS threads, while a ``ThreadPoolExecutor`` that the
   program creates itself runs its workers on green threads, like any other ``Thread``.
3. **Patching is idempotent and all-or-nothing per target.** ``patch(name)`` twice is a no-op;
   a target is marked patched only after all of its names were replaced.

Every cooperative function falls back to the original when it runs on an OS thread that has
no greenloop loop (an executor worker, a thread a C library started), so a patched module is
safe to use from real threads.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading as _threading_at_import
import types
from asyncio import events
from typing import Any

__all__ = ["get_original", "is_patched", "original_module", "patch", "patch_all", "patched_names"]

# The patch table: target module -> cooperative modules, in the order patch_all() applies
# them. Order matters only where one target's cooperative module is used while patching a
# later one; _thread and threading come first so that everything after them may start
# green threads, and ssl comes after socket because the green SSLSocket is a green socket.
_PATCH_TABLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("_thread", ("greenloop.green.thread",)),
    ("threading", ("greenloop.green.threading", "greenloop.green.threading_thread")),
    ("time", ("greenloop.green.time",)),
    ("socket", ("greenloop.green.socket",)),
    ("select", ("greenloop.green.select",)),
    ("selectors", ("greenloop.green.selectors",)),
    ("queue", ("greenloop.green.queue",)),
    ("ssl", ("greenloop.green.ssl",)),
    ("subprocess", ("greenloop.green.subprocess",)),
    ("os", ("greenloop.green.os",)),
    ("signal", ("greenloop.green.signal",)),
)
_TARGETS = tuple(target for target, _ in _PATCH_TABLE)
# Names accepted by patch() / is_patched() besides the targets themselves. DNS resolution is
# part of the socket module (getaddrinfo, gethostbyname, ...).
_ALIASES = {"thread": "_thread", "dns": "socket"}

# Modules whose globals must keep seeing the original modules (rule 2 above): any module of
# these packages that holds one of these names as a module global gets the snapshot instead.
_KEEP_ORIGINAL_PACKAGES = ("asyncio", "greenloop._", "concurrent.futures.process")
_KEEP_ORIGINAL_NAMES = ("threading", "_thread", "socket", "select", "selectors", "signal")

_snapshots: dict[str, types.ModuleType] = {}
_patched: dict[str, dict[str, Any]] = {}  # target -> {name: original} for patched targets
_lock = _threading_at_import.RLock()  # captured at import: always the OS-level original


def _canonical(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name not in _TARGETS:
        raise ValueError(
            f"greenloop cannot patch {name!r}; the patchable modules are: "
            + ", ".join(repr(t) for t in _TARGETS)
        )
    return name


def _snapshot(target: str) -> types.ModuleType:
    """A module object holding ``target``'s namespace as it was before any patching."""
    snap = _snapshots.get(target)
    if snap is None:
        module = importlib.import_module(target)
        snap = types.ModuleType(target, module.__doc__)
        snap.__dict__.update(module.__dict__)
        snap.__dict__["__greenloop_original__"] = True
        _snapshots[target] = snap
    return snap


def _prepare() -> None:
    """Rule 1: import every cooperative module, then snapshot every target, before patching."""
    if len(_snapshots) == len(_TARGETS):
        return
    for target in _TARGETS:
        _snapshot(target)
    importlib.import_module("greenloop.green._realthreads")
    for _, coops in _PATCH_TABLE:
        for coop in coops:
            importlib.import_module(coop)


def original_module(target: str) -> types.ModuleType:
    """The unpatched namespace of a patch-table module (``"threading"``, ``"socket"``, ...).

    Cooperative modules use it to reach the blocking originals they fall back to.
    """
    return _snapshot(_canonical(target))


def get_original(module: str, name: str) -> Any:
    """The original (unpatched) ``module.name``; the current value if it was never patched."""
    target = _ALIASES.get(module, module)
    if target in _TARGETS:
        snap = _snapshot(target)
        try:
            return snap.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {target!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def is_patched(name: str) -> bool:
    """Whether ``patch(name)`` (or ``patch_all()``) has replaced that module's blocking calls."""
    return _canonical(name) in _patched


def patched_names(name: str) -> tuple[str, ...]:
    """The attribute names that patching ``name`` replaces (empty before it is patched)."""
    return tuple(_patched.get(_canonical(name), ()))


def _check_context(what: str) -> None:
    if _threading_at_import.current_thread() is not _threading_at_import.main_thread():
        raise RuntimeError(
            f"greenloop.{what} must be called from the main thread, before other threads "
            "start: patching replaces module attributes that every thread shares"
        )
    loop = events._get_running_loop()
    if loop is not None:
        from ._loop import Loop

        if not isinstance(loop, Loop):
            raise RuntimeError(
                f"greenloop.{what} was called while a {type(loop).__module__}."
                f"{type(loop).__qualname__} is running: patched blocking calls only cooperate "
                "on a greenloop loop. Patch before starting the loop (first thing in the "
                "program, or run it with `python -m greenloop app.py`), and run it with "
                "greenloop.run(main()) or asyncio.run(main(), loop_factory=greenloop.new_event_loop)"
            )


def _implements(coop: types.ModuleType) -> list[str]:
    names = getattr(coop, "__implements__", None)
    if names is None:
        raise RuntimeError(f"{coop.__name__} does not declare __implements__")
    return list(names)


def _patch_target(target: str) -> None:
    if target in _patched:
        return
    module = importlib.import_module(target)
    replacements: dict[str, Any] = {}
    for coop_name in dict(_PATCH_TABLE)[target]:
        coop = importlib.import_module(coop_name)
        for attr in _implements(coop):
            replacements[attr] = getattr(coop, attr)
    hook = getattr(importlib.import_module(dict(_PATCH_TABLE)[target][-1]), "_before_patch", None)
    if hook is not None:
        hook()  # a last check that may refuse (e.g. ssl objects that cannot be converted)
    snap = _snapshot(target)
    originals = {attr: snap.__dict__.get(attr) for attr in replacements}
    for attr, value in replacements.items():
        setattr(module, attr, value)
    _patched[target] = originals
    for coop_name in dict(_PATCH_TABLE)[target]:
        after = getattr(importlib.import_module(coop_name), "_after_patch", None)
        if after is not None:
            after()
    _keep_originals()


def _keep_originals() -> None:
    """Rule 2: modules that reason about OS threads keep seeing the unpatched modules."""
    for modname, module in list(sys.modules.items()):
        if module is None or not modname.startswith(_KEEP_ORIGINAL_PACKAGES):
            continue
        if modname.startswith("greenloop.green"):
            continue
        namespace = getattr(module, "__dict__", None)
        if namespace is None:
            continue
        for name in _KEEP_ORIGINAL_NAMES:
            value = namespace.get(name)
            if isinstance(value, types.ModuleType) and value is sys.modules.get(name):
                namespace[name] = _snapshot(name)
    # asyncio's default executor: real OS threads even though threading is patched.
    if "threading" in _patched:
        from .green import _realthreads

        _realthreads.install_default_executor()


def patch(name: str) -> None:
    """Patch one module of the table (``"socket"``, ``"time"``, ...); idempotent."""
    target = _canonical(name)
    with _lock:
        _check_context(f"patch({name!r})")
        _prepare()
        _patch_target(target)


def patch_all(*, file_io: bool | None = None) -> None:
    """Make every blocking call of the stdlib modules in the patch table cooperative.

    Idempotent. Call it first thing in the program (or run the program with
    ``python -m greenloop``): modules imported earlier keep any names they copied.

    ``file_io=True`` also runs ``os`` I/O on regular files (``read``, ``write``, ``pread``,
    ``pwrite``, ``fsync``, ``fdatasync``) on real OS threads while only the caller waits
    (see ``greenloop.green.os``). ``None`` (the default) takes it from the environment:
    ``GREENLOOP_FILE_IO=1`` turns it on, which is how ``python -m greenloop`` opts in.
    A later ``patch_all(file_io=...)`` with an explicit value changes the setting.
    """
    if file_io is not None and not isinstance(file_io, bool):
        raise TypeError(f"file_io must be True, False or None, not {file_io!r}")
    with _lock:
        _check_context("patch_all()")
        _prepare()
        for target in _TARGETS:
            _patch_target(target)
        if file_io is None:
            file_io = os.environ.get("GREENLOOP_FILE_IO", "") not in ("", "0")
            if not file_io:
                return  # an earlier explicit choice stands
        from .green import os as green_os

        green_os.set_file_io_offload(file_io)
