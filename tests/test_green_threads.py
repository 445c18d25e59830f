"""Green threads and blocking-style calls: the semantics of design-notes §2."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import greenlet
import pytest

import greenloop

pytestmark = pytest.mark.timeout(60)

cv: contextvars.ContextVar[str] = contextvars.ContextVar("cv", default="unset")


def run(coro: Any) -> Any:
    return greenloop.run(coro)


def run_script(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter (process-wide state: the main thread's loop)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- green threads -------------------------------------------------------------------------


def test_spawn_join_result_and_exception() -> None:
    async def main() -> None:
        gt = greenloop.spawn(lambda a, b=0: a + b, 2, b=3)
        assert await gt == 5
        assert gt.done() and gt.result() == 5 and gt.exception() is None

        def boom() -> None:
            raise ValueError("boom")

        bad = greenloop.spawn(boom)
        with pytest.raises(ValueError, match="boom"):
            await bad
        assert isinstance(bad.exception(), ValueError)

    run(main())


def test_join_from_green_thread_and_usable_as_future() -> None:
    def child(x: int) -> int:
        greenloop.sleep(0.01)
        return x * 2

    def parent() -> int:
        kids = [greenloop.spawn(child, i) for i in range(10)]
        return sum(k.join() for k in kids)

    async def main() -> None:
        assert await greenloop.spawn(parent) == 90
        t = asyncio.ensure_future(asyncio.sleep(0.01, result="t"))
        assert await asyncio.gather(greenloop.spawn(child, 1), t) == [2, "t"]
        done, pending = await asyncio.wait([greenloop.spawn(child, 2)])
        assert [d.result() for d in done] == [4] and not pending
        assert await asyncio.wait_for(greenloop.spawn(child, 3), 5) == 6

    run(main())


def test_wait_for_green_thread_timeout_cancels_at_blocking_point() -> None:
    events: list[str] = []

    def slow() -> None:
        try:
            greenloop.sleep(10)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            events.append("finally")

    async def main() -> None:
        gt = greenloop.spawn(slow)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(gt, 0.05)
        assert gt.cancelled()

    run(main())
    assert events == ["cancelled", "finally"]


def test_unjoined_exception_goes_to_handler_and_loop_survives() -> None:
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: seen.append(ctx))

        def boom() -> None:
            raise KeyError("lost")

        gt = greenloop.spawn(boom)
        await asyncio.sleep(0.02)
        assert gt.done()
        # the loop keeps running other work afterwards
        assert await greenloop.spawn(lambda: "alive") == "alive"

    run(main())
    assert len(seen) == 1
    assert isinstance(seen[0]["exception"], KeyError)
    assert "Unhandled exception in green thread" in seen[0]["message"]


def test_cancel_before_start_and_cancel_twice() -> None:
    ran: list[int] = []

    async def main() -> None:
        gt = greenloop.spawn(ran.append, 1)
        assert gt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gt
        assert not gt.cancel()

    run(main())
    assert ran == []


def test_cancel_running_green_thread_raises_at_next_blocking_point() -> None:
    events: list[str] = []

    def self_cancel() -> None:
        me = greenloop.current_green_thread()
        assert me is not None
        me.cancel("stop now")
        events.append("still running")
        try:
            greenloop.sleep(1)
        except asyncio.CancelledError as exc:
            events.append(f"cancelled:{exc.args[0]}")
            raise

    async def main() -> None:
        gt = greenloop.spawn(self_cancel)
        with pytest.raises(asyncio.CancelledError):
            await gt

    run(main())
    assert events == ["still running", "cancelled:stop now"]


def test_contextvars_are_copied_into_green_threads() -> None:
    async def main() -> None:
        cv.set("parent")

        def child() -> str:
            seen = cv.get()
            cv.set("child")
            greenloop.sleep(0)
            return seen + "/" + cv.get()

        assert await greenloop.spawn(child) == "parent/child"
        assert cv.get() == "parent"

    run(main())


def test_thousands_of_green_threads_overlap() -> None:
    def worker(i: int) -> int:
        greenloop.sleep(0.2)
        return i

    async def main() -> float:
        t0 = time.monotonic()
        gts = [greenloop.spawn(worker, i) for i in range(5000)]
        assert sum(await asyncio.gather(*gts)) == sum(range(5000))
        return time.monotonic() - t0

    # 5,000 sleeps of 0.2 s: overlapping, not 1,000 s (a bound generous for a noisy machine)
    assert run(main()) < 20


# -- blocking-style calls inside asyncio tasks ----------------------------------------------


def test_blocking_call_in_task_suspends_only_that_task() -> None:
    async def blocker(i: int) -> int:
        task = asyncio.current_task()
        cv.set(f"task{i}")
        greenloop.sleep(0.1)
        assert asyncio.current_task() is task
        assert cv.get() == f"task{i}"
        await asyncio.sleep(0)
        greenloop.sleep(0)
        assert asyncio.current_task() is task
        return i

    async def ticker(stop: asyncio.Event) -> int:
        ticks = 0
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)
        return ticks

    async def main() -> None:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        results = await asyncio.gather(*(blocker(i) for i in range(1000)))
        stop.set()
        assert results == list(range(1000))
        assert await tick > 3  # the ticker kept running while 1,000 tasks were blocked

    run(main())


def test_timeout_and_wait_for_interrupt_a_blocking_call_in_a_task() -> None:
    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):  # noqa: ASYNC100 (greenloop.sleep is a checkpoint)
                greenloop.sleep(10)
        assert time.monotonic() - t0 < 5
        assert task.cancelling() == 0
        await asyncio.sleep(0)  # no stray cancellation left behind

        async def inner() -> None:
            greenloop.sleep(10)

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(inner(), 0.05)

    run(main())


def _sleep_long() -> None:
    greenloop.sleep(10)


def _spin_on_sleep0() -> None:
    # sleep(0) waits for nothing but the next turn of the loop: cancel() must still raise at
    # it, or a polling loop could never be stopped.
    while True:
        greenloop.sleep(0)


@pytest.mark.parametrize("block", [_sleep_long, _spin_on_sleep0], ids=["sleep", "sleep0-spin"])
def test_task_cancel_reaches_blocking_point_and_finally_runs(block: Any) -> None:
    events: list[str] = []

    async def victim() -> None:
        try:
            block()
        finally:
            events.append("finally")

    async def main() -> None:
        t = asyncio.create_task(victim())
        await asyncio.sleep(0.01)
        assert t.cancel("bye")
        with pytest.raises(asyncio.CancelledError):
            await t
        assert t.cancelled()
        # asyncio.timeout() cancels the task at the blocking call and turns it into TimeoutError.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await victim()
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0

    run(main())
    assert events == ["finally", "finally"]


def _wait_by_await(fut: asyncio.Future[Any]) -> Any:
    return fut  # awaited by the caller: asyncio's own semantics, the reference


def _wait_blocking(fut: asyncio.Future[Any]) -> Any:
    return greenloop.await_(fut)


def _wait_blocking_with_timeout(fut: asyncio.Future[Any]) -> Any:
    return greenloop.await_(fut, timeout=60)  # woken by a Handle calling a _Wake


@pytest.mark.parametrize("cancels", [1, 2])
@pytest.mark.parametrize(
    "wait",
    [_wait_by_await, _wait_blocking, _wait_blocking_with_timeout],
    ids=["await", "blocking", "timeout"],
)
def test_task_cancelled_after_its_wait_ended_but_before_it_resumed(wait: Any, cancels: int) -> None:
    # The future the task waits on gets its result, then, before the task resumes, the task is
    # cancelled. asyncio raises CancelledError at the await the task resumes from, so the
    # result is never seen and code after the except goes on; a blocking-style wait must do
    # the same (it used to return the result and cancel the task at its end instead, losing
    # its return value). A second cancel() in that window is counted, not raised twice.
    log: list[Any] = []

    async def victim(first: asyncio.Future[int], second: asyncio.Future[int]) -> int:
        try:
            got = wait(first)
            log.append(("woke with", await got if wait is _wait_by_await else got))
        except asyncio.CancelledError as exc:
            log.append(("cancelled", exc.args))
            log.append(("cancelling", asyncio.current_task().cancelling()))  # type: ignore[union-attr]
        second_got = wait(second)
        return await second_got if wait is _wait_by_await else second_got  # type: ignore[no-any-return]

    async def main() -> int:
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        task = loop.create_task(victim(first, second))
        await asyncio.sleep(0.01)  # the task waits on `first`

        def result_then_cancel() -> None:
            first.set_result(1)
            for _ in range(cancels):
                assert task.cancel("stop")

        loop.call_soon(result_then_cancel)
        await asyncio.sleep(0.01)
        assert not task.done()  # it went on to wait for `second`
        second.set_result(2)
        return await task

    assert run(main()) == 2
    assert log == [("cancelled", ("stop",)), ("cancelling", cancels)]


def test_cancel_reaches_a_green_thread_spinning_on_sleep0() -> None:
    spins: list[int] = []

    def spinner() -> None:
        n = 0
        try:
            while True:
                greenloop.sleep(0)
                n += 1
        finally:
            spins.append(n)

    async def main() -> None:
        gt = greenloop.spawn(spinner)
        await asyncio.sleep(0.01)
        assert gt.cancel("enough")
        with pytest.raises(asyncio.CancelledError, match="enough"):
            await gt
        assert gt.cancelled()

    run(main())
    assert len(spins) == 1 and spins[0] > 0


def test_sleep0_yields_to_the_threads_of_its_own_priority() -> None:
    order: list[str] = []

    def worker(name: str) -> None:
        for i in range(3):
            order.append(f"{name}{i}")
            greenloop.sleep(0)

    async def main() -> None:
        high = greenloop.PRIORITY_DEFAULT + 1
        a = greenloop.spawn(worker, "a", priority=high)
        b = greenloop.spawn(worker, "b", priority=high)
        await asyncio.gather(a, b)

    run(main())
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_taskgroup_with_blocking_children() -> None:
    async def child(i: int) -> int:
        greenloop.sleep(0.01 * i)
        return i

    async def failing() -> None:
        greenloop.sleep(0.02)
        raise RuntimeError("child failed")

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(child(i)) for i in range(5)]
        assert [t.result() for t in tasks] == list(range(5))
        with pytest.raises(ExceptionGroup) as info:
            async with asyncio.TaskGroup() as tg:
                slow = tg.create_task(child(500))
                tg.create_task(failing())
        assert info.group_contains(RuntimeError)
        assert slow.cancelled()

    run(main())


def test_await_from_sync_code() -> None:
    def green() -> str:
        return greenloop.await_(asyncio.sleep(0.01, result="from-green"))

    async def main() -> None:
        assert greenloop.await_(asyncio.sleep(0.01, result="from-task")) == "from-task"
        assert await greenloop.spawn(green) == "from-green"
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, fut.set_result, 7)
        assert greenloop.await_(fut) == 7
        with pytest.raises(TimeoutError):
            greenloop.await_(asyncio.sleep(10), timeout=0.01)

    run(main())


def test_wait_readable_and_writable() -> None:
    import socket

    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            greenloop.wait_writable(a, timeout=1)
            with pytest.raises(TimeoutError):
                greenloop.wait_readable(b, timeout=0.01)
            asyncio.get_running_loop().call_later(0.01, a.send, b"x")
            greenloop.wait_readable(b.fileno(), timeout=5)
            assert b.recv(1) == b"x"

    run(main())


# -- where a blocking call may be made -------------------------------------------------------


def test_blocking_call_from_plain_callback_is_a_clear_error() -> None:
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
        loop.call_soon(greenloop.sleep, 0.01)
        await asyncio.sleep(0.02)

    run(main())
    exc = seen[0]["exception"]
    assert isinstance(exc, greenloop.BlockingCallError)
    assert "plain event loop callback" in str(exc) and "greenloop.spawn" in str(exc)


def test_call_from_another_os_thread_behaves_like_the_original() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        beats = 0

        def os_thread() -> float:
            t0 = time.monotonic()
            greenloop.sleep(0.1)  # blocks this OS thread only
            return time.monotonic() - t0

        fut = loop.run_in_executor(None, os_thread)
        while not fut.done():
            beats += 1
            await asyncio.sleep(0.005)
        assert await fut >= 0.1
        assert beats > 3

    run(main())


def test_plain_script_drives_the_loop() -> None:
    proc = run_script(
        """
        import time, greenloop
        t0 = time.monotonic()
        gts = [greenloop.spawn(greenloop.sleep, 0.2) for _ in range(100)]
        greenloop.sleep(0.05)
        for gt in gts:
            gt.join()
        print("ok", round(time.monotonic() - t0, 1) < 5)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok", "True"]


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_gets_clear_errors() -> None:
    async def main() -> None:
        def join_self() -> None:
            me = greenloop.current_green_thread()
            assert me is not None
            me.join()

        with pytest.raises(RuntimeError, match="cannot join itself"):
            await greenloop.spawn(join_self)
        gt = greenloop.spawn(greenloop.sleep, 0)
        with pytest.raises(ValueError, match="non-negative"):
            gt.join(timeout=-1)
        await gt
        with pytest.raises(ValueError, match="non-negative"):
            greenloop.sleep(-1)
        with pytest.raises(ValueError, match="non-negative"):
            greenloop.wait_readable(0, timeout=float("nan"))
        with pytest.raises(TypeError, match="needs a callable"):
            greenloop.spawn(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="priority must be an int"):
            greenloop.spawn(print, priority=99)

    run(main())

    errors: list[BaseException] = []

    def os_thread() -> None:
        try:
            greenloop.await_(asyncio.sleep(0))
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=os_thread)
    t.start()
    t.join()
    assert errors and "outside any green context" in str(errors[0])

    loop = greenloop.new_event_loop()
    loop.close()
    coro = _spawn_on(loop, print)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(coro)
    coro.close()


def test_blocking_on_asyncio_loop_explains_how_to_fix() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="needs a greenloop event loop"):
            greenloop.sleep(0)

    asyncio.run(main())


# -- closing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "priority", [greenloop.PRIORITY_DEFAULT, greenloop.PRIORITY_MIN, greenloop.PRIORITY_MAX]
)
@pytest.mark.parametrize("wait", ["sleep", "future"])
def test_close_unwinds_parked_green_threads(wait: str, priority: int) -> None:
    # A sleep parks with a deadline (park()'s general path); a future with none (its
    # common path, at any priority).
    events: list[str] = []

    def parked(i: int) -> None:
        try:
            if wait == "sleep":
                greenloop.sleep(100)
            else:
                greenloop.await_(asyncio.get_running_loop().create_future())
        finally:
            events.append(f"finally{i}")

    loop = greenloop.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        gts = [loop.run_until_complete(_spawn_on(loop, parked, i, priority=priority)) for i in range(3)]
        loop.run_until_complete(asyncio.sleep(0.01))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    assert sorted(events) == ["finally0", "finally1", "finally2"]
    assert all(gt.cancelled() for gt in gts)


class _Thrown(Exception):
    pass


@pytest.mark.parametrize("wait", ["future", "sleep0"])
@pytest.mark.parametrize("where", ["task", "green thread"])
def test_wait_ended_by_a_thrown_exception_never_gets_its_wakeup_later(where: str, wait: str) -> None:
    # A parked wait's wake-up is queued when its future completes (or at once, for sleep(0)).
    # If the wait ends otherwise first (an exception thrown into the parked greenlet, as
    # close() does), that wake-up must not run later and resume the greenlet wherever it is
    # by then.
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        fut, later = loop.create_future(), loop.create_future()
        events: list[str] = []
        parked = []

        def throw_into_parked() -> None:  # on the hub, outside any task, as close() is
            if wait == "future":
                fut.set_result(None)  # queues the wake-up...
            parked[0].throw(_Thrown)  # ...and the wait ends first, otherwise

        def blocked() -> None:
            parked.append(greenlet.getcurrent())
            try:
                if wait == "future":
                    loop.call_later(0.01, throw_into_parked)
                    greenloop.await_(fut)
                else:
                    loop.call_soon(throw_into_parked)  # runs just before the yield's wake-up
                    greenloop.sleep(0)
            except _Thrown:
                events.append("thrown")
                # Parked again at once: a stale wake-up of the first wait would end this one
                # before `later` is done.
                events.append(greenloop.await_(later))
                raise
            events.append("woken")

        async def in_task() -> None:
            blocked()

        loop.call_later(0.05, later.set_result, "later")
        waiter = asyncio.ensure_future(in_task()) if where == "task" else greenloop.spawn(blocked)
        with pytest.raises(_Thrown):
            await waiter
        for _ in range(3):  # the loop (and any pooled hub) keeps working
            await asyncio.sleep(0)
            greenloop.sleep(0)
        return events

    assert run(main()) == ["thrown", "later"]


async def _spawn_on(
    loop: asyncio.AbstractEventLoop, fn: Any, *args: Any, priority: int = greenloop.PRIORITY_DEFAULT
) -> greenloop.GreenThread[Any]:
    assert asyncio.get_running_loop() is loop
    return greenloop.spawn(fn, *args, priority=priority)


# -- priorities -------------------------------------------------------------------------------


def test_priorities_order_each_iteration_and_never_starve() -> None:
    order: list[str] = []

    def worker(tag: str) -> None:
        for _ in range(3):
            order.append(tag)
            greenloop.sleep(0)

    async def main() -> None:
        async def task() -> None:
            for _ in range(3):
                order.append("task")
                await asyncio.sleep(0)

        gts = [
            greenloop.spawn(worker, "low", priority=greenloop.PRIORITY_MIN),
            greenloop.spawn(worker, "default"),
            greenloop.spawn(worker, "high", priority=greenloop.PRIORITY_MAX),
        ]
        await asyncio.gather(task(), *gts)

    run(main())
    assert sorted(order) == sorted(["low", "default", "high", "task"] * 3)

    def nth(tag: str, n: int) -> int:
        return [i for i, t in enumerate(order) if t == tag][n]

    # Each round, the raised level runs before the default level's work...
    assert all(nth("high", n) < nth("default", n) for n in range(3))
    # ...and the lowered level is not starved: it runs while the others still have work.
    assert nth("low", 1) < nth("default", 2)


def test_waits_at_a_priority_end_at_their_level() -> None:
    """A green thread woken while a level at or below its own runs goes at once; one woken
    while a level above it runs waits until its level's turn in that iteration."""
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        futs = {tag: loop.create_future() for tag in ("low", "default", "high")}

        def waiter(tag: str) -> None:
            order.append(f"{tag} waits")
            order.append(f"{tag} got {greenloop.await_(futs[tag])}")

        gts = [
            greenloop.spawn(waiter, "low", priority=greenloop.PRIORITY_DEFAULT - 1),
            greenloop.spawn(waiter, "default"),
            greenloop.spawn(waiter, "high", priority=greenloop.PRIORITY_DEFAULT + 1),
        ]
        await asyncio.sleep(0.01)
        assert len(order) == 3  # all three are waiting

        def finish() -> None:  # one callback completes the three, lowest level first
            for tag in ("low", "default", "high"):
                futs[tag].set_result(tag)
            loop.call_soon(order.append, "next callback")

        loop.call_soon(finish)
        await asyncio.gather(*gts)

    run(main())
    # The futures' callbacks run in the next iteration's pass over asyncio's callbacks (the
    # default level): the default and the raised thread are switched to right there, in the
    # order they were completed; the lowered one only after that pass.
    assert order[3:] == ["default got default", "high got high", "next callback", "low got low"]


def test_a_wait_at_a_priority_ended_by_an_exception_is_not_resumed_later() -> None:
    """If an exception is thrown into a waiting thread after its wake-up was queued at its
    (lowered) level, that wake-up is dropped: it must not resume the thread's next wait."""
    events: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()

        def waiter() -> None:
            try:
                greenloop.await_(first)
            except KeyError:
                events.append("thrown in")
            events.append(f"then got {greenloop.await_(second)}")

        gt = greenloop.spawn(waiter, priority=greenloop.PRIORITY_DEFAULT - 1)
        await asyncio.sleep(0.01)
        glet = gt._glet  # type: ignore[attr-defined]

        def throw() -> None:
            glet.throw(KeyError("x"))  # runs the thread to its next wait, then returns

        def complete_then_throw() -> None:
            # In the next iteration the future's callback queues the thread's wake-up at
            # level -1, then throw() runs, before that level's turn.
            first.set_result(1)
            loop.call_soon(throw)

        loop.call_soon(complete_then_throw)
        await asyncio.sleep(0.05)
        assert events == ["thrown in"]  # the first wait's queued wake-up did not resume it
        second.set_result(2)
        await gt

    run(main())
    assert events == ["thrown in", "then got 2"]


def test_close_drops_what_is_queued_at_every_level() -> None:
    """As asyncio's close() empties the ready queue, greenloop's empties the priority levels'
    queues: a closed loop keeps nothing a queued entry refers to alive."""
    import weakref

    class Entry:
        _cancelled = False

        def _run(self) -> None:
            raise AssertionError("a closed loop ran an entry")

    loop = greenloop.Loop()
    refs = []
    for level in (greenloop.PRIORITY_MIN, greenloop.PRIORITY_MAX):
        entry = Entry()
        refs.append(weakref.ref(entry))
        loop._enqueue(level, entry)  # type: ignore[attr-defined]
        del entry
    loop.close()
    assert [ref() for ref in refs] == [None, None]


def test_priority_can_change_later() -> None:
    async def main() -> None:
        gt = greenloop.spawn(greenloop.sleep, 0.01)
        gt.priority = 2
        assert gt.priority == 2
        with pytest.raises(ValueError):
            gt.priority = 10
        await gt

    run(main())


def test_finished_green_thread_is_not_kept_alive_by_its_pooled_greenlet() -> None:
    import gc
    import weakref

    async def main() -> None:
        gt = greenloop.spawn(lambda: bytearray(1 << 20))
        await gt
        ref = weakref.ref(gt)
        del gt
        # A new step: the one gt woke holds gt in its wake-up handle's arguments until it ends.
        await asyncio.sleep(0)
        gc.collect()
        # Its greenlet went back to the pool for the next thread; it must not hold this one.
        assert ref() is None

    run(main())


def test_system_exit_from_a_green_thread_is_not_also_logged_as_unretrieved() -> None:
    proc = run_script(
        """
        import asyncio, greenloop
        async def main():
            greenloop.spawn(lambda: (_ for _ in ()).throw(SystemExit(3)))
            await asyncio.sleep(1)
        try:
            greenloop.run(main())
        except SystemExit as exc:
            print("exit", exc.code)
        import gc; gc.collect()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "exit 3" in proc.stdout
    assert "never retrieved" not in proc.stderr
