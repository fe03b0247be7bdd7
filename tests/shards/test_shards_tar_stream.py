"""tar_stream reads every archive as tarfile does: plain members through its own header parser,
everything from the first other header on through tarfile; the same names, types, sizes and
data, and the same end of the archive."""

from __future__ import annotations

import io
import tarfile

import pytest

from smile_data.shards.tar_stream import BLOCK, UnreadableShard, tar_members

LIMIT = 1 << 20


def archive(tar_format: int, members: list[tuple[str, bytes | str | None]]) -> bytes:
    """Regular files (bytes), symlinks (str: target) and folders (None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def ours(data: bytes, read_every: int = 1) -> list[tuple]:
    out = []
    for number, member in enumerate(tar_members(io.BytesIO(data), "test.tar", LIMIT)):
        content = member.read() if number % read_every == 0 and member.info.isreg() else None
        out.append((member.info.name, member.info.type, member.info.size, content))
    return out


def theirs(data: bytes, read_every: int = 1) -> list[tuple]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        for number, info in enumerate(tar):
            content = tar.extractfile(info).read() if number % read_every == 0 and info.isreg() else None
            out.append((info.name, info.type, info.size, content))
    return out


MEMBERS = [
    ("0000000000.00.jpg", b"\xff\xd8" + bytes(range(256)) * 3),
    ("0000000000.json", b"{}"),
    ("empty.txt", b""),
    ("exact.bin", bytes(BLOCK)),
    ("d" * 60 + "/" + "n" * 60 + ".jpg", b"prefixed in ustar, long-named in gnu and pax"),
    ("folder", None),
    ("link", "0000000000.json"),
    ("0000000001.00.jpg", b"after the exotic ones"),
]


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("read_every", [1, 2])
def test_members_names_types_sizes_and_data_are_tarfiles(tar_format, read_every):
    data = archive(tar_format, MEMBERS)
    assert ours(data, read_every) == theirs(data, read_every)
    plain = archive(tar_format, MEMBERS[:4])
    assert ours(plain + b"garbage after the end blocks") == theirs(plain)


SMALL = [("a.json", b"{}"), ("b.json", b"[]")]  # a header and one data block each


def test_the_end_of_an_archive_is_where_tarfile_sees_it():
    data = archive(tarfile.GNU_FORMAT, SMALL)
    first_two = 4 * BLOCK
    without_end_blocks = data[:first_two]
    broken_header = data[: first_two - BLOCK] + b"\x01" * BLOCK
    for stream in (without_end_blocks, broken_header, data[: BLOCK + BLOCK] + b"x" * 100):
        assert ours(stream) == theirs(stream)


def test_unreadable_streams_are_named():
    data = archive(tarfile.GNU_FORMAT, SMALL[:1])
    bad_checksum = bytearray(data)
    bad_checksum[0] ^= 1
    for stream, reason in ((b"", "empty file"), (b"\x1f\x8b" + bytes(600), "bad checksum"),
                           (bytes(bad_checksum), "bad checksum"), (data[:300], "truncated header"),
                           (data[: BLOCK + 1], "unexpected end of data")):
        with pytest.raises(UnreadableShard, match=f"test.tar: not a readable uncompressed tar .*{reason}"):
            ours(stream)


def test_a_negative_member_size_is_refused_not_read_to_the_end():
    header = bytearray(tarfile.TarInfo("a.json").tobuf(tarfile.GNU_FORMAT))
    header[124:136] = b"\xff" * 11 + b"\xfe"  # GNU base-256 for -2
    header[148:156] = b" " * 8
    header[148:155] = f"{sum(header):06o}\0".encode()
    stream = bytes(header) + b"x" * (50 * BLOCK) + bytes(2 * BLOCK)
    with pytest.raises(UnreadableShard, match="negative size"):
        ours(stream)
    after_a_member = archive(tarfile.GNU_FORMAT, SMALL[:1])[: 2 * BLOCK] + stream
    assert [name for name, *_ in ours(after_a_member)] == ["a.json"]  # the stream ends there


def test_a_block_that_is_no_header_ends_the_stream_after_a_member():
    data = archive(tarfile.GNU_FORMAT, SMALL)[: 4 * BLOCK] + b"\x37" * BLOCK + bytes(2 * BLOCK)
    assert ours(data) == theirs(data)


def test_an_unread_member_is_skipped_not_read():
    data = archive(tarfile.GNU_FORMAT, [("a.bin", b"a" * 3000), ("b.bin", b"b" * 10)])
    stream = io.BytesIO(data)
    members = tar_members(stream, "test.tar", LIMIT)
    next(members)
    second = next(members)
    assert second.info.name == "b.bin" and second.read() == b"b" * 10


def test_an_oversized_header_extension_is_refused_after_plain_members():
    plain = archive(tarfile.GNU_FORMAT, SMALL)[: 4 * BLOCK]
    extension = tarfile.TarInfo("././@LongLink")
    extension.type, extension.size = tarfile.GNUTYPE_LONGNAME, LIMIT + 1
    stream = plain + extension.tobuf(tarfile.GNU_FORMAT) + bytes(4 * BLOCK)
    with pytest.raises(UnreadableShard, match="header extension of 1048577 bytes"):
        ours(stream)
