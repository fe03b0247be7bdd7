"""A checkpoint whose one tensor record is deflated: a small file that `torch.load` would
inflate to `expanded_bytes`. Written by hand (the deflate stream of zeros is one flushed block
repeated), so building it costs neither the memory nor the time of the tensor it declares."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zlib
from pathlib import Path

import torch

BLOCK = 1 << 20  # zeros per repeated deflate block
ARCHIVE = "archive"


class _Storage:
    """Stands for the declared storage in the pickle (torch.save's persistent id)."""


class _Tensor:
    def __init__(self, storage: _Storage, numel: int):
        self.storage, self.numel = storage, numel

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, 0, (self.numel,), (1,), False, collections.OrderedDict()))


def _object_tree(numel: int) -> bytes:
    storage = _Storage()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage:
                return ("storage", torch.FloatStorage, "0", "cpu", numel)
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"model": {"patch_embed.proj.weight": _Tensor(storage, numel)},
                                      "step": 0})
    return buffer.getvalue()


def _zeros_deflated(size: int) -> tuple[bytes, int]:
    """(raw deflate stream of `size` zero bytes, their CRC-32); size a multiple of BLOCK."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(b"\0" * BLOCK) + compressor.flush(zlib.Z_FULL_FLUSH)
    zeros, crc = b"\0" * BLOCK, 0
    for _ in range(size // BLOCK):  # the CRC of the whole, block by block
        crc = zlib.crc32(zeros, crc)
    return block * (size // BLOCK) + compressor.flush(), crc


def _entry(name: str, data: bytes, method: int, size: int, crc: int, offset: int) -> tuple[bytes, bytes]:
    encoded = name.encode()
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size,
                        len(encoded), 0) + encoded
    central = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(data),
                          size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    return local + data, central


def write_inflating_checkpoint(path: Path, expanded_bytes: int) -> Path:
    records = [(f"{ARCHIVE}/data.pkl", _object_tree(expanded_bytes // 4)),
               (f"{ARCHIVE}/byteorder", b"little"), (f"{ARCHIVE}/version", b"3\n")]
    body, directory = b"", b""
    for name, data in records:
        local, central = _entry(name, data, 0, len(data), zlib.crc32(data), len(body))
        body, directory = body + local, directory + central
    stream, crc = _zeros_deflated(expanded_bytes)
    local, central = _entry(f"{ARCHIVE}/data/0", stream, 8, expanded_bytes, crc, len(body))
    body, directory = body + local, directory + central
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(records) + 1, len(records) + 1,
                      len(directory), len(body), 0)
    path.write_bytes(body + directory + end)
    return path
