"""Real servers on 127.0.0.1 for tests: a static file server with range requests, moto's
S3-compatible server, and a TCP relay that slows uploads to a server. All serve a bounded number
of seconds and stop by themselves.

Python's http.server answers GET without ranges; RangeFileHandler answers `Range: bytes=a-b`
(and `a-`) with 206 and Content-Range, as web servers and CDNs that host datasets do.

A server can also misbehave on chosen files (`Faults`): answer 503 a number of times first,
announce the right Content-Length but close the connection halfway, or send an endless body.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from http import HTTPStatus
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
MAX_SERVE_SECONDS = 300     # a server left running by a failed test stops by itself
POLL_SECONDS = 0.2          # how often the serving loop looks at its stop flag
RANGE_PATTERN = re.compile(r"bytes=(\d+)-(\d*)$")
COPY_BYTES = 64 << 10
THROTTLED_CHUNKS_PER_SECOND = 20  # a throttled server sends small chunks, evenly spaced


ENDLESS_CHUNK = b"\0" * COPY_BYTES


@dataclass
class Faults:
    """Misbehaviour of a server, by file name (the last part of the URL path)."""

    unavailable: dict[str, int] = field(default_factory=dict)  # name -> 503 answers before the file
    cut_short: set[str] = field(default_factory=set)  # full Content-Length, half the bytes
    endless: set[str] = field(default_factory=set)  # 206 without a length, bytes until closed


class RangeFileHandler(BaseHTTPRequestHandler):
    """GET/HEAD of files under server.root, with single byte ranges; logs each request."""

    server: "LoopbackServer"

    def log_message(self, format: str, *args) -> None:  # quiet test output
        pass

    def _file(self) -> Path | None:
        relative = self.path.split("?", 1)[0].lstrip("/")
        path = (self.server.root / relative).resolve()
        if self.server.root not in path.parents or not path.is_file():
            return None
        return path

    def _span(self, size: int) -> tuple[int, int] | None:
        """(start, end exclusive) of the requested range, or None for the whole file."""
        header = self.headers.get("Range")
        match = RANGE_PATTERN.match(header or "")
        if not match:
            return None
        start = int(match[1])
        end = int(match[2]) + 1 if match[2] else size
        return start, min(end, size)

    def _misbehave(self, send_body: bool) -> bool:
        """Answer as the server's faults say for this file; False to answer normally."""
        faults, name = self.server.faults, self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        if faults.unavailable.get(name, 0) > 0:
            faults.unavailable[name] -= 1
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE)
            return True
        if name in faults.endless:
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()  # HTTP/1.0 without a length: the body ends when the connection does
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while send_body and not self.server.stopping.is_set():
                    self.wfile.write(ENDLESS_CHUNK)
            return True
        return False

    def _respond(self, send_body: bool) -> None:
        path = self._file()
        self.server.requests.append((self.command, self.path, self.headers.get("Range")))
        if self._misbehave(send_body):
            return
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        size = path.stat().st_size
        span = self._span(size)
        start, end = span or (0, size)
        if span and start >= size:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return
        self.send_response(HTTPStatus.PARTIAL_CONTENT if span else HTTPStatus.OK)
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if send_body:
            cut = path.name in self.server.faults.cut_short
            self._copy(path, start, start + (end - start) // 2 if cut else end)

    def _copy(self, path: Path, start: int, end: int) -> None:
        with open(path, "rb") as handle:
            handle.seek(start)
            while start < end:
                rate = self.server.bytes_per_second  # read each time: a test may lift it
                size = max(1, rate // THROTTLED_CHUNKS_PER_SECOND) if rate else COPY_BYTES
                chunk = handle.read(min(size, end - start))
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                start += len(chunk)
                if rate:
                    time.sleep(len(chunk) / rate)

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, bytes_per_second: int = 0, faults: Faults | None = None):
        super().__init__((LOOPBACK, 0), RangeFileHandler)
        self.root = Path(root).resolve()
        self.bytes_per_second = bytes_per_second  # 0: as fast as possible
        self.faults = faults or Faults()
        self.stopping = threading.Event()  # endless answers end when the server stops
        self.requests: list[tuple[str, str, str | None]] = []
        self.timeout = POLL_SECONDS

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def _serve_until(server: LoopbackServer, stop: threading.Event, deadline: float) -> None:
    while not stop.is_set() and time.monotonic() < deadline:
        server.handle_request()  # returns after at most server.timeout
    server.server_close()


@contextlib.contextmanager
def http_server(root: Path, bytes_per_second: int = 0,
                faults: Faults | None = None) -> Iterator[LoopbackServer]:
    """Serve `root` on 127.0.0.1 (a free port) until the block ends or MAX_SERVE_SECONDS."""
    server = LoopbackServer(root, bytes_per_second, faults)
    stop = server.stopping
    thread = threading.Thread(target=_serve_until,
                              args=(server, stop, time.monotonic() + MAX_SERVE_SECONDS),
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=10)


S3_ENVIRONMENT = {"AWS_ACCESS_KEY_ID": "loopback", "AWS_SECRET_ACCESS_KEY": "loopback",
                  "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3-compatible server on 127.0.0.1; yields its endpoint URL. The AWS settings
    that s3fs reads (endpoint, keys) point at it for the block, and are restored after."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    watchdog = threading.Timer(MAX_SERVE_SECONDS, server.stop)
    watchdog.daemon = True
    watchdog.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {name: os.environ.get(name) for name in (*S3_ENVIRONMENT, "AWS_ENDPOINT_URL")}
    os.environ.update(S3_ENVIRONMENT, AWS_ENDPOINT_URL=endpoint)
    try:
        yield endpoint
    finally:
        watchdog.cancel()
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _forget_s3_clients()


@contextlib.contextmanager
def s3_bucket(name: str) -> Iterator[tuple[object, str]]:
    """s3_server holding one empty bucket `name`; yields (an fsspec S3 filesystem that reaches
    it, the server's endpoint URL)."""
    with s3_server() as endpoint:
        import fsspec

        store = fsspec.filesystem("s3")
        store.mkdir(name)
        yield store, endpoint


def _forget_s3_clients() -> None:
    """s3fs caches clients by their settings: one bound to a stopped server must not be reused."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


RELAY_CHUNK_BYTES = 4096  # a throttled relay forwards pieces this size, evenly spaced


def _relay(source: socket.socket, target: socket.socket, bytes_per_second: int) -> None:
    """Forward `source` to `target` until either side closes (0: unthrottled)."""
    try:
        while chunk := source.recv(RELAY_CHUNK_BYTES):
            target.sendall(chunk)
            if bytes_per_second:
                time.sleep(len(chunk) / bytes_per_second)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def _accept_until(listener: socket.socket, target_port: int, bytes_per_second: int,
                  stop: threading.Event, deadline: float) -> None:
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            client, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            return
        upstream = socket.create_connection((LOOPBACK, target_port))
        for source, target, rate in ((client, upstream, bytes_per_second), (upstream, client, 0)):
            threading.Thread(target=_relay, args=(source, target, rate), daemon=True).start()
    listener.close()


@contextlib.contextmanager
def throttled_relay(target_url: str, bytes_per_second: int) -> Iterator[str]:
    """A TCP relay on 127.0.0.1 to the server at `target_url` that forwards what clients send at
    `bytes_per_second` per connection (answers at full speed): an upload through it takes
    seconds. Yields the relay's URL."""
    target_port = urlsplit(target_url).port
    listener = socket.create_server((LOOPBACK, 0))
    listener.settimeout(POLL_SECONDS)
    stop = threading.Event()
    thread = threading.Thread(target=_accept_until, daemon=True,
                              args=(listener, target_port, bytes_per_second, stop,
                                    time.monotonic() + MAX_SERVE_SECONDS))
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=10)
