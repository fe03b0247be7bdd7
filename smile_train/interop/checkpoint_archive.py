"""A checkpoint file's zip records, checked before `torch.load` reads them.

`torch.save` writes a zip of stored (uncompressed) records: `data.pkl`, the object tree with
each tensor a reference to a storage, one `data/<key>` record per storage, and a few small
ones. `torch.load(weights_only=True)` unpickles nothing but plain containers and tensors, yet
it inflates a deflated record and allocates what a record declares: a 1.9 MB file can expand
to gigabytes. So, before the real load, `check_archive` refuses (ValueError naming the file
and the record or tensor):
- a file larger than MAX_CHECKPOINT_BYTES (the largest training state this project writes),
  or one that is not a zip (the pre-1.6 pickle and tar formats: re-save it with torch.save);
- more than MAX_RECORDS records, a compressed record, a record whose header sizes disagree or
  whose bytes lie past the end of the file, a `data.pkl` over MAX_PICKLE_BYTES;
- a tensor whose storage is not exactly the size of its record (shape and dtype from the
  metadata, read on the meta device: no storage is read or allocated), or that views more
  bytes than its storage holds.
Memory of the real load is then at most the file's size.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch

# The largest training state this project writes: a ViT-B classifier of MAX_CLASSES classes
# (163M parameters) with AdamW's two moments and an EMA copy, in float32, is 2.6 GB;
# tests/train/test_train_checkpoint_archive.py derives it from the models themselves.
MAX_CHECKPOINT_BYTES = 4 << 30
MAX_RECORDS = 100_000  # one per tensor storage: a ViT-B state with AdamW and EMA holds ~1,300
MAX_PICKLE_BYTES = 64 << 20  # the object tree without tensor data: ~100 kB for ViT-B
LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then name and extra field lengths
LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
UNPICKLER_PROBLEM, TORCH_LOAD_ADVICE = "WeightsUnpickler error:", "Check the documentation"
MAX_TREE_ITEMS = 10_000_000  # containers and leaves walked in the object tree


def check_archive(path: Path) -> None:
    """Refuse a checkpoint whose records could make `torch.load` allocate more than the file
    holds (see the module docstring)."""
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"{path}: {size} bytes, more than the {MAX_CHECKPOINT_BYTES} of the "
                         "largest training state this project writes")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a zip checkpoint (torch.save's format since torch 1.6); "
                         "an older pickle or tar checkpoint must be re-saved with torch.save")
    try:
        records = _stored_records(path, size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, struct.error, OSError) as error:
        raise ValueError(f"{path}: a damaged zip archive ({error})") from None
    _check_tensors(path, records)


def _stored_records(path: Path, size: int) -> dict[int, zipfile.ZipInfo]:
    """Every record by the file offset of its bytes, each checked to be stored, consistent
    and inside the file."""
    with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
        infos = archive.infolist()
        if len(infos) > MAX_RECORDS:
            raise ValueError(f"{path}: {len(infos)} zip records, more than the {MAX_RECORDS} "
                             "of any checkpoint")
        pickles = [info for info in infos if info.filename.endswith("data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path}: {len(pickles)} data.pkl records, not one: not a torch.save file")
        by_offset = {}
        for info in infos:
            offset = _data_offset(info, handle)
            problem = _record_problem(info, offset, size)
            if problem:
                raise ValueError(f"{path}: record {info.filename[:200]!r} {problem}")
            by_offset[offset] = info
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise ValueError(f"{path}: its data.pkl holds {pickles[0].file_size} bytes, more than "
                         f"the {MAX_PICKLE_BYTES} of any checkpoint's object tree")
    return by_offset


def _record_problem(info: zipfile.ZipInfo, offset: int, size: int) -> str | None:
    if info.compress_type != zipfile.ZIP_STORED:
        return (f"is compressed (zip method {info.compress_type}): torch.save stores records "
                "as they are, and a compressed one can expand to any size")
    if info.compress_size != info.file_size:
        return f"declares {info.file_size} bytes but stores {info.compress_size}"
    if offset + info.file_size > size:
        return "runs past the end of the file"
    return None


def load_problem(error: Exception) -> str:
    """torch.load's reason in one line. Its message for an object it refuses to unpickle is a
    paragraph that suggests weights_only=False (running code from the file): only the
    unpickler's own reason is kept."""
    text = str(error)
    if UNPICKLER_PROBLEM in text:
        reason = text.split(UNPICKLER_PROBLEM, 1)[1].split(TORCH_LOAD_ADVICE, 1)[0]
        return f"not a file of tensors and plain containers ({' '.join(reason.split())})"
    if isinstance(error, EOFError):
        return "the file is empty or cut short"
    return " ".join(text.split()) or type(error).__name__


def _data_offset(info: zipfile.ZipInfo, handle) -> int:
    """Where a record's bytes start: after its local header, name and extra field."""
    handle.seek(info.header_offset)
    signature, name_length, extra_length = LOCAL_HEADER.unpack(handle.read(LOCAL_HEADER.size))
    if signature != LOCAL_HEADER_SIGNATURE:
        raise zipfile.BadZipFile(f"no local header for {info.filename[:200]!r}")
    return info.header_offset + LOCAL_HEADER.size + name_length + extra_length


def _check_tensors(path: Path, records: dict[int, zipfile.ZipInfo]) -> None:
    """Each tensor of the object tree against its storage's record (metadata only)."""
    try:
        tree = torch.load(path, map_location="meta", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"{path}: not a readable checkpoint: {load_problem(error)}") from None
    unplaced: dict[int, int] = {}  # storages torch did not tell the place of: id -> bytes
    for name, tensor in _tensors(tree, path):
        storage = tensor.untyped_storage()
        offset = getattr(storage, "_checkpoint_offset", None)
        if offset is None:
            unplaced[storage._cdata] = storage.nbytes()
        elif offset not in records or records[offset].file_size != storage.nbytes():
            held = (f"a record of {records[offset].file_size} bytes for it" if offset in records
                    else "no record where torch.save puts it")
            raise ValueError(f"{path}: tensor {name} declares a storage of {storage.nbytes()} "
                             f"bytes, but the file holds {held}")
        if tensor.numel() * tensor.element_size() > storage.nbytes():
            raise ValueError(f"{path}: tensor {name} of shape {tuple(tensor.shape)} views more "
                             f"bytes than its storage of {storage.nbytes()} holds")
    if unplaced:  # torch versions that do not record offsets: the sizes must pair up
        stored = sorted(info.file_size for info in records.values() if "/data/" in info.filename)
        if sorted(unplaced.values()) != stored:
            raise ValueError(f"{path}: its tensors declare storages of other sizes than its "
                             "data records hold")


def _tensors(tree: Any, path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(where, tensor) of every tensor in nested dicts, lists and tuples; walked with a stack,
    so no nesting depth can overflow Python's."""
    stack: list[tuple[str, Any]] = [("", tree)]
    walked = 0
    while stack:
        where, item = stack.pop()
        walked += 1
        if walked > MAX_TREE_ITEMS:
            raise ValueError(f"{path}: more than {MAX_TREE_ITEMS} objects in its object tree")
        if isinstance(item, torch.Tensor):
            yield where or "<root>", item
        elif isinstance(item, dict):  # pushed last first: walked in the file's order
            stack += reversed([(f"{where}.{key}" if where else str(key), value)
                               for key, value in item.items()])
        elif isinstance(item, (list, tuple)):
            stack += reversed([(f"{where}[{index}]", value) for index, value in enumerate(item)])
