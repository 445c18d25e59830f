"""``python -m greenloop app.py [args]`` / ``python -m greenloop -m module [args]``.

Runs an unmodified threaded program on green threads: ``patch_all()`` first, before the
program imports anything, then the program as ``__main__`` on the main thread's main greenlet
(its "main green thread"), with ``sys.argv`` and ``sys.path[0]`` set as ``python app.py`` or
``python -m module`` would set them. greenloop's event loop policy is installed too, so an
``asyncio.run()`` in the program runs on a greenloop loop beside the green threads.

Exit is the interpreter's own: when the main code is done, the interpreter calls
``threading._shutdown()``, which (patched) waits for every non-daemon green thread, exactly as
a threaded program exits. An uncaught exception, ``SystemExit`` and ``KeyboardInterrupt``
propagate out of here unchanged, so the exit code, the traceback and Ctrl-C behave as in
plain Python (the traceback also shows this module's and runpy's frames, as ``-m`` does).
"""

from __future__ import annotations

import os
import runpy
import sys

USAGE = """\
usage: python -m greenloop script.py [args ...]
       python -m greenloop -m module [args ...]

Run an unmodified threaded program with greenloop.patch_all(): its threads become green
threads on greenloop's event loop, and its blocking calls wait on that loop."""


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if args else sys.stderr)
        raise SystemExit(0 if args else 2)

    # Patch before anything of the program is imported (see greenloop.monkey).
    import greenloop
    from greenloop.monkey import patch_all

    patch_all()
    if sys.version_info < (3, 14):
        greenloop.install()

    if args[0] == "-m":
        if len(args) < 2:
            print("Argument expected for the -m option", file=sys.stderr)
            raise SystemExit(2)
        # As `python -m module`: sys.path[0] stays the current directory (it already is,
        # since we were started with -m), argv[0] becomes the module's file.
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return

    script = args[0]
    if script.startswith("-"):
        print(f"unknown option {script!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    # As `python script.py`: argv is the script and its arguments; sys.path[0] is the
    # script's directory, not the one greenloop was started from.
    if not os.path.exists(script):
        # What `python missing.py` says, with its exit code.
        print(
            f"{sys.executable}: can't open file {os.path.abspath(script)!r}: "
            f"[Errno 2] No such file or directory",
            file=sys.stderr,
        )
        raise SystemExit(2)
    sys.argv = args
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
