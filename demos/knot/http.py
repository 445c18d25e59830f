"""HTTP/1.1 on top of httptools: reading requests under limits, and writing responses.

No I/O here. ``RequestReader.feed`` takes bytes and collects complete requests; the response
builders return bytes. Knot (blocking style) and the event-style reference server
(``demos.uvloop_httptools``) share this module, so they differ only in how they wait.
"""

from __future__ import annotations

import collections
import time
from email.utils import formatdate, parsedate_to_datetime
from time import monotonic as _monotonic
from typing import Any

import httptools

from .files import Entry, cache_key

REASONS = {
    200: "OK",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
SERVER = b"Server: knot\r\n"
# Feeding the parser at most this much at a time bounds how far the byte count of an
# unfinished request head can overshoot the limit (httptools buffers a header line whole
# before calling on_header, so the limit must be checked around it, not in the callback).
_FEED_SLICE = 8192


class Limits:
    """Per-request limits (bytes)."""

    def __init__(self, url: int = 8192, headers: int = 16384, header_count: int = 100, body: int = 65536):
        self.url = url
        self.headers = headers
        self.header_count = header_count
        self.body = body


class Request:
    __slots__ = ("close", "ims", "keep_alive", "method", "status", "target")

    def __init__(self, method: bytes, target: bytes, keep_alive: bool, ims: bytes | None, status: int):
        self.method = method
        self.target = target
        self.keep_alive = keep_alive
        self.ims = ims  # If-Modified-Since, raw
        self.status = status  # 0, or an error status decided while parsing (400 for no Host)
        self.close = False


class _LimitExceeded(Exception):
    pass


class RequestReader:
    """Feed bytes in; complete requests come out of ``done`` in arrival order.

    ``feed`` returns 0, or the status of an error after which the connection must be closed
    (the requests completed before the error are still in ``done`` and are answered first).
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.done: collections.deque[Request] = collections.deque()
        self.in_request = False  # bytes of an unfinished request have arrived
        self.started = 0.0  # when its first byte arrived (time.monotonic)
        self._head_limit = limits.url + limits.headers
        self._parser = httptools.HttpRequestParser(self)
        self.on_message_begin()
        self.in_request = self._in_head = False

    def feed(self, data: bytes) -> int:
        try:
            if len(data) <= _FEED_SLICE:  # the common case: one slice
                self._parser.feed_data(data)
                if self._in_head:
                    self._head_bytes += len(data)
                    if self._head_bytes > self._head_limit:
                        return 431 if self._url_done else 414
                return 0
            for i in range(0, len(data), _FEED_SLICE):
                chunk = data[i : i + _FEED_SLICE]
                self._parser.feed_data(chunk)
                if self._in_head:
                    self._head_bytes += len(chunk)
                    if self._head_bytes > self._head_limit:
                        return 431 if self._url_done else 414
        except httptools.HttpParserUpgrade:
            # "Upgrade: ..." or CONNECT: the request itself is complete (and will be answered
            # without upgrading); whatever follows is not HTTP/1.1 we could parse.
            if self.done:
                self.done[-1].close = True
            return 0 if self.done else 400
        except httptools.HttpParserCallbackError:
            return self._error or 400
        except httptools.HttpParserError:
            return 400
        return 0

    def close(self) -> None:
        """Free the parser now. It and this reader refer to each other (its callbacks are this
        reader's bound methods): left as they are, the pair and the request state they hold
        stay in memory until a full garbage collection."""
        self._parser = None  # a closed reader reads nothing more

    def head_only(self) -> bool:
        """Whether the request being read (say, when it failed) is a HEAD: no error body."""
        return self._parser.get_method() == b"HEAD"

    # httptools callbacks
    def on_message_begin(self) -> None:
        # The per-request state, all of it (also run once by __init__).
        self.in_request = self._in_head = True
        self.started = _monotonic()
        self._url = b""
        self._head_bytes = self._nheaders = self._header_bytes = self._body_bytes = self._error = 0
        self._ims: bytes | None = None
        self._host = self._url_done = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.url:
            self._fail(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._url_done = True
        self._nheaders += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._nheaders > self.limits.header_count or self._header_bytes > self.limits.headers:
            self._fail(431)
        size = len(name)
        if size == 4 and name.lower() == b"host":
            self._host = True
        elif size == 17 and name.lower() == b"if-modified-since":
            self._ims = value
        elif size == 14 and name.lower() == b"content-length" and int(value) > self.limits.body:
            # Refuse a body we would not read before waiting for it to arrive. llhttp has
            # validated the number already (and rejects a duplicate that disagrees).
            self._fail(413)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._url_done = True

    def on_body(self, body: bytes) -> None:
        # Bodies are read and dropped (GET and HEAD have no use for one), up to a limit.
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.body:
            self._fail(413)

    def on_message_complete(self) -> None:
        p = self._parser
        status = 0 if self._host or p.get_http_version() == "1.0" else 400  # RFC 9112 §3.2
        self.done.append(Request(p.get_method(), self._url, p.should_keep_alive(), self._ims, status))
        self.in_request = self._in_head = False

    def _fail(self, status: int) -> None:
        self._error = status
        raise _LimitExceeded(status)


# -- responses -----------------------------------------------------------------------------

# The second they were made for, the Date line, and the start of every 200 answer (status,
# Date and Server lines): formatted once per second.
_date_cache: list[Any] = [0, b"", b""]


def _refresh_date(now: int) -> None:
    line = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    _date_cache[:] = [now, line, _STATUS_LINES[200] + line + SERVER]


def _dated() -> list[Any]:
    """``_date_cache``, current to the second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _refresh_date(now)
    return _date_cache


def date_header() -> bytes:
    """The Date header line, formatted once per second."""
    return _dated()[1]  # type: ignore[no-any-return]


_ims_cache: dict[bytes, float] = {}


def not_modified(req: Request, entry: Entry) -> bool:
    """If-Modified-Since says the client's copy is current (RFC 9110 §13.1.3)."""
    if req.ims is None:
        return False
    since = _ims_cache.get(req.ims)
    if since is None:
        try:
            since = parsedate_to_datetime(req.ims.decode("latin-1")).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            since = -1.0  # an unparsable date is ignored, as the RFC says
        if len(_ims_cache) > 1024:  # clients send few distinct dates; bound it anyway
            _ims_cache.clear()
        _ims_cache[req.ims] = since
    return since >= 0 and entry.mtime <= since


def route(req: Request) -> bytes | int:
    """The cache key a request asks for, or the error status to answer it with."""
    if req.status:
        return req.status
    if req.method not in (b"GET", b"HEAD"):
        return 405
    return cache_key(req.target)


def status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {REASONS[status]}\r\n".encode()


_STATUS_LINES = {status: status_line(status) for status in REASONS}


_END_KEEP = b"\r\n"
_END_CLOSE = b"Connection: close\r\n\r\n"


def file_response(req: Request, entry: Entry, keep_alive: bool) -> tuple[bytes, bool]:
    """The head of a 200 or 304 answer to ``req``; and whether a body follows."""
    end = _END_KEEP if keep_alive else _END_CLOSE
    if req.ims is not None and not_modified(req, entry):
        return _STATUS_LINES[304] + date_header() + SERVER + entry.headers + end, False
    # Every part but the date is precomputed: the status and Server lines, and the entry's
    # Content-Type, Last-Modified and Content-Length lines (Entry.fields).
    return _dated()[2] + entry.fields + end, req.method == b"GET"


# Errors after which the connection is closed (its byte stream can no longer be trusted, or
# the client is being turned away).
CLOSING = frozenset({400, 408, 413, 414, 431, 500, 503})


def cached_answer(req: Request, entry: Entry | int, out: list[bytes]) -> bool:
    """Append the whole answer to ``req`` to ``out``: ``entry`` is a file with its body in
    memory, or an error status. Returns whether the connection stays open after it.

    The answer of the servers that serve from memory only (the event-style reference and the
    bare-greenlet floor); Knot's own (server.py) also streams files too big for its cache.
    """
    keep_alive = req.keep_alive and not req.close
    if isinstance(entry, int):
        keep_alive = keep_alive and entry not in CLOSING
        out.append(error_response(entry, keep_alive, head_only=req.method == b"HEAD"))
    else:
        head, with_body = file_response(req, entry, keep_alive)
        out.append(head)
        if with_body and entry.body is not None:
            out.append(entry.body)
    return keep_alive


def error_response(status: int, keep_alive: bool, head_only: bool = False) -> bytes:
    """A complete error answer with a short text body (none for HEAD)."""
    body = b"" if head_only else f"{status} {REASONS[status]}\n".encode()
    extra = b"Allow: GET, HEAD\r\n" if status == 405 else b""
    if not keep_alive:
        extra += b"Connection: close\r\n"
    return b"%b%b%bContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%b\r\n%b" % (
        _STATUS_LINES[status],
        date_header(),
        SERVER,
        len(f"{status} {REASONS[status]}\n"),
        extra,
        body,
    )
