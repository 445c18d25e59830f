"""patch_all() and friends. patch_all() is irreversible, so every case runs in a fresh interpreter.

Each case is a small program given to ``python -c``; it prints what it observed and the test
checks the output. Timing bounds are loose (2 shared cores) but far below what the blocking
originals would need, so they prove that the waits overlapped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PRELUDE = "import greenloop, greenloop.monkey as monkey\n"


def run(
    code: str, *, timeout: float = 30, check: bool = True, prelude: str = PRELUDE
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return proc.stdout.split()


# -- the table, idempotence, originals ---------------------------------------------------------


def test_patch_all_is_idempotent_and_reports_every_module() -> None:
    proc = run(
        """
        import time, socket, select, selectors, threading, queue, _thread
        orig_sleep = time.sleep
        monkey.patch_all()
        patched = time.sleep
        monkey.patch_all()
        assert time.sleep is patched and patched is not orig_sleep
        assert monkey.get_original("time", "sleep") is orig_sleep
        for name in ("socket", "dns", "ssl", "select", "selectors", "time", "threading",
                     "thread", "_thread", "queue", "subprocess", "os", "signal"):
            assert monkey.is_patched(name), name
        assert threading.Thread is not monkey.get_original("threading", "Thread")
        assert issubclass(threading.Thread, monkey.get_original("threading", "Thread"))
        assert selectors.DefaultSelector is not monkey.get_original("selectors", "DefaultSelector")
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


def test_patch_one_module_and_unknown_names() -> None:
    proc = run(
        """
        import time
        orig = time.sleep
        monkey.patch("time")
        monkey.patch("time")
        assert monkey.is_patched("time") and not monkey.is_patched("socket")
        assert time.sleep is not orig and monkey.get_original("time", "sleep") is orig
        assert monkey.get_original("json", "dumps").__name__ == "dumps"  # never patched
        for bad in (lambda: monkey.patch("json"), lambda: monkey.is_patched("nope")):
            try:
                bad()
            except ValueError as exc:
                assert "the patchable modules are" in str(exc), exc
            else:
                raise AssertionError("no error")
        try:
            monkey.get_original("time", "no_such_name")
        except AttributeError:
            pass
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


def test_patch_all_from_a_non_main_thread_is_refused() -> None:
    proc = run(
        """
        import threading
        errors = []
        def patch():
            try:
                monkey.patch_all()
            except RuntimeError as exc:
                errors.append(str(exc))
        t = threading.Thread(target=patch)
        t.start(); t.join()
        assert "must be called from the main thread" in errors[0], errors
        assert not monkey.is_patched("time")
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


def test_patch_all_under_a_running_asyncio_loop_says_what_to_do() -> None:
    proc = run(
        """
        import asyncio
        async def main():
            try:
                monkey.patch_all()
            except RuntimeError as exc:
                msg = str(exc)
                assert "python -m greenloop" in msg and "loop_factory=greenloop.new_event_loop" in msg
                print("refused")
        asyncio.run(main())
        assert not monkey.is_patched("socket")
        async def green_main():
            monkey.patch_all()  # under greenloop's own loop: fine
            import time
            time.sleep(0.01)  # a blocking-style call inside a task suspends only the task
            print("patched")
        greenloop.run(green_main())
        """
    )
    assert lines(proc) == ["refused", "patched"]


def test_patch_all_after_ssl_and_http_libraries_were_imported() -> None:
    proc = run(
        """
        import ssl, urllib3, requests, http.client
        ctx = ssl.create_default_context()
        monkey.patch_all()
        import socket
        # A context created before patching makes cooperative sockets.
        s = ctx.wrap_socket(socket.socket(), server_hostname="localhost")
        assert isinstance(s, ssl.SSLSocket)
        s.close()
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


def test_late_patching_after_urllib3_and_requests_makes_https_requests() -> None:
    # gevent's known trap: ssl (through urllib3/requests) imported before patching, then a
    # context option set on a context made afterwards -> RecursionError. Here it just works,
    # and the TLS requests overlap on green threads.
    proc = run(
        """
        import ssl, urllib3, requests, trustme
        ca = trustme.CA()
        monkey.patch_all()
        import http.server, socketserver, threading, time
        ctx = urllib3.util.ssl_.create_urllib3_context()  # sets ctx.options: the trap
        ctx.options |= ssl.OP_NO_TLSv1
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(server_ctx)
        class Slow(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(0.3)
                self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
                self.wfile.write(b"ok")
            def log_message(self, *args):
                pass
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
        srv.socket = server_ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        url = f"https://localhost:{srv.server_address[1]}/"
        with ca.cert_pem.tempfile() as ca_file:
            session = requests.Session()
            pool = urllib3.PoolManager(ca_certs=ca_file, maxsize=20)
            got = []
            def fetch(i):
                if i % 2:
                    got.append(session.get(url, verify=ca_file, timeout=10).text)
                else:
                    got.append(pool.request("GET", url, timeout=10).data.decode())
            t0 = time.monotonic()
            ts = [threading.Thread(target=fetch, args=(i,)) for i in range(20)]
            [t.start() for t in ts]; [t.join() for t in ts]
            assert got == ["ok"] * 20, got
            assert time.monotonic() - t0 < 3, time.monotonic() - t0
        srv.shutdown()
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


def test_patch_all_while_a_real_thread_waits_on_an_early_lock() -> None:
    # A real thread blocked on a lock (and a condition) made before patching is woken by
    # the main thread after patching: nothing hangs.
    proc = run(
        """
        import threading, time
        lock = threading.Lock(); lock.acquire()
        cond = threading.Condition()
        got = []
        def real():
            with lock:
                got.append("lock")
            with cond:
                cond.wait_for(lambda: len(got) == 2, timeout=10)
                got.append("cond")
        t = threading.Thread(target=real)
        t.start()
        monkey.patch_all()
        monkey.patch_all()  # twice: a no-op
        time.sleep(0.05)  # patched: drives the loop; the real thread still waits
        lock.release()
        while not got:
            time.sleep(0.01)
        with cond:
            got.append("main"); cond.notify_all()
        t.join(timeout=10)
        assert not t.is_alive() and got == ["lock", "main", "cond"], got
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


# -- cooperative calls -------------------------------------------------------------------------


def test_time_sleep_in_many_threads_overlaps() -> None:
    proc = run(
        """
        monkey.patch_all()
        import threading, time
        t0 = time.monotonic()
        threads = [threading.Thread(target=time.sleep, args=(0.3,)) for _ in range(2000)]
        for t in threads:
            t.start()
        assert threading.active_count() == 2001
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        assert elapsed < 2.5, elapsed
        assert threading.active_count() == 1
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


def test_thread_api_on_green_threads() -> None:
    proc = run(
        """
        monkey.patch_all()
        import threading, time, _thread
        main = threading.current_thread()
        assert main is threading.main_thread()
        seen = {}
        def work(tag):
            me = threading.current_thread()
            seen[tag] = (me.name, threading.get_ident(), me.ident, me.daemon)
            time.sleep(0.05)
        a = threading.Thread(target=work, args=("a",), name="worker-a")
        b = threading.Thread(target=work, args=("b",), daemon=True)
        assert not a.is_alive()
        a.start(); b.start()
        assert a.is_alive() and a in threading.enumerate()
        a.join(timeout=0.001)
        assert a.is_alive()  # join timed out
        a.join(); b.join()
        assert not a.is_alive() and a not in threading.enumerate()
        assert seen["a"][0] == "worker-a" and seen["a"][1] == seen["a"][2] == a.ident
        assert seen["a"][1] != seen["b"][1] != threading.get_ident()
        assert seen["a"][3] is False and seen["b"][3] is True
        assert "stopped" in repr(a)
        try:
            threading.current_thread().join()
        except RuntimeError:
            pass
        # threading.local is per green thread.
        loc = threading.local()
        loc.x = "main"
        out = []
        def use_local(i):
            assert not hasattr(loc, "x")
            loc.x = i
            time.sleep(0.01)
            out.append(loc.x == i)
        ts = [threading.Thread(target=use_local, args=(i,)) for i in range(10)]
        [t.start() for t in ts]; [t.join() for t in ts]
        assert out == [True] * 10 and loc.x == "main"
        # Timer, and cancel().
        fired = []
        t1 = threading.Timer(0.05, fired.append, ("t1",)); t1.start()
        t2 = threading.Timer(0.05, fired.append, ("t2",)); t2.start(); t2.cancel()
        t1.join(); t2.join()
        assert fired == ["t1"], fired
        # _thread.start_new_thread and allocate_lock.
        lock = _thread.allocate_lock()
        lock.acquire()
        idents = []
        def low():
            idents.append(_thread.get_ident())
            lock.release()
        ident = _thread.start_new_thread(low, ())
        assert lock.acquire(timeout=5)
        assert idents == [ident]
        # spawn()ed green threads have dummy Thread objects.
        name = greenloop.spawn(lambda: threading.current_thread().name).join()
        assert name.startswith("GreenThread-"), name
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


def test_native_ids_enumerate_and_dummy_threads() -> None:
    proc = run(
        """
        monkey.patch_all()
        import gc, threading, time, _thread
        from greenloop.green import threading_thread
        main_native = threading.get_native_id()
        # The native id is the kernel's id of the OS thread, shared by its green threads.
        natives = []
        def work():
            natives.append((threading.get_native_id(), _thread.get_native_id(),
                            threading.current_thread().native_id))
            time.sleep(0.01)
        t = threading.Thread(target=work); t.start(); t.join()
        greenloop.spawn(work).join()
        assert natives == [(main_native,) * 3] * 2, natives
        assert t.native_id == main_native
        # enumerate(): Thread objects, and dummies of spawn()ed green threads that asked
        # for current_thread(), as CPython lists start_new_thread threads and gevent does.
        seen = {}
        def asks(tag):
            seen[tag] = threading.current_thread()
            time.sleep(0.1)
        quiet = greenloop.spawn(time.sleep, 0.1)
        dummy = greenloop.spawn(asks, "spawn")
        ident = _thread.start_new_thread(asks, ("start_new_thread",))
        silent = _thread.start_new_thread(time.sleep, (0.1,))
        started = threading.Thread(target=time.sleep, args=(0.1,), name="started")
        started.start()
        time.sleep(0.05)
        listed = threading.enumerate()
        assert threading.main_thread() in listed and started in listed
        assert seen["spawn"] in listed and seen["start_new_thread"] in listed
        assert seen["start_new_thread"].ident == ident and seen["spawn"].daemon
        assert len(listed) == threading.active_count() == 4, listed
        quiet.join(); dummy.join(); started.join(); time.sleep(0.1)
        assert threading.enumerate() == [threading.main_thread()], threading.enumerate()
        assert not seen["spawn"].is_alive() and "stopped" in repr(seen["spawn"])
        # Nothing keeps the Thread objects of finished green threads alive.
        import weakref
        refs = [weakref.ref(started), weakref.ref(t)]
        del started, t, listed
        gc.collect()
        assert [r() for r in refs] == [None, None]
        assert not any(d.is_alive() for d in threading_thread._green_dummies.values())
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


def test_threading_details_match_the_stdlib() -> None:
    # Details that stdlib tests (and programs) check, compared with the unpatched module.
    code = """
        import re, select, subprocess, sys, threading, warnings
        from unittest import mock
        out = []
        # Reprs and __module__, as the originals present themselves.
        out.append(re.sub(r"0x[0-9a-f]+", "X", repr(threading.Event())))
        out.append(re.sub(r"0x[0-9a-f]+", "X", repr(threading.Semaphore(2))))
        out.append(re.sub(r"0x[0-9a-f]+", "X", repr(threading.Barrier(3))))
        out.append(repr(threading.Lock()).split(" object")[0])
        out.append(threading.current_thread.__module__ in ("threading", "_thread"))
        # Default names come from the module's own counter.
        with mock.patch.object(threading, "_counter", return_value=7):
            out.append(threading.Thread(target=len).name)
        # The deprecated aliases warn.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            threading.activeCount(); threading.currentThread()
        out.append(len([w for w in caught if w.category is DeprecationWarning]))
        # A thread's SystemExit goes to threading.excepthook (whose default ignores it);
        # a failing hook is reported as the original reports it.
        got = []
        threading.excepthook = lambda args: got.append(args.exc_type.__name__)
        t = threading.Thread(target=sys.exit); t.start(); t.join()
        out.append(got)
        def bad_hook(args):
            raise ValueError("hook failed")
        threading.excepthook = bad_hook
        sys.excepthook = lambda *exc: got.append(str(exc[1]))
        t = threading.Thread(target=lambda: 1 / 0); t.start(); t.join()
        out.append(got)
        threading.excepthook = threading.__excepthook__
        # threading.settrace() reaches new threads; the pure-Python RLock and the C name.
        calls = []
        threading.settrace(lambda frame, event, arg: calls.append(frame.f_code.co_name))
        def traced():
            pass
        t = threading.Thread(target=traced); t.start(); t.join()
        sys.settrace(None); threading.settrace(None)
        out.append("traced" in calls)
        for cls in (threading._PyRLock, threading._CRLock):
            lock = cls()
            lock.acquire()
            t = threading.Thread(target=lambda: out.append(lock.acquire(timeout=0.01)))
            t.start(); t.join()
            lock.release()
        # select() on a list that fileno() mutates, as the C code reads it.
        a = []
        class F:
            def fileno(self):
                del a[-1]
                return sys.__stdout__.fileno()
        a[:] = [F()] * 10
        out.append(len(select.select([], a, [], 5)[1]))
        # communicate() with only stdin: the stdlib's shortcut writes through stdin.write().
        p = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)
        with p, mock.patch.object(p, "stdin") as stdin:
            stdin.write.side_effect = BrokenPipeError
            p.communicate(b"stuff")
        out.append(stdin.write.call_args_list == [mock.call(b"stuff")])
        print(out)
        """
    plain = run(code, prelude="")
    green = run(code)
    patched = run(code, prelude=PRELUDE + "monkey.patch_all()\n")
    assert plain.stdout == green.stdout == patched.stdout, (plain.stdout, patched.stdout)
    assert "Exception in threading.excepthook:" in patched.stderr, patched.stderr


def test_fork_leaves_only_the_forking_thread_in_the_child() -> None:
    code = """
        import os, threading, time
        done = []
        def work():
            time.sleep(0.3)
            done.append(os.getpid())
        t = threading.Thread(target=work); t.start()
        time.sleep(0.05)
        pid = os.fork()
        if pid == 0:
            alive, listed = t.is_alive(), len(threading.enumerate())
            t.join(); time.sleep(0.5)  # the parent's thread never resumes its work here
            print("child", alive, listed, done, flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        t.join()
        print("parent", done == [os.getpid()], flush=True)
        """
    plain = run(code, prelude="")
    patched = run(code, prelude=PRELUDE + "monkey.patch_all()\n")
    assert plain.stdout == patched.stdout == "child False 1 []\nparent True\n", (plain, patched)


def test_fork_in_a_green_thread_leaves_the_main_code_in_the_parent() -> None:
    # In the child only the forking thread exists: the main thread's code (here, a join of
    # that very thread) must not resume there, and the child ends with that thread.
    # test_socketserver's forking servers fork in a server thread; the child used to go on
    # running the rest of the test suite.
    code = """
        import os, sys, threading, time
        def work():
            time.sleep(0.05)
            pid = os.fork()
            if pid == 0:
                time.sleep(0.1)  # the parent's loop state runs meanwhile in the child
                print("child thread done", flush=True)
                return
            _, status = os.waitpid(pid, 0)
            print("child exit status", os.waitstatus_to_exitcode(status), flush=True)
        t = threading.Thread(target=work)
        t.start()
        t.join()
        print("main code in", "child" if os.getpid() != parent else "parent", flush=True)
        """
    prelude = "import os, warnings\nwarnings.simplefilter('ignore')\nparent = os.getpid()\n"
    plain = run(code, prelude=prelude)
    patched = run(code, prelude=PRELUDE + "monkey.patch_all()\n" + prelude)
    expected = "child thread done\nchild exit status 0\nmain code in parent\n"
    assert plain.stdout == patched.stdout == expected, (plain, patched)


def test_uncaught_exceptions_go_to_threading_excepthook() -> None:
    proc = run(
        """
        monkey.patch_all()
        import threading
        got = []
        threading.excepthook = lambda args: got.append((args.exc_type.__name__, args.thread.name))
        t = threading.Thread(target=lambda: 1 / 0, name="boom")
        t.start(); t.join()
        assert got == [("ZeroDivisionError", "boom")], got
        threading.excepthook = threading.__excepthook__
        t = threading.Thread(target=lambda: 1 / 0, name="boom2")
        t.start(); t.join()
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]
    assert "Exception in thread boom2" in proc.stderr and "ZeroDivisionError" in proc.stderr


def test_queue_between_green_threads_and_an_asyncio_task() -> None:
    proc = run(
        """
        monkey.patch_all()
        import asyncio, queue, threading, time
        q = queue.Queue(maxsize=3)
        def producer(n):
            for i in range(n):
                q.put(i)
        async def main():
            ts = [threading.Thread(target=producer, args=(50,)) for _ in range(4)]
            for t in ts:
                t.start()
            # A task may call the blocking get(): only this task waits.
            total = sum(q.get() for _ in range(200))
            for t in ts:
                t.join()
            return total
        print(greenloop.run(main()))
        """
    )
    assert lines(proc) == [str(4 * sum(range(50)))]


def test_polling_a_queue_lets_the_other_threads_run() -> None:
    # test_logging's test_config_queue_handler (3.12, 3.13) waits for a QueueListener thread
    # by spinning on ``queue.empty()`` (``while support.sleeping_retry(...)``: a generator is
    # always true, so it never sleeps). OS threads are preempted meanwhile; green ones run
    # only if the poll yields now and then.
    proc = run(
        """
        monkey.patch_all()
        import logging, logging.handlers, queue, threading
        # The logging scenario itself.
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append(record.getMessage())
        q = queue.Queue()
        listener = logging.handlers.QueueListener(q, Keep())
        log = logging.getLogger("spin")
        log.propagate = False
        log.addHandler(logging.handlers.QueueHandler(q))
        listener.start()
        for word in ("foo", "bar", "baz"):
            log.warning(word)
        while not q.empty():
            pass
        q.join()
        listener.stop()
        print(*records)
        # A consumer thread drains, the main thread polls qsize(); a producer thread fills,
        # the main thread polls get_nowait() / get(False) (Queue and SimpleQueue) and full().
        for make in (queue.Queue, queue.SimpleQueue):
            q = make()
            def consume():
                for _ in range(1000):
                    q.get()
            t = threading.Thread(target=consume)
            t.start()
            for i in range(1000):
                q.put(i)
            while q.qsize():
                pass
            t.join()
            t = threading.Thread(target=lambda: [q.put(i) for i in range(100)])
            t.start()
            got = []
            while len(got) < 100:
                try:
                    got.append(q.get_nowait() if make is queue.Queue else q.get(False))
                except queue.Empty:
                    pass
            t.join()
            print(make.__name__, got == list(range(100)))
        q = queue.Queue(maxsize=1)
        q.put(0)
        t = threading.Thread(target=q.get)
        t.start()
        while q.full():
            pass
        t.join()
        bounded = queue.Queue(maxsize=1)
        bounded.put(0)
        t = threading.Thread(target=bounded.get)
        t.start()
        while True:
            try:
                bounded.put_nowait(1)
                break
            except queue.Full:
                pass
        t.join()
        print("full ok")
        """
    )
    assert proc.stdout.splitlines() == ["foo bar baz", "Queue True", "SimpleQueue True", "full ok"]


def test_polling_a_queue_in_a_loop_callback_does_not_yield() -> None:
    # A plain callback cannot block: its polls answer without yielding (and never raise).
    proc = run(
        """
        monkey.patch_all()
        import asyncio, queue
        q, s = queue.Queue(), queue.SimpleQueue()
        def poll():
            for _ in range(1000):
                q.empty(), q.qsize(), q.full(), s.empty(), s.qsize()
                for call in (q.get_nowait, lambda: s.get(False)):
                    try:
                        call()
                    except queue.Empty:
                        pass
            print("polled")
        async def main():
            asyncio.get_running_loop().call_soon(poll)
            await asyncio.sleep(0.01)
        greenloop.run(main())
        """
    )
    assert lines(proc) == ["polled"]


def test_select_poll_epoll_and_selectors_wait_cooperatively() -> None:
    proc = run(
        """
        monkey.patch_all()
        import select, selectors, socket, threading, time
        results = []
        def waiter(kind, sock):
            if kind == "select":
                r, _, _ = select.select([sock], [], [], 5)
                results.append((kind, r == [sock]))
            elif kind == "poll":
                p = select.poll(); p.register(sock, select.POLLIN)
                results.append((kind, p.poll(5000) == [(sock.fileno(), select.POLLIN)]))
            elif kind == "epoll":
                with select.epoll() as ep:
                    ep.register(sock.fileno(), select.EPOLLIN)
                    results.append((kind, ep.poll(5) == [(sock.fileno(), select.EPOLLIN)]))
            else:
                with selectors.DefaultSelector() as sel:
                    sel.register(sock, selectors.EVENT_READ, "data")
                    [(key, ev)] = sel.select(5)
                    results.append((kind, key.data == "data" and ev == selectors.EVENT_READ))
        a, b = socket.socketpair()
        kinds = ["select", "poll", "epoll", "selectors"]
        # All four wait on the same fd at once: the loop's one-waiter-per-fd rule does not apply.
        ts = [threading.Thread(target=waiter, args=(k, a)) for k in kinds]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        time.sleep(0.1)
        assert results == [], results  # all still waiting, and the main thread ran
        b.send(b"x")
        for t in ts:
            t.join()
        assert sorted(results) == sorted((k, True) for k in kinds), results
        # Timeouts (after draining the byte).
        assert a.recv(10) == b"x"
        t0 = time.monotonic()
        assert select.select([a.fileno()], [], [], 0.1) == ([], [], [])
        p = select.poll(); p.register(b, select.POLLIN)
        assert p.poll(100) == []
        assert selectors.DefaultSelector().select(0.1) == []
        assert 0.25 <= time.monotonic() - t0 < 2
        # Writable at once, and a zero timeout never waits.
        assert select.select([], [b], [], 0) == ([], [b], [])
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


def test_sockets_through_a_threaded_server() -> None:
    proc = run(
        """
        monkey.patch_all()
        import socket, threading, time
        srv = socket.create_server(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        def handle(conn):
            with conn:
                while data := conn.recv(1024):
                    time.sleep(0.2)
                    conn.sendall(data.upper())
        def serve():
            while True:
                conn, _ = srv.accept()
                threading.Thread(target=handle, args=(conn,), daemon=True).start()
        threading.Thread(target=serve, daemon=True).start()
        replies = []
        def client(i):
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(b"hi%d" % i)
                replies.append(c.recv(100))
        t0 = time.monotonic()
        ts = [threading.Thread(target=client, args=(i,)) for i in range(300)]
        [t.start() for t in ts]; [t.join() for t in ts]
        assert sorted(replies) == sorted(b"HI%d" % i for i in range(300))
        assert time.monotonic() - t0 < 3
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


# -- real OS threads stay real -----------------------------------------------------------------


def test_executor_and_to_thread_keep_real_os_threads() -> None:
    proc = run(
        """
        monkey.patch_all()
        import asyncio, queue, threading, time
        main_native = threading.get_native_id()
        def in_worker():
            # Patched calls on a real thread behave as the originals: this blocks the worker.
            assert greenloop.current_green_thread() is None
            time.sleep(0.05)
            q = queue.Queue(); q.put(1)
            assert q.get(timeout=1) == 1
            return threading.get_native_id()
        async def main():
            loop = asyncio.get_running_loop()
            natives = await asyncio.gather(*(asyncio.to_thread(in_worker) for _ in range(4)))
            assert main_native not in natives, natives
            assert await loop.run_in_executor(None, threading.get_native_id) != main_native
            # Executor results wake the loop at once, with no timer pending.
            t0 = time.monotonic()
            for _ in range(20):
                await loop.run_in_executor(None, time.sleep, 0.001)
            assert time.monotonic() - t0 < 1.0
            # A worker wakes a green waiter through a patched Event, promptly.
            ev = threading.Event()
            loop.call_later(0.05, lambda: loop.run_in_executor(None, ev.set))
            t0 = time.monotonic()
            assert ev.wait(5)
            assert time.monotonic() - t0 < 1.0
            print("ok")
        greenloop.run(main())
        """
    )
    assert lines(proc) == ["ok"]


def test_user_thread_pool_executor_runs_on_green_threads() -> None:
    proc = run(
        """
        monkey.patch_all()
        import concurrent.futures, threading, time
        main_native = threading.get_native_id()
        def job(i):
            time.sleep(0.3)
            return i * i, threading.get_native_id()
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as ex:
            results = list(ex.map(job, range(400)))
        assert [r for r, _ in results] == [i * i for i in range(400)]
        assert {n for _, n in results} == {main_native}
        assert time.monotonic() - t0 < 2.5, time.monotonic() - t0
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(job, i) for i in range(8)]
            done, _ = concurrent.futures.wait(futs, timeout=5)
            assert len(done) == 8
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


def test_locks_created_before_patching_keep_working() -> None:
    proc = run(
        """
        import logging, threading, io
        early_rlock = threading.RLock()
        early_lock = threading.Lock()
        stream = io.StringIO()
        logging.basicConfig(stream=stream, level=logging.INFO, format="%(threadName)s %(message)s")
        monkey.patch_all()
        import time
        def work(i):
            with early_rlock:
                with early_rlock:
                    pass
            with early_lock:
                pass
            time.sleep(0.01)
            logging.info("hello %d", i)
        ts = [threading.Thread(target=work, args=(i,), name=f"w{i}") for i in range(50)]
        [t.start() for t in ts]; [t.join() for t in ts]
        out = stream.getvalue().splitlines()
        assert len(out) == 50 and "w7 hello 7" in out, out[:3]
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


# -- exit -----------------------------------------------------------------------------------


def test_program_exits_after_its_non_daemon_green_threads() -> None:
    proc = run(
        """
        monkey.patch_all()
        import threading, time
        def late(msg, delay):
            time.sleep(delay)
            print(msg, flush=True)
        threading.Thread(target=late, args=("worker-done", 0.2)).start()
        threading.Thread(target=late, args=("daemon-never", 30), daemon=True).start()
        print("main-done", flush=True)
        """
    )
    assert lines(proc) == ["main-done", "worker-done"]


def test_sys_exit_code_with_threads_running() -> None:
    proc = run(
        """
        monkey.patch_all()
        import sys, threading, time
        threading.Thread(target=lambda: (time.sleep(0.1), print("joined", flush=True))).start()
        sys.exit(3)
        """,
        check=False,
    )
    assert proc.returncode == 3 and lines(proc) == ["joined"], proc


# -- python -m greenloop ---------------------------------------------------------------------

APP = """
import asyncio, os, sys, threading, time
print("argv", sys.argv[1:], os.path.basename(sys.argv[0]))
print("name", __name__)
print("path0", sys.path[0])
def work(i):
    time.sleep(0.3)
    done.append(i)
done = []
threads = [threading.Thread(target=work, args=(i,)) for i in range(500)]
for t in threads:
    t.start()
async def amain():
    return type(asyncio.get_running_loop()).__module__
print("loop", asyncio.run(amain()))
print("main-done", len(done) < 500, flush=True)
import atexit
atexit.register(lambda: print("at-exit", len(done), flush=True))
"""


def run_cli(args: list[str], cwd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenloop", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cli_runs_a_script_and_waits_for_its_threads(tmp_path: Path) -> None:
    app = tmp_path / "sub" / "app.py"
    app.parent.mkdir()
    app.write_text(APP)
    t0 = time.monotonic()
    proc = run_cli([str(app), "one", "--two"], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "argv ['one', '--two'] app.py",
        "name __main__",
        f"path0 {app.parent}",
        "loop greenloop._loop",
        "main-done True",
        "at-exit 500",
    ], proc.stdout
    assert time.monotonic() - t0 < 10


def test_cli_runs_a_module(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "app.py").write_text(APP)
    proc = run_cli(["-m", "pkg.app", "x"], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == ["argv ['x'] app.py", "name __main__", f"path0 {tmp_path}"]
    assert proc.stdout.splitlines()[-1] == "at-exit 500"


@pytest.mark.parametrize(
    ("body", "code", "stderr"),
    [
        ("import sys; sys.exit(7)", 7, ""),
        ("raise SystemExit('bye')", 1, "bye"),
        ("1 / 0", 1, "ZeroDivisionError"),
        ("raise KeyboardInterrupt", -signal.SIGINT, "KeyboardInterrupt"),
    ],
)
def test_cli_exit_codes_are_plain_pythons(tmp_path: Path, body: str, code: int, stderr: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(0.1,)).start()\n" + body
    )
    plain = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, check=False)
    green = run_cli([str(app)], cwd=str(tmp_path))
    assert plain.returncode == green.returncode == code, (plain, green)
    assert stderr in green.stderr and stderr in plain.stderr


def test_cli_ctrl_c_interrupts_a_blocked_main_thread(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "import threading, time\n"
        "t = threading.Thread(target=time.sleep, args=(60,), daemon=True)\n"
        "t.start()\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    t.join()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    raise\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "greenloop", str(app)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert out == "interrupted\n" and "KeyboardInterrupt" in err
    assert proc.returncode == -signal.SIGINT


def test_cli_usage_and_missing_script(tmp_path: Path) -> None:
    proc = run_cli([], cwd=str(tmp_path))
    assert proc.returncode == 2 and "usage: python -m greenloop" in proc.stderr
    proc = run_cli(["missing.py"], cwd=str(tmp_path))
    assert proc.returncode == 2 and "can't open file" in proc.stderr


def test_tls_server_and_clients_on_green_threads() -> None:
    proc = run(
        """
        import ssl, trustme  # imported before patching, with a context made before it too
        ca = trustme.CA()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(server_ctx)
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        monkey.patch_all()
        import socket, threading, time
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        tls_listener = server_ctx.wrap_socket(listener, server_side=True)
        def handle(conn):
            with conn:
                data = conn.recv(100)
                time.sleep(0.3)
                conn.sendall(data[::-1])
                conn.unwrap().close()
        def serve():
            while True:
                conn, _ = tls_listener.accept()  # handshake on a green thread
                threading.Thread(target=handle, args=(conn,), daemon=True).start()
        threading.Thread(target=serve, daemon=True).start()
        got = []
        def client(i):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with client_ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    assert isinstance(s, ssl.SSLSocket) and s.version()
                    s.sendall(b"abc%d" % i)
                    got.append(s.recv(100))
                    s.unwrap()
        t0 = time.monotonic()
        ts = [threading.Thread(target=client, args=(i,)) for i in range(100)]
        [t.start() for t in ts]; [t.join() for t in ts]
        assert sorted(got) == sorted((b"abc%d" % i)[::-1] for i in range(100)), got[:3]
        assert time.monotonic() - t0 < 5
        # A read timeout on a TLS socket.
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.settimeout(0.1)
                try:
                    s.recv(10)
                except TimeoutError:
                    print("timeout")
        print("ok")
        """
    )
    assert lines(proc) == ["timeout", "ok"]


def test_subprocess_os_and_signal_cooperate() -> None:
    proc = run(
        """
        monkey.patch_all()
        import os, signal, subprocess, sys, threading, time
        t0 = time.monotonic()
        out = []
        def child(i):
            out.append(subprocess.check_output(
                [sys.executable, "-c", "import time, sys; time.sleep(0.5); print(sys.argv[1])", str(i)]
            ).strip())
        ts = [threading.Thread(target=child, args=(i,)) for i in range(8)]
        [t.start() for t in ts]
        # The main thread keeps running while the children sleep.
        ticks = 0
        while any(t.is_alive() for t in ts):
            time.sleep(0.05); ticks += 1
        assert sorted(out) == [b"%d" % i for i in range(8)], out
        assert ticks >= 5, ticks
        # run() with input, and timeouts on communicate() and wait().
        r = subprocess.run([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"],
                           input=b"abc", capture_output=True, check=True)
        assert r.stdout.strip() == b"ABC"
        try:
            subprocess.run([sys.executable, "-c", "import time; time.sleep(10)"], timeout=0.3)
        except subprocess.TimeoutExpired:
            pass
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10)"])
        try:
            p.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            p.kill()
        assert p.wait() == -signal.SIGKILL
        # os.waitpid on a pidfd and os.read on a pipe, while other green threads run.
        r_fd, w_fd = os.pipe()
        got = []
        reader = threading.Thread(target=lambda: got.append(os.read(r_fd, 10)))
        reader.start()
        time.sleep(0.05)
        assert not got
        os.write(w_fd, b"pipe")
        reader.join()
        assert got == [b"pipe"]
        pid = subprocess.Popen([sys.executable, "-c", "pass"]).pid
        assert os.waitpid(pid, 0)[0] == pid
        # A signal handler runs on a green thread, where it may block cooperatively.
        seen = []
        def handler(signum, frame):
            time.sleep(0.01)
            seen.append((signum, greenloop.current_green_thread() is not None))
        signal.signal(signal.SIGUSR1, handler)
        assert signal.getsignal(signal.SIGUSR1) is handler
        os.kill(os.getpid(), signal.SIGUSR1)  # no loop running: the handler runs at once
        assert seen == [(signal.SIGUSR1, False)], seen
        threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGUSR1)).start()
        time.sleep(0.2)  # the loop runs: the handler runs on a green thread of its own
        assert seen[1:] == [(signal.SIGUSR1, True)], seen
        assert time.monotonic() - t0 < 8
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]


SIGNAL_PROGRAM = """
import asyncio, os, signal, sys, threading, time
class Boom(Exception):
    pass
def handler(signum, frame):
    time.sleep(0.01)  # a handler may block (cooperatively, under greenloop)
    raise Boom("from handler")
signal.signal(signal.SIGUSR1, handler)
def kill_soon(sig=signal.SIGUSR1):
    threading.Timer(0.1, os.kill, (os.getpid(), sig)).start()
kill_soon()
try:
    time.sleep(10)  # the main code, blocked
except Boom as exc:
    print("sleep:", exc)
kill_soon(signal.SIGINT)
try:
    time.sleep(10)
except KeyboardInterrupt:
    print("sleep: KeyboardInterrupt")
# Everything still works afterwards.
t = threading.Thread(target=time.sleep, args=(0.01,))
t.start(); t.join()
async def main():
    kill_soon()
    await asyncio.sleep(10)
try:
    run(main())
except Boom as exc:
    print("run:", exc)
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(3))
kill_soon(signal.SIGTERM)
time.sleep(10)
print("not reached")
"""


@pytest.mark.parametrize("patched", [False, True], ids=["plain", "greenloop"])
def test_signal_handler_exceptions_reach_the_main_code(patched: bool) -> None:
    # As in plain Python: an exception raised by a handler (or SIGINT's default one)
    # interrupts the blocked main code, or leaves asyncio.run(); SystemExit sets the code.
    prelude = (
        "import greenloop\ngreenloop.patch_all()\nrun = greenloop.run\n"
        if patched
        else "import asyncio\nrun = asyncio.run\n"
    )
    t0 = time.monotonic()
    proc = run(SIGNAL_PROGRAM, prelude=prelude, check=False)
    assert proc.returncode == 3, proc
    assert proc.stdout.splitlines() == [
        "sleep: from handler",
        "sleep: KeyboardInterrupt",
        "run: from handler",
    ], proc
    assert "Traceback" not in proc.stderr, proc.stderr  # raised, not logged
    assert time.monotonic() - t0 < 8


def test_signal_handler_exception_leaves_a_task_blocked_in_a_patched_call() -> None:
    proc = run(
        """
        monkey.patch_all()
        import asyncio, os, signal, threading, time
        signal.signal(signal.SIGUSR1, lambda signum, frame: 1 / 0)
        finished = []
        async def blocked():
            try:
                time.sleep(10)  # blocking-style call in a task: only this task waits
            finally:
                finished.append("blocked")
        async def main():
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            await asyncio.gather(blocked(), asyncio.sleep(10))
        t0 = time.monotonic()
        try:
            greenloop.run(main())
        except ZeroDivisionError:
            print("raised")
        assert time.monotonic() - t0 < 5
        assert finished == ["blocked"], finished  # greenloop.run() cancelled and unwound it
        print("ok")
        """
    )
    assert lines(proc) == ["raised", "ok"]
    assert "Traceback" not in proc.stderr, proc.stderr


def test_ctrl_c_in_a_green_thread_reaches_the_main_code_and_the_loop_goes_on() -> None:
    code = """
        import _thread, threading, time
        for _ in range(3):
            t = threading.Thread(target=_thread.interrupt_main)  # Ctrl-C, from a thread
            try:
                t.start(); t.join()
            except KeyboardInterrupt:
                print("interrupted", flush=True)
            t.join()
            time.sleep(0.01)  # the loop runs normally afterwards
        print("ok")
        """
    plain = run(code, prelude="import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n")
    patched = run(
        code,
        prelude="import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        + PRELUDE
        + "monkey.patch_all()\n",
    )
    assert plain.stdout == patched.stdout == "interrupted\n" * 3 + "ok\n", (plain, patched)


def test_cli_signal_handler_exit_code(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "import os, signal, sys, threading, time\n"
        "signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(5))\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
        "time.sleep(30)\n"
    )
    plain = subprocess.run(
        [sys.executable, str(app)], capture_output=True, text=True, timeout=20, check=False
    )
    green = run_cli([str(app)], cwd=str(tmp_path), timeout=20)
    assert plain.returncode == green.returncode == 5, (plain, green)
    assert green.stderr == "", green.stderr


FILE_IO_PROBE = """
import _thread, os, tempfile, threading, time
from greenloop.green import os as green_os
path = os.path.join(tempfile.mkdtemp(), "data")
fd = os.open(path, os.O_RDWR | os.O_CREAT)
assert os.write(fd, b"hello world") == 11
assert os.pwrite(fd, b"W", 6) == 1
os.fsync(fd); os.fdatasync(fd)
assert os.pread(fd, 5, 6) == b"World"
os.lseek(fd, 0, 0)
assert os.read(fd, 100) == b"hello World"
# Make the original read slow and record where it runs, to see the calls overlap.
real_read, real_sleep = green_os._orig_read, greenloop.get_original("time", "sleep")
where = []
def slow_read(fd, n):
    where.append(_thread.get_native_id())
    real_sleep(0.3)
    return real_read(fd, n)
green_os._orig_read = slow_read
main_native = _thread.get_native_id()
got = []
ts = [threading.Thread(target=lambda: got.append(os.pread(fd, 5, 0) + os.read(fd, 0)))
      for _ in range(4)]
t0 = time.monotonic()
[t.start() for t in ts]; [t.join() for t in ts]
elapsed = time.monotonic() - t0
assert got == [b"hello"] * 4, got
"""


def test_file_io_stays_blocking_without_the_opt_in() -> None:
    proc = run(
        "monkey.patch_all()\n"
        + FILE_IO_PROBE
        + """
assert not green_os.file_io_offloaded()
assert set(where) == {main_native} and elapsed >= 1.2, (where, elapsed)
print("ok")
"""
    )
    assert lines(proc) == ["ok"]


def test_file_io_offloaded_to_real_threads_when_opted_in() -> None:
    proc = run(
        "monkey.patch_all(file_io=True)\n"
        + FILE_IO_PROBE
        + """
assert green_os.file_io_offloaded()
assert main_native not in where and len(where) == 4, where
assert elapsed < 1.0, elapsed  # the four reads overlapped
# In an asyncio task only the task waits; a plain loop callback calls directly.
import asyncio
async def main():
    loop = asyncio.get_running_loop()
    ticks = []
    async def ticker():
        for _ in range(5):
            ticks.append(1); await asyncio.sleep(0.02)
    tick = asyncio.create_task(ticker())
    assert os.read(fd, 0) == b""  # offloaded: 0.3 s, the ticker runs meanwhile
    assert len(ticks) >= 4, ticks
    await tick
    done = loop.create_future()
    loop.call_soon(lambda: done.set_result(os.read(fd, 0)))
    assert await done == b""
    return where[-1]
assert greenloop.run(main()) == main_native  # the callback's read ran right there
green_os._orig_read = real_read
# run_in_os_thread: any callable, its exception, keyword arguments.
assert green_os.run_in_os_thread(_thread.get_native_id) != main_native
try:
    green_os.run_in_os_thread(int, "x", base=16)
except ValueError:
    pass
else:
    raise AssertionError("no error")
with open(path, "rb") as f:
    assert green_os.run_in_os_thread(f.read) == b"hello World"
# Pipes keep their readiness waits; an explicit False turns the offload off again.
monkey.patch_all(file_io=False)
assert not green_os.file_io_offloaded()
os.close(fd)
print("ok")
"""
    )
    assert lines(proc) == ["ok"]


def test_cli_file_io_opt_in_from_the_environment(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("from greenloop.green import os\nprint(os.file_io_offloaded())\n")
    for setting, offloaded in (("1", "True"), ("0", "False")):
        proc = subprocess.run(
            [sys.executable, "-m", "greenloop", str(app)],
            capture_output=True,
            text=True,
            env=dict(os.environ, GREENLOOP_FILE_IO=setting),
            timeout=30,
            check=False,
        )
        assert proc.stdout == f"{offloaded}\n", proc


def test_patch_all_while_real_threads_run() -> None:
    proc = run(
        """
        import threading, time, queue
        q = queue.Queue()
        stop = threading.Event()
        def real_worker():  # a real OS thread started before patching, using the originals
            while not stop.is_set():
                q.put(threading.get_native_id())
                time.sleep(0.01)
        t = threading.Thread(target=real_worker)
        t.start()
        monkey.patch_all()
        import time as patched_time
        patched_time.sleep(0.1)  # the main thread drives the loop; the real thread runs on
        stop.set()
        t.join()
        natives = {q.get() for _ in range(q.qsize())}
        assert natives == {t.native_id}, natives
        print("ok")
        """
    )
    assert lines(proc) == ["ok"]
