"""The event-driven baseline: the same document tree served by aiohttp.

    python -m demos.aiohttp_baseline --root DIR --port PORT [--host H]
                                     [--loop asyncio|uvloop] [--variant cache|static]

``cache`` (default): one handler that resolves paths with Knot's checks and serves from the
same kind of in-memory LRU page cache (misses read on the default thread pool), so that the
comparison with Knot is about the server architecture, not about caching. ``static``:
aiohttp's idiomatic ``web.static`` route, which opens and sends the file for every request.

Prints "aiohttp: serving DIR on http://HOST:PORT/ ..." once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from aiohttp import web

from demos import gc_policy
from demos.knot.files import Entry, PageCache, cache_key, load, resolved_root

MAX_ENTRY = 4 << 20  # as Knot: bigger files are not cached


def cached_handler(root: str, cache_bytes: int) -> Any:
    """The request handler: Knot's path checks and page cache, aiohttp's HTTP."""
    real_root = resolved_root(root)
    cache = PageCache(cache_bytes)

    async def handle(request: web.Request) -> web.StreamResponse:
        key = cache_key(request.raw_path.encode("utf-8", "surrogateescape"))
        if isinstance(key, int):
            raise web.HTTPBadRequest() if key == 400 else web.HTTPNotFound()
        entry = cache.get(key)
        if entry is None:
            loop = asyncio.get_running_loop()
            entry = await loop.run_in_executor(None, load, real_root, key, MAX_ENTRY)
            if not isinstance(entry, Entry):
                raise web.HTTPNotFound() if entry == 404 else web.HTTPInternalServerError()
            cache.put(key, entry)
        if entry.body is None:
            return web.FileResponse(os.fsdecode(entry.path))
        ims = request.if_modified_since
        headers = {"Content-Type": entry.ctype, "Last-Modified": entry.last_modified}
        if ims is not None and entry.mtime <= ims.timestamp():
            return web.Response(status=304, headers={"Last-Modified": entry.last_modified})
        return web.Response(body=entry.body, headers=headers)

    return handle


def make_app(root: str, variant: str, cache_bytes: int) -> web.Application:
    app = web.Application()
    if variant == "static":
        app.router.add_static("/", root)
    else:
        app.router.add_get("/{tail:.*}", cached_handler(root, cache_bytes))  # HEAD included
    return app


async def serve(args: argparse.Namespace) -> None:
    runner = web.AppRunner(make_app(args.root, args.variant, int(args.cache_mb * (1 << 20))), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=65535, reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    gc_policy.apply()
    print(
        f"aiohttp: serving {args.root} on http://{args.host}:{port}/ (loop {args.loop}, {args.variant})",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demos.aiohttp_baseline", description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    p.add_argument("--variant", choices=("cache", "static"), default="cache")
    p.add_argument("--cache-mb", type=float, default=64.0)
    args = p.parse_args()
    resolved_root(args.root)  # fail early and clearly on a bad root
    if args.loop == "uvloop":
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    else:
        runner = asyncio.Runner()
    try:
        with runner:
            runner.run(serve(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
