"""Reading remote files under faults: timeouts, retries with back-off, one-line errors.

Servers and networks fail in ways a local disk does not: a connection that never opens, a
server that goes silent or sends one byte a second, a body that ends before the Content-Length
it announced, a 503. Every remote read goes through `RetryingStream`, which retries such
transient errors (`is_transient`) with exponential back-off, reopening the file at the byte
it had reached, and after the last try raises `RemoteError` (an OSError) whose message names
the URL and says what happened, in one line.

http(s) files are read by `HttpStream`: one streaming GET per open, `Range: bytes=<offset>-`,
read in pieces the caller asks for (never a whole body at once, whatever the server sends),
raw bytes only (`Accept-Encoding: identity`, nothing decompressed). A transfer is too slow when
it moves fewer than LOW_SPEED_BYTES in one timeout window of time spent waiting for it (curl's
--speed-limit); the window, the connect and the silent-socket timeouts are all
`timeout_seconds()`: REMOTE_TIMEOUT_SECONDS, or the environment variable SMILE_REMOTE_TIMEOUT.
"""

from __future__ import annotations

import os
import time
from typing import IO, Callable

import requests
import tenacity
import urllib3

from smile_data.closing import ClosedOnExit

TIMEOUT_VARIABLE = "SMILE_REMOTE_TIMEOUT"
REMOTE_TIMEOUT_SECONDS = 30.0  # to connect, between two bytes, per low-speed window
LOW_SPEED_BYTES = 64 << 10  # per timeout window: about 2 KB/s at 30 s, far below any real link
ATTEMPTS = 4  # tries of one operation: the first and three retries
BACKOFF_FIRST_SECONDS, BACKOFF_MAX_SECONDS = 0.5, 8.0  # waits double between tries
PIECE_BYTES = 1 << 20  # the most one socket read asks for
SKIP_BYTES = 8 << 20  # a seek forward up to this far reads on rather than opening a new request
RANGE_NOT_SATISFIABLE = 416  # a range that starts at or past the end: nothing left to read
RETRIED_STATUSES = (408, 425, 429, 500, 502, 503, 504)  # the server may answer next time


class RemoteError(OSError):
    """A remote file that could not be read; the message names it and says why."""


class TransientError(OSError):
    """A failure that a later try may not meet (a stall, a 503)."""


class StalledTransfer(TransientError):
    """A transfer slower than LOW_SPEED_BYTES per timeout window."""


def timeout_seconds() -> float:
    """REMOTE_TIMEOUT_SECONDS, or SMILE_REMOTE_TIMEOUT when set (a positive number)."""
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return REMOTE_TIMEOUT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise ValueError(f"{TIMEOUT_VARIABLE}={text!r}: must be a positive number of seconds")
    return value


def is_transient(error: BaseException) -> bool:
    """Whether a later try may succeed: network failures, timeouts, stalls, server errors."""
    if isinstance(error, (FileNotFoundError, PermissionError, RemoteError)):
        return False
    transient: tuple[type[BaseException], ...] = (
        TransientError, TimeoutError, ConnectionError, requests.ConnectionError,
        requests.Timeout, requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError)
    try:
        import aiohttp  # the object stores' clients raise its errors

        transient += (aiohttp.ClientError,)
    except ImportError:
        pass
    return isinstance(error, transient)


def describe(error: BaseException) -> str:
    """What went wrong, in words, on one line."""
    seconds = timeout_seconds()
    if isinstance(error, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return f"no answer within {seconds:g} s ({TIMEOUT_VARIABLE})"
    text = " ".join(str(error).split()) or type(error).__name__
    if "IncompleteRead" in text or isinstance(error, urllib3.exceptions.ProtocolError):
        return f"the connection ended before the announced Content-Length ({text[:200]})"
    return text[:300]


def retrying(location: str, operation: Callable[[], object], what: str = "reading") -> object:
    """`operation()`, retried on transient errors with back-off; RemoteError after the last."""
    retry = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=BACKOFF_FIRST_SECONDS, max=BACKOFF_MAX_SECONDS),
        retry=tenacity.retry_if_exception(is_transient), reraise=True)
    try:
        return retry(operation)
    except (FileNotFoundError, PermissionError, RemoteError):
        raise
    except Exception as error:
        if not is_transient(error):
            raise
        raise RemoteError(f"{location}: {what} failed {ATTEMPTS} times, last: "
                          f"{describe(error)}") from None


def _raise_unless_success(url: str, status: int, reason: str) -> None:
    """Raise for an HTTP status other than 200 or 206: TransientError where a retry may help
    (RETRIED_STATUSES), else RemoteError naming `url`."""
    if status in RETRIED_STATUSES:
        raise TransientError(f"HTTP {status} {reason}")
    if status not in (200, 206):
        raise RemoteError(f"{url}: HTTP {status} {reason}")


class HttpStream:
    """The bytes of one http(s) URL from `offset` on, by a single streaming GET."""

    def __init__(self, url: str, offset: int = 0):
        self.url, self.timeout = url, timeout_seconds()
        headers = {"Range": f"bytes={offset}-", "Accept-Encoding": "identity"}
        self.response = requests.get(url, headers=headers, stream=True,
                                     timeout=(self.timeout, self.timeout))
        self.done = False
        try:
            self._check_status(offset)
        except BaseException:
            self.response.close()
            raise
        self.waited, self.moved = 0.0, 0  # of the current low-speed window

    def _check_status(self, offset: int) -> None:
        status = self.response.status_code
        if status == 404:
            raise FileNotFoundError(f"{self.url}: not found (HTTP 404)")
        if status == RANGE_NOT_SATISFIABLE:
            self.done = True  # nothing from `offset` on
            return
        _raise_unless_success(self.url, status, self.response.reason)
        if status == 200 and offset:
            raise RemoteError(f"{self.url}: the server ignores range requests, so a read "
                              f"cannot continue at byte {offset}")
        encoding = self.response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise RemoteError(f"{self.url}: the server sent {encoding}-encoded bytes, not the "
                              "file's own (Accept-Encoding: identity was asked)")

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left when negative); fewer only at the end."""
        pieces, have = [], 0
        while not self.done and (size < 0 or have < size):
            want = PIECE_BYTES if size < 0 else min(PIECE_BYTES, size - have)
            started = time.monotonic()
            piece = self.response.raw.read1(want, decode_content=False)
            self._account(time.monotonic() - started, len(piece))
            if not piece:
                self.done = True
                break
            pieces.append(piece)
            have += len(piece)
        return b"".join(pieces)

    def _account(self, seconds: float, count: int) -> None:
        """Time spent waiting for bytes (not the caller's own time between reads)."""
        self.waited += seconds
        self.moved += count
        if self.waited >= self.timeout:
            if self.moved < LOW_SPEED_BYTES:
                raise StalledTransfer(f"under {LOW_SPEED_BYTES} bytes in {self.timeout:g} s "
                                      f"({TIMEOUT_VARIABLE}): the transfer is too slow")
            self.waited, self.moved = 0.0, 0

    def close(self) -> None:
        self.response.close()


class RetryingStream(ClosedOnExit):
    """A readable binary stream of a remote file whose reads are retried (see the module
    docstring); `open_at(offset)` opens the underlying stream at a byte."""

    def __init__(self, location: str, open_at: Callable[[int], IO[bytes]], offset: int = 0):
        self.name, self._open_at, self.position = location, open_at, offset
        self._stream: IO[bytes] | None = retrying(location, lambda: open_at(offset), "opening")

    def _read_once(self, size: int) -> bytes:
        if self._stream is None:
            self._stream = self._open_at(self.position)
        try:
            return self._stream.read(size)
        except BaseException:
            self._drop()
            raise

    def read(self, size: int = -1) -> bytes:
        data = retrying(self.name, lambda: self._read_once(size))
        self.position += len(data)
        return data

    def tell(self) -> int:
        return self.position

    def seek(self, target: int, whence: int = os.SEEK_SET) -> int:
        """Move to byte `target`: a short way forward by reading (one request goes on), else
        by opening the file there on the next read."""
        if whence == os.SEEK_CUR:
            target += self.position
        elif whence != os.SEEK_SET:
            raise OSError(f"{self.name}: a remote stream seeks from its start or position only")
        if target < 0:
            raise ValueError(f"{self.name}: negative seek position {target}")
        if self._stream is not None and 0 <= target - self.position <= SKIP_BYTES:
            while self.position < target and self.read(min(PIECE_BYTES, target - self.position)):
                pass
        if target != self.position:
            self._drop()
            self.position = target
        return self.position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                pass

    def close(self) -> None:
        self._drop()


HEAD_UNSUPPORTED = (405, 501)  # servers that answer GET only


def http_size(url: str, required: bool = True) -> int | None:
    """The size of an http(s) file (None if it does not exist), from a HEAD request, or from
    a one-byte range GET where the server refuses HEAD; retried like every read. Without
    `required`, a file whose size the server does not tell is -1."""
    return retrying(url, lambda: _http_size_once(url, required), "asking the size")


def _http_size_once(url: str, required: bool) -> int | None:
    timeout = timeout_seconds()
    headers = {"Accept-Encoding": "identity"}
    with requests.head(url, headers=headers, allow_redirects=True, timeout=(timeout, timeout)) as response:
        status, length = response.status_code, response.headers.get("Content-Length")
        reason = response.reason
    if status in HEAD_UNSUPPORTED:
        with requests.get(url, headers={**headers, "Range": "bytes=0-0"}, stream=True,
                          timeout=(timeout, timeout)) as response:
            status, reason = response.status_code, response.reason
            length = response.headers.get("Content-Range", "").rpartition("/")[2] or None
    if status == 404:
        return None
    _raise_unless_success(url, status, reason)
    if length is None or not length.isdigit():
        if required:
            raise RemoteError(f"{url}: the server does not say the file's size")
        return -1
    return int(length)
