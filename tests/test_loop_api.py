"""The event loop's own API, on asyncio's loop (the reference) and on greenloop.

Where asyncio defines a behaviour, asyncio is the spec: the bad-input tests compare the
exception type and message against asyncio's loop in the same test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import logging
import os
import re
import socket
import sys
import threading
import time

import pytest
from _util import LOOP_FACTORIES, TIMEOUT, assert_same_error, error_of, live_greenlets, needs_epoll, run

import greenloop


def _asyncio_has_gh_130145() -> bool:
    """CPython gh-130145 (3.13.0-3.13.2): a run_forever() that fails because the loop is
    already running resets the loop's running state on its way out. Probed, not guessed
    from the version."""
    probe = asyncio.SelectorEventLoop()

    async def main():
        try:
            probe.run_forever()
        except RuntimeError:
            pass
        return probe.is_running()

    try:
        return not probe.run_until_complete(main())
    finally:
        probe._thread_id = None  # undo the damage so close() works
        probe.close()


CPYTHON_GH_130145 = _asyncio_has_gh_130145()

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def _noop() -> None:
    pass


# -- callbacks and timers ------------------------------------------------------------------


def test_call_soon_runs_callbacks_fifo(loop):
    order = []

    def cb(i):
        order.append(i)
        if i < 50:
            # Scheduled from a callback: runs after everything already queued.
            loop.call_soon(cb, i + 100)

    for i in range(50):
        loop.call_soon(cb, i)
    loop.call_soon(cb, 1000)
    run(loop, asyncio.sleep(0.01))
    assert order == [*range(50), 1000, *range(100, 150)]


def test_call_soon_passes_args_and_context(loop):
    seen = []
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")
    handle = loop.call_soon(lambda a, b: seen.append((a, b, var.get())), 1, "two", context=ctx)
    assert isinstance(handle, asyncio.Handle)
    loop.call_soon(lambda: seen.append(var.get()))
    run(loop, asyncio.sleep(0))
    assert seen == [(1, "two", "in ctx"), "unset"]


def test_cancelled_handle_does_not_run(loop):
    seen = []
    handle = loop.call_soon(seen.append, "cancelled")
    loop.call_soon(seen.append, "kept")
    handle.cancel()
    assert handle.cancelled()
    run(loop, asyncio.sleep(0))
    assert seen == ["kept"]


def test_call_later_orders_by_deadline(loop):
    order = []
    for delay in (0.04, 0.01, 0.03, 0.0, 0.02):
        loop.call_later(delay, order.append, delay)
    run(loop, asyncio.sleep(0.08))
    assert order == [0.0, 0.01, 0.02, 0.03, 0.04]


def test_timer_due_now_runs_after_ready_callbacks(loop):
    # asyncio moves due timers to the end of the ready queue, after what call_soon queued.
    order = []
    loop.call_later(0, order.append, "later(0)")
    loop.call_later(-5, order.append, "later(-5)")
    loop.call_soon(order.append, "soon")
    run(loop, asyncio.sleep(0.01))
    assert order == ["soon", "later(-5)", "later(0)"]


def test_call_at_and_timer_handle(loop):
    order = []
    now = loop.time()
    h2 = loop.call_at(now + 0.02, order.append, "second")
    h1 = loop.call_at(now + 0.01, order.append, "first")
    assert isinstance(h1, asyncio.TimerHandle)
    assert h1.when() == now + 0.01
    assert h2.when() == now + 0.02
    before = loop.time()
    run(loop, asyncio.sleep(0.05))
    assert order == ["first", "second"]
    assert loop.time() - before >= 0.02


@pytest.mark.parametrize("debug", [False, True])
def test_handles_are_asyncios(loop, debug):
    # greenloop builds its handles without asyncio's call chain; what users see is the same:
    # the classes, the reprs, the errors, and in debug mode the creation traceback, which
    # ends at the caller's line.
    loop.set_debug(debug)

    def noop():
        pass

    soon = loop.call_soon(noop)
    line = sys._getframe().f_lineno - 1
    later = loop.call_later(10, noop)
    at = loop.call_at(loop.time() + 10, noop)
    assert type(soon).__name__ == "Handle" and isinstance(soon, asyncio.Handle)
    assert type(later).__name__ == type(at).__name__ == "TimerHandle"
    assert isinstance(later, asyncio.TimerHandle) and isinstance(at, asyncio.TimerHandle)
    assert repr(soon).startswith("<Handle test_handles_are_asyncios.<locals>.noop()")
    assert repr(later).startswith("<TimerHandle when=")
    if debug:
        assert soon._source_traceback[-1][:3] == (__file__, line, "test_handles_are_asyncios")
        assert later._source_traceback[-1][2] == "test_handles_are_asyncios"
    else:
        assert soon._source_traceback is None and later._source_traceback is None
    with pytest.raises(TypeError, match="delay must not be None"):
        loop.call_later(None, noop)
    with pytest.raises(TypeError, match="when cannot be None"):
        loop.call_at(None, noop)
    later.cancel()
    at.cancel()
    run(loop, asyncio.sleep(0))
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon(noop)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_later(1, noop)


def test_cancelled_timers_do_not_run(loop):
    seen = []
    keep = loop.call_later(0.01, seen.append, "kept")
    drop = loop.call_later(0.005, seen.append, "dropped")
    drop.cancel()
    assert drop.cancelled() and not keep.cancelled()
    run(loop, asyncio.sleep(0.03))
    assert seen == ["kept"]


def test_many_cancelled_timers(loop):
    # Enough cancelled timers for the loop to compact its heap: the live ones keep order.
    fired = []
    handles = [loop.call_later(0.001 * (i % 20), fired.append, i) for i in range(600)]
    when = {i: h.when() for i, h in enumerate(handles)}
    for i, h in enumerate(handles):
        if i % 5:
            h.cancel()
    # Cancel more timers while the loop runs, from a callback.
    late = [loop.call_later(0.05, fired.append, -i) for i in range(1, 200)]
    loop.call_soon(lambda: [h.cancel() for h in late])
    run(loop, asyncio.sleep(0.1))
    assert sorted(fired) == [i for i in range(600) if i % 5 == 0]
    assert [when[i] for i in fired] == sorted(when[i] for i in fired)


def test_call_soon_threadsafe_wakes_a_sleeping_loop(loop):
    # The loop sleeps with nothing due for 10 s; the thread's callback must wake it now.
    done = loop.create_future()
    watchdog = loop.call_later(TIMEOUT, done.cancel)

    def from_thread():
        time.sleep(0.05)
        loop.call_soon_threadsafe(done.set_result, threading.get_ident())

    t = threading.Thread(target=from_thread)
    t.start()
    start = loop.time()
    thread_id = loop.run_until_complete(done)
    elapsed = loop.time() - start
    t.join()
    watchdog.cancel()
    assert thread_id == t.ident
    assert elapsed < TIMEOUT / 2


def test_call_soon_threadsafe_from_many_threads(loop):
    results = []
    n_threads, per_thread = 8, 200
    finished = loop.create_future()

    def add(item):
        results.append(item)
        if len(results) == n_threads * per_thread:
            finished.set_result(None)

    def worker(k):
        for i in range(per_thread):
            loop.call_soon_threadsafe(add, (k, i))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    run(loop, finished)
    for t in threads:
        t.join()
    # FIFO per thread.
    for k in range(n_threads):
        assert [i for kk, i in results if kk == k] == list(range(per_thread))


def test_time_is_monotonic_clock(loop):
    t0 = loop.time()
    assert abs(t0 - time.monotonic()) < 1.0
    run(loop, asyncio.sleep(0.01))
    assert loop.time() >= t0 + 0.01


# -- running and stopping --------------------------------------------------------------------


def test_run_until_complete_result_and_exception(loop):
    async def ok():
        await asyncio.sleep(0)
        return 42

    async def bad():
        await asyncio.sleep(0)
        raise ValueError("boom")

    assert loop.run_until_complete(ok()) == 42
    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(bad())
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "fut")
    assert loop.run_until_complete(fut) == "fut"
    assert not loop.is_running()


def test_is_running_and_is_closed(loop):
    seen = []

    async def probe():
        seen.append((loop.is_running(), asyncio.get_running_loop() is loop))

    assert not loop.is_running()
    assert not loop.is_closed()
    loop.run_until_complete(probe())
    assert seen == [(True, True)]
    assert not loop.is_running()
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.get_running_loop()
    loop.close()
    assert loop.is_closed()


def test_stop_inside_callback_finishes_the_iteration(loop):
    order = []

    def stopper():
        order.append("stop")
        loop.stop()
        loop.call_soon(order.append, "next iteration")

    loop.call_soon(stopper)
    loop.call_soon(order.append, "same iteration")
    loop.run_forever()
    assert order == ["stop", "same iteration"]
    assert not loop.is_running()
    # The queued callback runs on the next run.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == ["stop", "same iteration", "next iteration"]


def test_stop_before_run_forever_runs_one_iteration(loop):
    order = []
    loop.call_soon(lambda: (order.append("a"), loop.call_soon(order.append, "b")))
    loop.stop()
    loop.run_forever()
    assert order == ["a"]
    loop.stop()
    loop.run_forever()
    assert order == ["a", "b"]


def test_run_forever_restores_asyncgen_hooks_and_running_loop(loop):
    hooks_before = sys.get_asyncgen_hooks()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert sys.get_asyncgen_hooks() == hooks_before
    assert asyncio._get_running_loop() is None


def test_stopped_before_future_completed(loop):
    def op(lp):
        lp.call_soon(lp.stop)
        lp.run_until_complete(lp.create_future())

    assert assert_same_error(loop, op) == "Event loop stopped before Future completed."
    assert loop.run_until_complete(asyncio.sleep(0, "usable")) == "usable"


def test_base_exception_in_callback_propagates_and_loop_stays_usable(loop):
    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
    assert asyncio._get_running_loop() is None
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


def test_system_exit_in_task_propagates(loop):
    async def main():
        await asyncio.sleep(0)
        raise SystemExit(3)

    with pytest.raises(SystemExit) as info:
        loop.run_until_complete(main())
    assert info.value.code == 3
    assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"


def test_run_in_running_loop_errors(loop):
    msgs = {}

    async def main():
        fut = loop.create_future()
        fut.set_result(None)
        for name, call in [
            ("run_until_complete", lambda: loop.run_until_complete(fut)),
            ("close", loop.close),
        ]:
            exc_type, msgs[name] = error_of(call)
            assert exc_type is RuntimeError
            assert loop.is_running()
            assert asyncio.get_running_loop() is loop

    loop.run_until_complete(main())
    assert msgs == {
        "run_until_complete": "This event loop is already running",
        "close": "Cannot close a running event loop",
    }
    assert not loop.is_closed()


def test_run_forever_in_running_loop(loop, loop_name):
    if loop_name == "asyncio" and CPYTHON_GH_130145:
        pytest.skip("CPython gh-130145: a failed nested run_forever() marks asyncio's loop not running")

    async def main():
        assert error_of(loop.run_forever) == (RuntimeError, "This event loop is already running")
        # The failed call must leave the running loop alone.
        assert loop.is_running()
        assert asyncio.get_running_loop() is loop
        await asyncio.sleep(0)
        return "still running"

    assert loop.run_until_complete(main()) == "still running"


@pytest.mark.parametrize("other_kind", ["asyncio", "greenloop"])
def test_run_while_another_loop_runs(loop, other_kind):
    other = LOOP_FACTORIES[other_kind]()
    errors = []

    async def main():
        fut = other.create_future()
        fut.set_result(None)
        errors.append(error_of(other.run_until_complete, fut))
        errors.append(error_of(other.run_forever))

    try:
        loop.run_until_complete(main())
    finally:
        other.close()
    msg = "Cannot run the event loop while another loop is running"
    assert errors == [(RuntimeError, msg), (RuntimeError, msg)]


def test_future_from_other_loop(loop, loop_factory):
    other = loop_factory()
    try:
        msg = assert_same_error(loop, lambda lp: lp.run_until_complete(asyncio.Future(loop=other)))
    finally:
        other.close()
    assert msg == "The future belongs to a different loop than the one specified as the loop argument"


def test_closed_loop_errors(loop):
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    loop.close()  # a second close is a no-op
    cb = print
    sock_a, sock_b = socket.socketpair()
    try:
        for op in [
            lambda lp: lp.call_soon(cb),
            lambda lp: lp.call_later(1, cb),
            lambda lp: lp.call_at(1, cb),
            lambda lp: lp.call_soon_threadsafe(cb),
            lambda lp: lp.run_forever(),
            lambda lp: lp.run_in_executor(None, cb),
            lambda lp: lp.add_reader(sock_a.fileno(), cb),
            lambda lp: lp.add_writer(sock_a.fileno(), cb),
        ]:
            ref = _closed_reference_loop()
            try:
                expected = error_of(op, ref)
            finally:
                ref.close()
            assert error_of(op, loop) == expected == (RuntimeError, "Event loop is closed")
        coro = _noop()
        try:
            assert error_of(loop.create_task, coro) == (RuntimeError, "Event loop is closed")
            assert error_of(loop.run_until_complete, coro) == (RuntimeError, "Event loop is closed")
        finally:
            coro.close()
    finally:
        sock_a.close()
        sock_b.close()
    # Futures can still be created (asyncio does not check).
    assert isinstance(loop.create_future(), asyncio.Future)


def _closed_reference_loop():
    ref = LOOP_FACTORIES["asyncio"]()
    ref.close()
    return ref


async def _coro_fn():
    pass


def test_bad_callbacks_in_debug_mode(loop):
    # asyncio checks callbacks when they are scheduled only in debug mode.
    def debug(lp):
        lp.set_debug(True)
        return lp

    coro = _coro_fn()
    try:
        msgs = [
            assert_same_error(loop, lambda lp: debug(lp).call_soon(coro)),
            assert_same_error(loop, lambda lp: debug(lp).call_soon_threadsafe(coro)),
            assert_same_error(loop, lambda lp: debug(lp).call_soon(_coro_fn)),
            assert_same_error(loop, lambda lp: debug(lp).call_later(0.1, _coro_fn)),
            assert_same_error(loop, lambda lp: debug(lp).call_at(0.1, coro)),
            assert_same_error(loop, lambda lp: debug(lp).call_soon(42)),
            assert_same_error(loop, lambda lp: debug(lp).call_soon_threadsafe("not callable")),
            assert_same_error(loop, lambda lp: debug(lp).call_later(0.1, None)),
        ]
    finally:
        coro.close()
    assert msgs == [
        "coroutines cannot be used with call_soon()",
        "coroutines cannot be used with call_soon_threadsafe()",
        "coroutines cannot be used with call_soon()",
        "coroutines cannot be used with call_at()",  # call_later() is implemented by call_at()
        "coroutines cannot be used with call_at()",
        "a callable object was expected by call_soon(), got 42",
        "a callable object was expected by call_soon_threadsafe(), got 'not callable'",
        "a callable object was expected by call_at(), got None",
    ]
    assert error_of(loop.call_at, None, print) == (TypeError, "when cannot be None")
    # Nothing bad was queued.
    loop.run_until_complete(asyncio.sleep(0))


def test_bad_callbacks_fail_when_run(loop):
    # Without debug mode the error surfaces when the callback runs, through the exception
    # handler, and the loop carries on.
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    coro = _coro_fn()
    try:
        loop.call_soon(coro)
        loop.call_later(0, 42)
        loop.call_soon_threadsafe("not callable")
        assert run(loop, asyncio.sleep(0.01, "carried on")) == "carried on"
    finally:
        coro.close()
    assert [type(c["exception"]) for c in contexts] == [TypeError] * 3
    assert all(c["message"].startswith("Exception in callback ") for c in contexts)
    assert sorted(str(c["exception"]) for c in contexts) == [
        "'coroutine' object is not callable",
        "'int' object is not callable",
        "'str' object is not callable",
    ]


def test_non_thread_safe_call_in_debug_mode(loop):
    loop.set_debug(True)
    errors = []

    async def main():
        def other_thread():
            errors.append(error_of(loop.call_soon, print))
            errors.append(error_of(loop.call_later, 1, print))

        await loop.run_in_executor(None, other_thread)

    loop.run_until_complete(main())
    msg = "Non-thread-safe operation invoked on an event loop other than the current one"
    assert errors == [(RuntimeError, msg), (RuntimeError, msg)]


# -- futures and tasks -----------------------------------------------------------------------


def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    loop.call_soon(fut.set_result, 7)
    assert loop.run_until_complete(fut) == 7


def test_create_task_name_and_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "task ctx")

    async def body():
        await asyncio.sleep(0)
        me = asyncio.current_task()
        var.set("changed inside")
        return me, var.get()

    async def main():
        t1 = loop.create_task(body(), name="named")
        t2 = loop.create_task(body(), context=ctx)
        assert t1.get_name() == "named"
        assert t2.get_name().startswith("Task-")
        assert isinstance(t1, asyncio.Task)
        assert t1.get_loop() is loop
        if sys.version_info >= (3, 12):
            assert t2.get_context() is ctx
        (me1, v1), (me2, v2) = await asyncio.gather(t1, t2)
        assert me1 is t1 and me2 is t2
        assert v1 == v2 == "changed inside"
        assert var.get() == "unset"  # the task's changes stay in the task's context

    loop.run_until_complete(main())
    assert ctx[var] == "changed inside"


def test_task_factory(loop):
    calls = []

    def factory(lp, coro, **kwargs):
        calls.append(kwargs)
        return asyncio.Task(coro, loop=lp, **kwargs)

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def main():
        t = loop.create_task(asyncio.sleep(0, "r"), name="factory-made")
        assert t.get_name() == "factory-made"
        assert await t == "r"
        ctx = contextvars.copy_context()
        assert await loop.create_task(asyncio.sleep(0, "c"), context=ctx) == "c"
        # asyncio.create_task goes through the factory as well.
        assert await asyncio.create_task(asyncio.sleep(0, "a")) == "a"

    loop.run_until_complete(main())
    # run_until_complete's own task, then the three above; context is passed when given.
    assert len(calls) == 4
    assert "context" in calls[2]
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    assert (
        assert_same_error(loop, lambda lp: lp.set_task_factory(42))
        == "task factory must be a callable or None"
    )


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is new in 3.12")
def test_eager_task_factory(loop):
    loop.set_task_factory(asyncio.eager_task_factory)
    order = []

    async def no_suspend():
        order.append("ran eagerly")
        return 1

    async def suspends():
        order.append("started eagerly")
        await asyncio.sleep(0)
        order.append("resumed")
        return 2

    async def main():
        t1 = loop.create_task(no_suspend())
        assert t1.done() and t1.result() == 1
        t2 = loop.create_task(suspends())
        assert order == ["ran eagerly", "started eagerly"]
        assert not t2.done()
        assert await t2 == 2
        assert order[-1] == "resumed"

    loop.run_until_complete(main())


def test_cancel_task_with_message(loop):
    async def main():
        started = asyncio.Event()

        async def sleeper():
            started.set()
            await asyncio.sleep(TIMEOUT)

        t = loop.create_task(sleeper())
        await started.wait()
        assert t.cancel("because")
        assert t.cancelling() == 1
        with pytest.raises(asyncio.CancelledError, match="because"):
            await t
        assert t.cancelled()

    loop.run_until_complete(main())


def test_task_repr_matches_asyncio(loop):
    async def main():
        t = loop.create_task(asyncio.sleep(0), name="t")
        text = repr(t)
        await t
        return text, repr(t)

    pending, done = loop.run_until_complete(main())
    assert pending.startswith("<Task pending name='t' coro=<sleep() running at ")
    assert done.startswith("<Task finished name='t' coro=<sleep() done, defined at ")
    assert done.endswith(" result=None>")


# -- exception handling ----------------------------------------------------------------------


def test_custom_exception_handler(loop):
    contexts = []

    def handler(lp, context):
        contexts.append((lp, context))

    assert loop.get_exception_handler() is None
    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler

    def failing():
        raise ZeroDivisionError("in callback")

    handle = loop.call_soon(failing)
    loop.call_soon(loop.stop)
    loop.run_forever()  # the failure does not stop the loop
    assert len(contexts) == 1
    lp, context = contexts[0]
    assert lp is loop
    assert context["message"].startswith("Exception in callback ")
    assert "failing" in context["message"]
    assert isinstance(context["exception"], ZeroDivisionError)
    assert context["handle"] is handle

    loop.call_exception_handler({"message": "direct", "extra": 1})
    assert contexts[-1][1] == {"message": "direct", "extra": 1}
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None
    msg = assert_same_error(loop, lambda lp: lp.set_exception_handler("nope"))
    assert msg == "A callable object or None is expected, got 'nope'"


def test_default_exception_handler_logs(loop, loop_errors, caplog):
    def failing():
        raise ZeroDivisionError("logged")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(failing)
        run(loop, asyncio.sleep(0.01))
        loop.call_exception_handler({"message": "called directly"})
    assert [ctx["message"] for ctx in loop_errors][1:] == ["called directly"]
    assert isinstance(loop_errors[0]["exception"], ZeroDivisionError)
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 2
    assert records[0].getMessage().startswith("Exception in callback ")
    assert records[0].exc_info[0] is ZeroDivisionError
    assert records[1].getMessage() == "called directly"
    loop_errors.clear()


def test_error_in_exception_handler(loop, loop_errors, caplog):
    def handler(lp, context):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(lambda: 1 / 0)
        run(loop, asyncio.sleep(0.01))
    assert len(loop_errors) == 1
    assert loop_errors[0]["message"] == "Unhandled error in exception handler"
    assert isinstance(loop_errors[0]["exception"], RuntimeError)
    assert isinstance(loop_errors[0]["context"]["exception"], ZeroDivisionError)
    assert any("Unhandled error in exception handler" in r.getMessage() for r in caplog.records)
    loop_errors.clear()


def test_task_exception_never_retrieved(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def fails():
        raise LookupError("unretrieved")

    loop.create_task(fails())
    run(loop, asyncio.sleep(0.01))
    gc.collect()
    assert [c["message"] for c in contexts] == ["Task exception was never retrieved"]
    assert isinstance(contexts[0]["exception"], LookupError)


# -- debug mode ------------------------------------------------------------------------------


def test_debug_mode_flag(loop):
    assert loop.get_debug() is False
    loop.set_debug(True)
    assert loop.get_debug() is True

    async def main():
        return asyncio.get_running_loop().get_debug()

    assert loop.run_until_complete(main()) is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_debug_mode_logs_slow_callbacks(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05

    def slow_callback():
        time.sleep(0.1)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(slow_callback)
        loop.call_soon(lambda: None)
        run(loop, asyncio.sleep(0.01))
    slow = [r for r in caplog.records if r.name == "asyncio" and "slow_callback" in r.getMessage()]
    assert len(slow) == 1, slow
    assert slow[0].levelno == logging.WARNING
    assert re.fullmatch(r"Executing <Handle .*slow_callback.*> took \d+\.\d{3} seconds", slow[0].getMessage())


def test_debug_mode_reports_never_awaited_coroutine_origin(loop):
    loop.set_debug(True)

    async def forgotten():
        pass

    async def main():
        forgotten()  # never awaited: a RuntimeWarning names where it was created

    with pytest.warns(RuntimeWarning, match="coroutine '.*forgotten' was never awaited") as record:
        loop.run_until_complete(main())
        gc.collect()
    text = str(record[0].message)
    assert "Coroutine created at (most recent call last)" in text
    assert "in main" in text


def test_debug_mode_logs_slow_task_steps(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05

    async def slow():
        time.sleep(0.1)  # noqa: ASYNC251 - blocking on purpose: a slow step

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run(loop, loop.create_task(slow(), name="slow-step"))
    slow_steps = [r.getMessage() for r in caplog.records if "slow-step" in r.getMessage()]
    assert len(slow_steps) == 1, slow_steps
    # (The task's class name is checked by the next test.)
    assert re.fullmatch(r"Executing <\w+ .*name='slow-step'.*> took \d+\.\d{3} seconds", slow_steps[0])


def test_debug_mode_slow_task_step_names_a_task(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05

    async def slow():
        time.sleep(0.1)  # noqa: ASYNC251 - blocking on purpose: a slow step

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run(loop, loop.create_task(slow(), name="slow-step"))
    (message,) = [r.getMessage() for r in caplog.records if "slow-step" in r.getMessage()]
    assert message.startswith("Executing <Task finished name='slow-step' ")


def _run_reporting_slow_steps(loop, caplog, coro, name):
    """Run ``coro`` as a task named ``name`` in debug mode (slow above 0.05 s); return its
    result and the slow-callback reports as (what, seconds)."""
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        result = run(loop, loop.create_task(coro, name=name))
    reports = []
    for record in caplog.records:
        m = re.fullmatch(r"Executing (.*) took (\d+\.\d{3}) seconds", record.getMessage(), re.S)
        if m:
            reports.append((m[1], float(m[2])))
    return result, reports


def test_green_debug_mode_does_not_report_a_blocking_style_wait_in_a_task_as_slow(green_loop, caplog):
    # The step waits 0.3 s in greenloop.sleep() while the loop goes on: the loop never
    # stalled, so nothing is slow (it used to be reported as a 0.3 s callback).
    async def waits() -> str:
        greenloop.sleep(0.3)
        return "woke"

    assert _run_reporting_slow_steps(green_loop, caplog, waits(), "green-wait") == ("woke", [])


def test_green_debug_mode_times_a_task_step_from_its_wake_up(green_loop, caplog):
    # After its blocking-style wait the step stalls the loop for 0.1 s: that is reported,
    # naming the task, and the 0.4 s it spent waiting is not counted.
    async def waits_then_stalls() -> None:
        greenloop.sleep(0.4)
        time.sleep(0.1)  # noqa: ASYNC251 - blocking on purpose: the slow part

    _, reports = _run_reporting_slow_steps(green_loop, caplog, waits_then_stalls(), "stalls-after-wait")
    ((what, seconds),) = reports
    assert "name='stalls-after-wait'" in what
    assert 0.1 <= seconds < 0.4


def test_debug_mode_exception_handler_shows_where_the_handle_was_created(loop, loop_errors, caplog):
    loop.set_debug(True)

    def callback():
        loop.call_exception_handler({"message": "reported from a callback"})

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(callback)
        run(loop, asyncio.sleep(0.01))
    (record,) = [r for r in caplog.records if "reported from a callback" in r.getMessage()]
    text = record.getMessage()
    # The default handler finds the running handle through loop._current_handle.
    assert "Handle created at (most recent call last):" in text
    assert "loop.call_soon(callback)" in text
    assert [c["message"] for c in loop_errors] == ["reported from a callback"]
    loop_errors.clear()


# -- fairness --------------------------------------------------------------------------------


async def _spin(stop: asyncio.Event) -> int:
    """A busy task: always ready, never blocks."""
    n = 0
    while not stop.is_set():
        n += 1
        await asyncio.sleep(0)
    return n


def test_busy_task_does_not_starve_io_timers_or_threads(loop):
    a, b = socket.socketpair()
    a.setblocking(False)

    async def main():
        stop = asyncio.Event()
        spinner = loop.create_task(_spin(stop))
        try:
            loop.call_later(0.05, b.send, b"io")
            assert await loop.sock_recv(a, 10) == b"io"  # I/O is polled between ready callbacks
            fired = loop.create_future()
            loop.call_later(0.02, fired.set_result, "timer")
            assert await fired == "timer"
            from_thread = loop.create_future()
            threading.Timer(0.02, loop.call_soon_threadsafe, (from_thread.set_result, "thread")).start()
            assert await from_thread == "thread"
        finally:
            stop.set()
        assert await spinner > 0

    try:
        run(loop, main())
    finally:
        a.close()
        b.close()


# -- threads ---------------------------------------------------------------------------------


def test_loop_running_in_another_thread(loop, loop_name):
    started = threading.Event()

    def thread_main():
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            asyncio.set_event_loop(None)

    t = threading.Thread(target=thread_main, daemon=True)
    t.start()
    try:
        assert started.wait(TIMEOUT)
        assert loop.is_running()

        async def where():
            await asyncio.sleep(0.001)
            return threading.get_ident(), type(asyncio.get_running_loop())

        results = [asyncio.run_coroutine_threadsafe(where(), loop) for _ in range(10)]
        assert {f.result(TIMEOUT) for f in results} == {(t.ident, type(loop))}
        # The running loop refuses to be run again from this thread as well.
        if not (loop_name == "asyncio" and CPYTHON_GH_130145):
            assert error_of(loop.run_forever) == (RuntimeError, "This event loop is already running")
        assert error_of(loop.close) == (RuntimeError, "Cannot close a running event loop")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(TIMEOUT)
    assert not t.is_alive()
    assert not loop.is_running()
    # A stopped loop can be run again, now from this thread.
    assert loop.run_until_complete(asyncio.sleep(0, "here")) == "here"


def test_stop_from_another_thread_wakes_the_loop(loop):
    threading.Timer(0.05, loop.call_soon_threadsafe, (loop.stop,)).start()
    watchdog = loop.call_later(TIMEOUT, loop.stop)
    start = loop.time()
    loop.run_forever()
    assert loop.time() - start < TIMEOUT / 2
    watchdog.cancel()


# -- timeouts and structured concurrency -----------------------------------------------------


def test_timeouts_and_task_groups(loop):
    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(TIMEOUT)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(TIMEOUT), 0.01)
        assert asyncio.current_task().cancelling() == 0
        assert await asyncio.wait_for(asyncio.sleep(0, "in time"), TIMEOUT) == "in time"

        async def fails():
            await asyncio.sleep(0.01)
            raise KeyError("in group")

        sleeper_cancelled = []

        async def sleeper():
            try:
                await asyncio.sleep(TIMEOUT)
            except asyncio.CancelledError:
                sleeper_cancelled.append(True)
                raise

        with pytest.raises(ExceptionGroup) as info:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(sleeper())
                tg.create_task(fails())
        assert [type(e) for e in info.value.exceptions] == [KeyError]
        assert sleeper_cancelled == [True]
        done, pending = await asyncio.wait(
            [loop.create_task(asyncio.sleep(0.001, i)) for i in range(5)], return_when=asyncio.ALL_COMPLETED
        )
        assert sorted(t.result() for t in done) == list(range(5)) and not pending

    loop.run_until_complete(main())


# -- readers and writers ---------------------------------------------------------------------


def test_add_remove_reader(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        got = []
        done = loop.create_future()

        def on_readable(tag):
            got.append((tag, a.recv(100)))
            if not done.done():
                done.set_result(None)

        loop.add_reader(a.fileno(), on_readable, "fd")
        loop.call_later(0.01, b.send, b"hello")
        run(loop, done)
        assert got == [("fd", b"hello")]
        assert loop.remove_reader(a.fileno()) is True
        assert loop.remove_reader(a.fileno()) is False
        # Nothing is delivered once removed.
        b.send(b"more")
        run(loop, asyncio.sleep(0.02))
        assert got == [("fd", b"hello")]
        # A file object works as well as its fd; a second add replaces the callback.
        done = loop.create_future()
        loop.add_reader(a, on_readable, "replaced")
        loop.add_reader(a, on_readable, "socket object")
        run(loop, done)
        assert got[1:] == [("socket object", b"more")]
        assert loop.remove_reader(a) is True
    finally:
        a.close()
        b.close()


def test_add_remove_writer(loop):
    a, b = socket.socketpair()
    try:
        calls = []
        done = loop.create_future()

        def on_writable():
            calls.append(a.send(b"x"))
            if len(calls) == 3:
                loop.remove_writer(a.fileno())
                done.set_result(None)

        loop.add_writer(a.fileno(), on_writable)
        run(loop, done)
        assert calls == [1, 1, 1]
        assert b.recv(10) == b"xxx"
        assert loop.remove_writer(a.fileno()) is False
    finally:
        a.close()
        b.close()


def test_reader_and_writer_on_one_fd(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        readable = loop.create_future()
        writable = loop.create_future()
        loop.add_writer(a, lambda: writable.done() or writable.set_result(None))
        loop.add_reader(a, lambda: readable.done() or readable.set_result(a.recv(10)))
        run(loop, writable)
        assert loop.remove_writer(a) is True
        b.send(b"r")
        assert run(loop, readable) == b"r"
        assert loop.remove_reader(a) is True
    finally:
        a.close()
        b.close()


def test_invalid_fds(loop):
    for fd in (-1, "not a file", 1.5, None):
        msg = assert_same_error(loop, lambda lp, fd=fd: lp.add_reader(fd, print))
        assert_same_error(loop, lambda lp, fd=fd: lp.add_writer(fd, print))
        assert_same_error(loop, lambda lp, fd=fd: lp.remove_reader(fd))
        assert_same_error(loop, lambda lp, fd=fd: lp.remove_writer(fd))
    assert msg == "Invalid file object: None"
    assert error_of(loop.add_reader, -1, print) == (ValueError, "Invalid file descriptor: -1")


@needs_epoll
def test_add_reader_on_closed_fd(loop):
    # A number far above every open fd, so that no loop created meanwhile can take it.
    fd = max(int(n) for n in os.listdir("/proc/self/fd")) + 200
    assert error_of(os.fstat, fd)[0] is OSError
    msg = assert_same_error(loop, lambda lp: lp.add_reader(fd, print))
    assert msg == "[Errno 9] Bad file descriptor"
    assert error_of(loop.add_writer, fd, print)[0] is OSError
    # The failed registration leaves nothing behind.
    assert loop.remove_reader(fd) is False
    assert loop.remove_writer(fd) is False


@needs_epoll
def test_add_reader_on_regular_file(loop, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"data")
    with open(path, "rb") as f:
        assert_same_error(loop, lambda lp: lp.add_reader(f.fileno(), print))


def test_fd_owned_by_transport(loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    try:

        async def main():
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
            transport_repr = repr(transport)
            try:
                errors = [
                    error_of(loop.add_reader, fd, print),
                    error_of(loop.add_writer, fd, print),
                    error_of(loop.remove_reader, fd),
                    error_of(loop.remove_writer, fd),
                ]
            finally:
                transport.close()
                await asyncio.sleep(0)
            return errors, transport_repr

        errors, transport_repr = loop.run_until_complete(main())
        expected = f"File descriptor {fd} is used by transport {transport_repr}"
        assert errors == [(RuntimeError, expected)] * 4
    finally:
        a.close()
        b.close()


# -- async generators ------------------------------------------------------------------------


def test_shutdown_asyncgens(loop):
    finalized = []

    async def agen(tag):
        try:
            yield 1
            yield 2
        finally:
            finalized.append(tag)

    async def main():
        g = agen("suspended")
        assert await g.__anext__() == 1
        return g

    g = loop.run_until_complete(main())
    assert finalized == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert finalized == ["suspended"]
    del g

    # Iterating a new async generator after shutdown warns, as asyncio does.
    async def late():
        h = agen("late")
        with pytest.warns(ResourceWarning, match="was scheduled after loop.shutdown_asyncgens"):
            await h.__anext__()
        await h.aclose()

    loop.run_until_complete(late())
    assert finalized == ["suspended", "late"]


def test_asyncgen_finalized_by_gc_while_running(loop):
    finalized = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            finalized.append("done")

    async def main():
        g = agen()
        await g.__anext__()
        del g
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert finalized == ["done"]


# -- executors -------------------------------------------------------------------------------


def test_run_in_executor_default(loop):
    async def main():
        ident = await loop.run_in_executor(None, threading.get_ident)
        assert ident != threading.get_ident()
        results = await asyncio.gather(*(loop.run_in_executor(None, pow, i, 2) for i in range(20)))
        assert results == [i * i for i in range(20)]
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(None, lambda: 1 / 0)
        return await asyncio.to_thread(lambda: "to_thread")

    assert loop.run_until_complete(main()) == "to_thread"


def test_run_in_executor_wakes_sleeping_loop(loop):
    # Nothing else is scheduled: the loop sleeps until the worker's result wakes it.
    watchdog = loop.call_later(TIMEOUT, loop.stop)
    start = loop.time()
    assert loop.run_until_complete(loop.run_in_executor(None, time.sleep, 0.05)) is None
    assert loop.time() - start < TIMEOUT / 2
    watchdog.cancel()


def test_custom_and_default_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mine") as pool:

        async def main():
            name = await loop.run_in_executor(pool, lambda: threading.current_thread().name)
            assert name.startswith("mine")
            loop.set_default_executor(pool)
            name = await loop.run_in_executor(None, lambda: threading.current_thread().name)
            assert name.startswith("mine")

        loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_default_executor())
    assert error_of(pool.submit, print)[0] is RuntimeError  # shut down through the loop
    msg = assert_same_error(loop, lambda lp: lp.set_default_executor(object()))
    assert msg.startswith("executor must be ThreadPoolExecutor")


def test_shutdown_default_executor(loop):
    async def main():
        await loop.run_in_executor(None, time.sleep, 0)
        await loop.shutdown_default_executor()

    loop.run_until_complete(main())

    def op(lp):
        lp.run_until_complete(lp.shutdown_default_executor())
        return lp.run_in_executor(None, print)

    assert assert_same_error(loop, op) == "Executor shutdown has been called"


def test_run_in_executor_rejects_coroutine_functions_in_debug(loop):
    def op(lp):
        lp.set_debug(True)
        return lp.run_in_executor(None, _noop)

    assert assert_same_error(loop, op) == "coroutines cannot be used with run_in_executor()"


# -- name resolution -------------------------------------------------------------------------


def test_getaddrinfo_localhost(loop):
    expected = socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    got = run(loop, loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM))
    assert sorted(got) == sorted(expected)
    got = run(loop, loop.getaddrinfo("127.0.0.1", 8080, family=socket.AF_INET, proto=socket.IPPROTO_TCP))
    assert got == socket.getaddrinfo("127.0.0.1", 8080, family=socket.AF_INET, proto=socket.IPPROTO_TCP)
    with pytest.raises(socket.gaierror):
        run(loop, loop.getaddrinfo("not a host name!", 80, flags=socket.AI_NUMERICHOST))


def test_getnameinfo_localhost(loop):
    flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
    assert run(loop, loop.getnameinfo(("127.0.0.1", 8080), flags)) == ("127.0.0.1", "8080")
    expected = socket.getnameinfo(("127.0.0.1", 80), 0)
    assert run(loop, loop.getnameinfo(("127.0.0.1", 80))) == expected


# -- closing with work pending ---------------------------------------------------------------


def test_close_with_pending_task(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    finalized = []

    async def forever():
        try:
            await asyncio.sleep(TIMEOUT)
        finally:
            finalized.append("coroutine closed")

    async def main():
        task = loop.create_task(forever())
        await asyncio.sleep(0)
        return task.get_name()

    name = loop.run_until_complete(main())
    loop.close()
    assert loop.is_closed()
    gc.collect()
    assert [c["message"] for c in contexts] == ["Task was destroyed but it is pending!"]
    assert contexts[0]["task"].get_name() == name
    assert finalized == ["coroutine closed"]


def test_unclosed_loop_warns(loop_factory):
    lp = loop_factory()
    lp.run_until_complete(asyncio.sleep(0))
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del lp
        gc.collect()


# -- greenloop: closing while blocking-style calls are in progress -------------------------
# asyncio has no blocking-style calls, so these run on greenloop only; the reference is what
# asyncio does with the same program written with ``await``.


def test_green_close_with_task_parked_in_blocking_call(green_loop):
    loop = green_loop
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    unwound = []

    async def parked():
        try:
            greenloop.sleep(TIMEOUT)  # blocking-style: with asyncio, ``await asyncio.sleep``
        finally:
            unwound.append("finally ran")

    async def main():
        for _ in range(3):
            loop.create_task(parked())
        await asyncio.sleep(0.02)

    loop.run_until_complete(main())
    assert len(live_greenlets()) >= 3  # the parked task steps keep their stacks
    loop.close()
    assert unwound == ["finally ran"] * 3
    gc.collect()
    assert live_greenlets() == []
    assert [c["message"] for c in contexts] == ["Task was destroyed but it is pending!"] * 3


@pytest.mark.parametrize("waiter_done", [False, True], ids=["waiting", "wake-up-queued"])
def test_green_close_with_task_parked_on_a_future(green_loop, waiter_done):
    # With ``await``, asyncio reports both tasks as destroyed while pending; here the steps
    # are unwound too, including one whose future completed but whose wake-up never ran.
    loop = green_loop
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    unwound = []
    futs = [loop.create_future() for _ in range(2)]

    async def parked(fut):
        try:
            greenloop.await_(fut)  # with asyncio: ``await fut``
        finally:
            unwound.append("finally ran")

    async def main():
        for fut in futs:
            loop.create_task(parked(fut))
        await asyncio.sleep(0.02)

    loop.run_until_complete(main())
    if waiter_done:
        loop.call_soon(futs[0].set_result, None)
        loop.call_soon(loop.stop)  # run_forever() returns before the wake-up this queues runs
        loop.run_forever()
        assert futs[0].done()
    loop.close()
    assert unwound == ["finally ran"] * 2
    gc.collect()
    assert live_greenlets() == []
    assert [c["message"] for c in contexts] == ["Task was destroyed but it is pending!"] * 2


@pytest.mark.parametrize("how", ["thread-sleep0", "task-sleep0", "task-timeout", "thread-timeout"])
def test_green_close_unwinds_every_kind_of_wait(green_loop, how):
    # A green thread or task step suspended in sleep(0) (its wake-up already queued) or in a
    # wait with a timeout is unwound by close() as one parked in a plain wait is.
    loop = green_loop
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    unwound = []

    def body():
        try:
            if how.endswith("sleep0"):
                while True:
                    greenloop.sleep(0)
            greenloop.await_(loop.create_future(), timeout=TIMEOUT)
        finally:
            unwound.append("finally ran")

    async def in_task():
        body()

    async def main():
        if how.startswith("thread"):
            greenloop.spawn(body)
        else:
            loop.create_task(in_task())
        await asyncio.sleep(0.02)

    loop.run_until_complete(main())
    loop.close()
    assert unwound == ["finally ran"]
    gc.collect()
    assert live_greenlets() == []
    what = "Green thread" if how.startswith("thread") else "Task"
    assert [c["message"] for c in contexts] == [f"{what} was destroyed but it is pending!"]


def test_green_close_from_another_thread_leaves_no_greenlets(green_loop):
    loop = green_loop

    async def blocker(i):
        greenloop.sleep(0.001)  # hands the loop to another hub; the hubs go to the pool
        return i

    async def main():
        return await asyncio.gather(*(blocker(i) for i in range(10)))

    results = []
    release = threading.Event()

    def thread_main():
        results.append(loop.run_until_complete(main()))
        release.wait(TIMEOUT)  # the thread outlives the loop, as in a thread pool

    t = threading.Thread(target=thread_main, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not results and time.monotonic() < deadline:
            time.sleep(0.005)
        assert results == [list(range(10))]
        t_running = t.is_alive()
        loop.close()  # asyncio allows closing a stopped loop from any thread
        gc.collect()
        assert t_running
        assert live_greenlets() == []
    finally:
        release.set()
        t.join(TIMEOUT)


# -- greenloop's installation API ------------------------------------------------------------


def test_new_event_loop_and_policy():
    lp = greenloop.new_event_loop()
    try:
        assert type(lp) is greenloop.Loop
        assert isinstance(lp, asyncio.AbstractEventLoop)
        assert isinstance(lp, asyncio.SelectorEventLoop)
    finally:
        lp.close()
    policy = greenloop.EventLoopPolicy()
    lp = policy.new_event_loop()
    try:
        assert type(lp) is greenloop.Loop
    finally:
        lp.close()


def test_greenloop_run():
    async def main(x):
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()), x

    assert greenloop.run(main(5)) == (greenloop.Loop, 5)
    assert greenloop.run(main(6), debug=True) == (greenloop.Loop, 6)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is new in 3.12")
def test_asyncio_run_with_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main(), loop_factory=greenloop.new_event_loop) is greenloop.Loop


def test_runner_with_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    with asyncio.Runner(loop_factory=greenloop.new_event_loop) as runner:
        assert runner.run(main()) is greenloop.Loop
        assert type(runner.get_loop()) is greenloop.Loop


def test_install_sets_the_policy():
    old = asyncio.get_event_loop_policy()
    try:
        greenloop.install()
        assert isinstance(asyncio.get_event_loop_policy(), greenloop.EventLoopPolicy)
        lp = asyncio.new_event_loop()
        try:
            assert type(lp) is greenloop.Loop
        finally:
            lp.close()
    finally:
        asyncio.set_event_loop_policy(old)


def _takeover_scenario(loop, log):
    """Task a blocks once and is woken in the same batch as three callbacks; its step then
    finishes on the ex-hub, which takes the loop over while the hub that woke it is still in
    that batch. Task b then blocks when the ready queue is empty, so the displaced hub is
    handed the loop back with three entries of its old batch left and none in the queue.
    """
    fut_a, fut_b = loop.create_future(), loop.create_future()

    async def a():
        greenloop.await_(fut_a)
        log.append("a done")

    async def b():
        await asyncio.sleep(0.01)
        log.append("b blocks")
        greenloop.await_(fut_b)
        log.append("b done")

    def wake_a_with_company():
        fut_a.set_result(None)  # queues a's wake-up, then:
        for i in range(3):
            loop.call_soon(log.append, f"cb{i}")

    async def main():
        tasks = [loop.create_task(a()), loop.create_task(b())]
        await asyncio.sleep(0)
        loop.call_soon(wake_a_with_company)
        loop.call_later(0.05, fut_b.set_result, None)
        await asyncio.gather(*tasks)

    return main()


def test_green_hub_displaced_by_a_takeover_resumes_safely(green_loop):
    # An ex-hub whose step finishes takes the loop back from the hub that woke it (one switch
    # fewer per round trip). That hub resumes its unfinished batch later, when the queue may
    # be empty; the loop must not fail, and callbacks keep their order.
    loop = green_loop
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    log = []
    loop.run_until_complete(_takeover_scenario(loop, log))
    assert log == ["a done", "cb0", "cb1", "cb2", "b blocks", "b done"]
    assert loop._takeovers >= 1  # the path under test was taken
    assert contexts == []
    # A second run on the same loop, then close: pooled hubs (one still inside the callback
    # with which it woke a) end quietly, without an "Exception in callback" report.
    log.clear()
    loop.run_until_complete(_takeover_scenario(loop, log))
    assert log == ["a done", "cb0", "cb1", "cb2", "b blocks", "b done"]
    loop.close()
    gc.collect()
    assert contexts == []
    assert live_greenlets() == []


def test_green_debug_slow_callback_report_ignores_takeover_waits(green_loop, caplog):
    # In debug mode a callback that took too long is reported. The callback that woke an
    # ex-hub which then took the loop over returns only when its hub is handed the loop
    # again: that wait is not the callback's, and only the really slow callback is named.
    loop = green_loop
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    fut = loop.create_future()

    def slow():
        time.sleep(0.1)

    async def blocker():
        greenloop.await_(fut)
        loop.call_soon(slow)  # runs on the ex-hub after it took over, before the old hub resumes

    async def main():
        task = loop.create_task(blocker())
        await asyncio.sleep(0)
        loop.call_soon(fut.set_result, None)
        await task
        await asyncio.sleep(0.01)
        # Block once more so the displaced hub is handed the loop and its callback returns.
        later = loop.create_future()
        loop.call_soon(later.set_result, None)
        greenloop.await_(later)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(main())
    assert loop._takeovers >= 1
    slow_reports = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert len(slow_reports) == 1, slow_reports
    assert "slow" in slow_reports[0]


def test_green_thread_start_is_queued_in_order_and_reported_when_slow(green_loop, caplog):
    # A spawn queues the thread itself (no Handle): it starts in FIFO order with the loop's
    # callbacks, and in debug mode a start that runs too long before its first wait is
    # reported, naming the thread, as a slow callback is.
    loop = green_loop
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    order = []

    def busy():
        order.append("thread")
        time.sleep(0.1)

    async def main():
        loop.call_soon(order.append, "before")
        gt = greenloop.spawn(busy)
        loop.call_soon(order.append, "after")
        await gt

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(main())
    assert order == ["before", "thread", "after"]
    slow_reports = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert len(slow_reports) == 1, slow_reports
    assert "GreenThread" in slow_reports[0] and "busy" in slow_reports[0]


def test_green_thread_that_cannot_start_fails_its_joiners_and_the_loop_goes_on(green_loop, monkeypatch):
    from greenloop import _green

    loop = green_loop
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))

    class Refused(_green._ThreadGreenlet):
        def __new__(cls, *args, **kwargs):
            raise MemoryError("no room for a greenlet")

    async def main():
        loop._green_pool.clear()  # a pooled greenlet would be reused instead of made
        monkeypatch.setattr(_green, "_ThreadGreenlet", Refused)
        gt = greenloop.spawn(lambda: "never")
        with pytest.raises(MemoryError, match="no room"):
            await gt
        monkeypatch.undo()
        return await greenloop.spawn(lambda: "started")

    assert loop.run_until_complete(main()) == "started"
    assert len(errors) == 1
    assert errors[0]["message"].startswith("Exception while starting <GreenThread")
    assert isinstance(errors[0]["exception"], MemoryError)


def test_green_ex_hub_taking_over_in_a_later_run_returns_to_that_runs_caller(green_loop):
    # A step blocked in one run_forever() (called from the main greenlet) and finished in the
    # next (called from another greenlet): the ex-hub takes the loop over, and when that run
    # stops it must return to the greenlet that started that run, not to the first one.
    import greenlet as greenlet_module

    loop = green_loop
    fut = loop.create_future()
    log = []

    async def blocked():
        greenloop.await_(fut)
        log.append("step finished")

    async def first():
        loop.create_task(blocked())
        await asyncio.sleep(0.01)

    async def second():
        fut.set_result(None)
        await asyncio.sleep(0.01)
        return "second done"

    loop.run_until_complete(first())
    runner = greenlet_module.greenlet(lambda: loop.run_until_complete(second()))
    result = runner.switch()
    assert (result, runner.dead) == ("second done", True)
    assert log == ["step finished"]
    assert loop._takeovers >= 1


def test_green_hubs_started_from_deep_recursion_keep_working(green_loop):
    # Hubs started a band deeper on the C stack inherit that much more recursion depth; run
    # from code already near the recursion limit, the loop must not start them deeper
    # (blocking steps in several tasks at once need several hubs).
    loop = green_loop
    futs = [loop.create_future() for _ in range(4)]
    done = []

    async def blocked(i):
        greenloop.await_(futs[i])
        done.append(i)

    async def main():
        tasks = [loop.create_task(blocked(i)) for i in range(4)]
        await asyncio.sleep(0)
        for fut in futs:
            loop.call_soon(fut.set_result, None)
        await asyncio.gather(*tasks)

    def at_depth(left):
        if left > 0:
            return at_depth(left - 1)
        return loop.run_until_complete(main())

    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    at_depth(sys.getrecursionlimit() - depth - 55)  # 55 frames of headroom left
    assert sorted(done) == [0, 1, 2, 3]
