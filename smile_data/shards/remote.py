"""Dataset and shard locations: a local path, a URL (https, s3, gs, hf) opened through fsspec,
or (for shards the user names himself) a `pipe:` command. The one definition of which is which
(`is_url`, `is_pipe`, `is_local`) and of how a shard is opened (`open_shard`).

A dataset URL points at the folder that holds `dataset.json`; shard names come from the card
(checked plain names, layout.SHARD_NAME_PATTERN) and are joined under that URL only, so a card
can never make the reader open another host, a local file or a `pipe:` command. Which schemes
work depends on the installed extras (SCHEME_EXTRAS); an unsupported or uninstalled scheme is
a ValueError before anything is read.

S3-compatible servers other than AWS are reached through the standard AWS settings
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...), which s3fs reads.

Every remote read has timeouts and retries transient errors with back-off (remote_stream.py);
http(s) files are streamed by one GET each, never buffered whole.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from smile_data.config import PIPE_PREFIX
from smile_data.safe_files import open_inside
from smile_data.shards.remote_stream import (
    HttpStream, RetryingStream, http_size, retrying, timeout_seconds,
)

# scheme -> (the module fsspec needs, the extra that installs it)
SCHEME_EXTRAS = {
    "http": ("requests", "requests"),  # a dependency of smile itself
    "https": ("requests", "requests"),
    "s3": ("s3fs", "smile[s3]"),
    "gs": ("gcsfs", "smile[gcs]"),
    "gcs": ("gcsfs", "smile[gcs]"),
    "hf": ("huggingface_hub", "smile[hf]"),
}
STREAM_BLOCK_BYTES = 8 << 20   # read-ahead of one object-store stream: few requests per shard
HTTP_SCHEMES = ("http", "https")
CHUNK_BYTES = 1 << 20          # copy and hash in pieces of this size


def is_pipe(location: str | Path) -> bool:
    """Whether `location` is a `pipe:` command (only ever run from a list the user typed)."""
    return isinstance(location, str) and location.startswith(PIPE_PREFIX)


def is_url(location: str | Path) -> bool:
    """Whether `location` names a remote resource (`scheme://...`) rather than a local path or
    a `pipe:` command."""
    return isinstance(location, str) and "://" in location and not is_pipe(location)


def is_local(location: str | Path) -> bool:
    """Whether `location` is a path on this machine: neither a URL nor a `pipe:` command."""
    return not is_url(location) and not is_pipe(location)


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


def check_url(url: str) -> None:
    """Raise ValueError when `url`'s scheme is not supported or its fsspec backend is missing."""
    scheme = scheme_of(url)
    if scheme not in SCHEME_EXTRAS:
        raise ValueError(f"{url}: unsupported URL scheme {scheme + '://'!r}; dataset URLs may "
                         f"use {', '.join(s + '://' for s in SCHEME_EXTRAS)} or a local path")
    module, extra = SCHEME_EXTRAS[scheme]
    try:
        importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{url}: reading {scheme}:// URLs needs the {module} package: "
                         f"pip install '{extra}'") from None


def join(base: str | Path, name: str) -> str | Path:
    """`name` (a checked plain file name) inside the dataset folder `base`."""
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"{name!r} is not a plain file name")
    if is_url(base):
        return f"{str(base).rstrip('/')}/{name}"
    return Path(base) / name


def _filesystem(url: str):
    """The fsspec file system of an object-store URL (not http), with this module's timeouts."""
    import fsspec

    check_url(url)
    options = {}
    if scheme_of(url) == "s3":  # botocore's own defaults wait a minute to connect
        timeout = timeout_seconds()
        options["config_kwargs"] = {"connect_timeout": timeout, "read_timeout": timeout}
    return fsspec.core.url_to_fs(url, **options)


def _is_http(location: str | Path) -> bool:
    return is_url(location) and scheme_of(str(location)) in HTTP_SCHEMES


def open_binary(location: str | Path, offset: int = 0,
                block_size: int = STREAM_BLOCK_BYTES) -> IO[bytes]:
    """A readable binary stream of a local file or URL, positioned at `offset`. http(s) files
    are streamed by one GET; object-store files are read by range requests of `block_size`
    bytes; remote reads are retried (remote_stream.RetryingStream)."""
    if not is_url(location):  # a shard linked from outside its folder, or a FIFO, is refused
        handle = open_inside(location, Path(location).parent)
        if offset:
            handle.seek(offset)
        return handle
    url = str(location)
    if _is_http(url):
        check_url(url)
        return RetryingStream(url, lambda start: HttpStream(url, start), offset)
    fs, path = _filesystem(url)

    def open_at(start: int) -> IO[bytes]:
        handle = fs.open(path, "rb", block_size=block_size)
        if start:
            handle.seek(start)
        return handle

    return RetryingStream(url, open_at, offset)


def open_shard(location: str | Path) -> IO[bytes]:
    """A binary stream of one shard the user named: a `pipe:` command's output (webdataset's
    opener runs it), a local file or a URL (`open_binary`). Shard names read from a card never
    come here; they go to `open_binary`, which runs nothing."""
    if is_pipe(location):
        from webdataset.gopen import gopen

        return gopen(location, "rb")
    return open_binary(location)


def read_bytes(location: str | Path, limit: int) -> bytes:
    """The whole content of a file or URL, refused (ValueError) if it is over `limit` bytes.
    Read in chunks: `limit` may come from a card, and one read of that size would allocate it."""
    chunks, have = [], 0
    with open_binary(location) as handle:
        while have <= limit:
            chunk = handle.read(min(CHUNK_BYTES, limit + 1 - have))
            if not chunk:
                break
            chunks.append(chunk)
            have += len(chunk)
    data = b"".join(chunks)
    if len(data) > limit:
        raise ValueError(f"{location}: more than {limit} bytes")
    return data


def exists(location: str | Path) -> bool:
    if not is_url(location):
        return Path(location).is_file()
    if _is_http(location):
        check_url(str(location))
        return http_size(str(location), required=False) is not None
    fs, path = _filesystem(str(location))
    try:
        return bool(retrying(str(location), lambda: fs.isfile(path), "looking it up"))
    except (OSError, ValueError):
        return False


def size(location: str | Path) -> int:
    if not is_url(location):
        return Path(location).stat().st_size
    if _is_http(location):
        check_url(str(location))
        found = http_size(str(location))
        if found is None:
            raise FileNotFoundError(f"{location}: not found")
        return found
    fs, path = _filesystem(str(location))
    return int(retrying(str(location), lambda: fs.size(path), "asking the size"))


def list_names(folder: str | Path) -> list[str] | None:
    """The file names directly in a folder, or None where the store cannot list (a web server)."""
    if not is_url(folder):
        return [p.name for p in Path(folder).iterdir() if p.is_file()]
    if scheme_of(str(folder)) in ("http", "https"):
        return None
    fs, path = _filesystem(str(folder))
    fs.invalidate_cache(path)  # the folder may have changed since this process listed it
    try:
        entries = retrying(str(folder), lambda: fs.ls(path, detail=False), "listing it")
    except (OSError, ValueError):
        return None
    return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries]
