"""The members of an uncompressed tar stream, read front to back once: a header, then (only if
the caller asks) its data.

Shards hold plain members (a regular-file header, then its data), and for those the header is
parsed here: its checksum verified, then the three fields a reader uses (name with the ustar
prefix, type, size); nothing else of the header is read. tarfile parses every field of every
header and wraps every member in file objects, which cost as much as decoding a small frame.
At the first header of any other kind (long names, pax records, links, folders, devices,
sparse files) the rest of the stream goes to tarfile (in streaming mode, with header extensions
over `max_extension_bytes` refused before tarfile reads them), so exotic archives are read
exactly as tarfile reads them. The end of the archive is as tarfile sees it: a zero block, the
end of the stream at a header, or (after the first member) a header that is not one.
"""

from __future__ import annotations

import tarfile
from typing import IO, Callable, Iterator, NamedTuple

BLOCK = tarfile.BLOCKSIZE
PLAIN_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
HEADER_EXTENSION_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                          tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
NAME, SIZE, CHECKSUM, TYPE, PREFIX = slice(0, 100), slice(124, 136), slice(148, 156), slice(156, 157), slice(345, 500)
CHECKSUM_SPACES = 8 * ord(" ")  # the checksum is computed with its own field read as spaces
BASE256_MARKERS = (0o200, 0o377)  # a number field in GNU's binary form (tarfile.nti reads it)
SKIP_CHUNK = 1 << 20


class UnreadableShard(ValueError):
    """A shard that is not a readable uncompressed tar (corrupt, truncated, compressed, not a
    tar at all); `shard` names it and `reason` says what was found."""

    def __init__(self, shard: str, reason: str):
        super().__init__(shard, reason)
        self.shard, self.reason = shard, reason

    def __str__(self) -> str:
        return f"{self.shard}: not a readable uncompressed tar ({self.reason})"


class Member(NamedTuple):
    info: tarfile.TarInfo  # name, type and size (the fields a reader checks)
    read: Callable[[], bytes]  # the member's data; left unread, it is skipped


def _number(field: bytes) -> int:
    """An octal header number as tarfile reads it (GNU's base-256 form through tarfile.nti)."""
    if field and field[0] in BASE256_MARKERS:
        return tarfile.nti(field)
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise tarfile.InvalidHeaderError("invalid header") from None


def _plain_header(header: bytes) -> tarfile.TarInfo | None:
    """The TarInfo of a regular-file header (checksum verified), or None for any other kind."""
    stored = _number(header[CHECKSUM])
    if stored != sum(header) - sum(header[CHECKSUM]) + CHECKSUM_SPACES and stored not in tarfile.calc_chksums(header):
        raise tarfile.InvalidHeaderError("bad checksum")  # checked first: a block that is no header
    kind = header[TYPE]
    if kind not in PLAIN_TYPES:
        return None
    name = tarfile.nts(header[NAME], tarfile.ENCODING, "surrogateescape")
    if kind == tarfile.AREGTYPE and name.endswith("/"):
        return None  # an old-style folder: tarfile's business
    prefix = tarfile.nts(header[PREFIX], tarfile.ENCODING, "surrogateescape")
    info = tarfile.TarInfo(f"{prefix}/{name}" if prefix else name)
    info.type, info.size = kind, _number(header[SIZE])
    if info.size < 0:  # GNU base-256 can spell one; a negative read would take the rest of the stream
        raise tarfile.InvalidHeaderError(f"member {info.name!r} has a negative size")
    return info


def _read_exactly(handle: IO[bytes], size: int) -> bytes:
    data = handle.read(size)
    while len(data) < size:
        more = handle.read(size - len(data))
        if not more:
            break
        data += more
    return data


def _skip(handle: IO[bytes], size: int) -> None:
    while size > 0:
        chunk = handle.read(min(size, SKIP_CHUNK))
        if not chunk:
            return  # the next header read finds the end
        size -= len(chunk)


class _Prefixed:
    """A stream that first returns `head`, then reads on from `stream` (tarfile takes over at a
    header already read)."""

    def __init__(self, head: bytes, stream: IO[bytes]):
        self.head, self.stream = head, stream

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.stream.read(size)
        if size < 0:
            data, self.head = self.head + self.stream.read(), b""
            return data
        data, self.head = self.head[:size], self.head[size:]
        return data + (self.stream.read(size - len(data)) if len(data) < size else b"")


def bounded_tarinfo(max_extension_bytes: int) -> type[tarfile.TarInfo]:
    class BoundedTarInfo(tarfile.TarInfo):
        """Refuses an oversized long-name or pax header before tarfile reads it (tarfile reads
        those blocks whole into memory, whatever size their header claims)."""

        def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
            if self.type in HEADER_EXTENSION_TYPES and self.size > max_extension_bytes:
                raise tarfile.ReadError(f"a tar header extension of {self.size} bytes is over the "
                                        f"{max_extension_bytes} allowed")
            return super()._proc_member(archive)

    return BoundedTarInfo


def _tarfile_members(stream, label: str, max_extension_bytes: int) -> Iterator[Member]:
    with tarfile.open(fileobj=stream, mode="r|", tarinfo=bounded_tarinfo(max_extension_bytes)) as archive:
        while True:
            info = archive.next()
            archive.members.clear()  # tarfile would keep every header of the stream
            if info is None:
                return
            yield Member(info, lambda info=info: _tarfile_read(archive, info, label))


def _tarfile_read(archive: tarfile.TarFile, info: tarfile.TarInfo, label: str) -> bytes:
    try:
        return archive.extractfile(info).read()
    except (tarfile.TarError, EOFError) as error:
        raise UnreadableShard(label, f"member {info.name!r}: {type(error).__name__}: {error}") from None


def _plain_members(handle: IO[bytes], label: str, max_extension_bytes: int) -> Iterator[Member]:
    first = True
    while True:
        header = _read_exactly(handle, BLOCK)
        if len(header) < BLOCK or header.count(0) == BLOCK:
            if first:
                raise tarfile.ReadError("empty file" if not header else "truncated header")
            return
        try:
            info = _plain_header(header)
        except tarfile.HeaderError as error:
            if first:
                raise tarfile.ReadError(str(error)) from None
            return  # tarfile, too, ends a stream at a header that is not one
        if info is None:
            yield from _tarfile_members(_Prefixed(header, handle), label, max_extension_bytes)
            return
        first, padded = False, -(-info.size // BLOCK) * BLOCK
        state = {"read": False}

        def read(info=info, padded=padded, state=state) -> bytes:
            state["read"] = True
            data = _read_exactly(handle, info.size)
            if len(data) < info.size:
                raise UnreadableShard(label, f"member {info.name!r}: ReadError: unexpected end of data")
            _skip(handle, padded - info.size)
            return data

        yield Member(info, read)
        if not state["read"]:
            _skip(handle, padded)


def tar_members(handle: IO[bytes], label: str, max_extension_bytes: int) -> Iterator[Member]:
    """The members of the tar stream `handle` in order; tar errors become UnreadableShard."""
    try:
        yield from _plain_members(handle, label, max_extension_bytes)
    except (tarfile.TarError, EOFError, RecursionError) as error:
        raise UnreadableShard(label, f"{type(error).__name__}: {error}") from None
