"""The document root and the page cache: which file a request-target names, and its bytes.

Shared by Knot and by the baselines (aiohttp, uvloop + httptools), so that every server in the
comparison resolves paths with the same checks and serves from the same kind of cache.

Security rules, in the order they are applied (a request-target is bytes off the wire):

1. origin-form (``/a/b?q``) is used as is; absolute-form (``http://host/a/b``) is reduced to
   its path, as RFC 9112 §3.2.2 asks of servers; anything else (``*``, ``host:port``) is 400.
2. the path is percent-decoded exactly once. Afterwards a NUL byte, a backslash or an encoded
   slash (``%2f``) is 400: none has a meaning in a URL path that maps to a file, and each is a
   classic way to smuggle a separator past a check. A double-encoded ``%252e%252e`` decodes to
   the literal name ``%2e%2e``, which is just a file that does not exist.
3. segments ``.`` and empty segments are dropped; a ``..`` segment is 400 (we never climb).
4. on a cache miss, the joined path is resolved with ``realpath`` and must still lie inside the
   (resolved) root, so a symlink that leaves the root is 404; the final open uses O_NOFOLLOW
   on the resolved path and must yield a regular file (no devices, FIFOs or directories).

Only step 4 touches the file system, and it runs on a real OS thread (``load``).
"""

from __future__ import annotations

import collections
import functools
import mimetypes
import os
import stat
from email.utils import formatdate
from urllib.parse import unquote_to_bytes

import httptools

INDEX = b"index.html"
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Entry:
    """One file as served: its bytes (None if too big to cache) and precomputed headers."""

    __slots__ = ("body", "ctype", "fields", "headers", "last_modified", "mtime", "path", "size")

    def __init__(self, path: bytes, body: bytes | None, size: int, mtime: int, ctype: str) -> None:
        self.path = path  # the resolved path, used to stream files too big for the cache
        self.body = body
        self.size = size
        self.mtime = mtime  # whole seconds: Last-Modified has no finer resolution
        self.ctype = ctype
        self.last_modified = formatdate(mtime, usegmt=True)
        self.headers = f"Content-Type: {ctype}\r\nLast-Modified: {self.last_modified}\r\n".encode()
        self.fields = self.headers + b"Content-Length: %d\r\n" % size  # of a 200 answer


def content_type(path: bytes) -> str:
    ctype, encoding = mimetypes.guess_type(os.fsdecode(path), strict=False)
    if ctype is None or encoding is not None:  # .gz and friends: serve the bytes as they are
        return "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        return ctype + "; charset=utf-8"
    return ctype


@functools.lru_cache(maxsize=4096)
def cache_key(target: bytes) -> bytes | int:
    """Map a request-target to a normalised relative path (the cache key), or a 400 status.

    A pure function of its argument (no system calls), so its results are memoised: it runs
    for every request, and clients ask for the same few targets over and over.
    """
    if target[:1] == b"/":
        path = target.split(b"?", 1)[0]
    elif target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        try:
            path = httptools.parse_url(target).path or b"/"
        except httptools.HttpParserInvalidURLError:
            return 400
    else:
        return 400
    if b"\\" in path or b"%2f" in path.lower() or b"%5c" in path.lower():
        return 400
    path = unquote_to_bytes(path)
    if b"\x00" in path or b"\\" in path:
        return 400
    parts = []
    for seg in path.split(b"/"):
        if seg == b"..":
            return 400
        if seg and seg != b".":
            parts.append(seg)
    if not parts or path.endswith(b"/"):
        parts.append(INDEX)
    return b"/".join(parts)


def load(root: bytes, key: bytes, max_body: int) -> Entry | int:
    """Resolve ``key`` under ``root`` (both resolved bytes paths) and read the file.

    Blocking: run it on a real OS thread. Returns an Entry, or 404 / 500. Files bigger than
    ``max_body`` come back with ``body=None`` and are streamed by the caller.
    """
    real = os.path.realpath(os.path.join(root, key))
    if not real.startswith(root.rstrip(b"/") + b"/"):
        return 404  # a symlink (or a component) that leaves the root
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError:
        return 404  # missing, not a directory, a symlink swapped in since realpath, no access
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return 404
        body = None
        if st.st_size <= max_body:
            body = read_exactly(fd, st.st_size, 0)
            if body is None:
                return 500  # the file changed size under us; the next request tries again
        return Entry(real, body, st.st_size, int(st.st_mtime), content_type(real))
    finally:
        os.close(fd)


def read_exactly(fd: int, size: int, offset: int) -> bytes | None:
    """Read ``size`` bytes at ``offset``, or None if the file is shorter than that."""
    chunks = []
    while size:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


class PageCache:
    """An LRU map of cache key -> Entry, bounded by the total size of the bodies it holds.

    Not thread-safe by itself: on green threads nothing can switch inside these methods (they
    make no blocking call), and on OS threads the caller holds a lock around them.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self.hits = self.misses = 0
        self._entries: collections.OrderedDict[bytes, Entry] = collections.OrderedDict()

    def get(self, key: bytes) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry

    def put(self, key: bytes, entry: Entry) -> None:
        if entry.body is None or entry.size > self.capacity:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= old.size
        self._entries[key] = entry
        self.size += entry.size
        while self.size > self.capacity:
            _, victim = self._entries.popitem(last=False)
            self.size -= victim.size

    def __len__(self) -> int:
        return len(self._entries)


def resolved_root(root: str) -> bytes:
    real = os.path.realpath(os.fsencode(root))
    if not os.path.isdir(real):
        raise SystemExit(f"document root {root!r} is not a directory")
    return real
