"""`smile-data publish DIR URL`: send a finished dataset to a folder or an object store
(`s3://`, `gs://`, `hf://`: the same extras as reading) for another lab to fetch.

The dataset is validated first (every sample decoded, or with `quick` hashes, sizes and counts
only), then its own files go up, and nothing else (not progress/, lock files or temporaries):

    1. the shards the card lists (in parallel),
    2. manifest.parquet,
    3. the README card (README.md and the preview.png it shows), when the folder has them,
    4. dataset.json, last: a folder with the card is a finished upload, so a lab that fetches
       before the upload ends is refused ("not a dataset URL") instead of reading a part.

A file already at the destination with the size and sha256 the card records is not sent again,
so a rerun after a failure or a kill resumes; checking a remote file's sha256 reads it back
once. A destination that holds another dataset's card is refused. A local destination gets
each file under a temporary name first (renamed once complete); an object store makes an
upload visible only once it is complete. The report carries the line the receiving lab runs:
`smile-data fetch URL --out NAME --card-sha256 HEX`.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smile_data.io import atomic_path, remove_stale_temporaries
from smile_data.progress_bar import progress_bar
from smile_data.shards import remote
from smile_data.shards.card_readme import PREVIEW_FILE, README_FILE
from smile_data.shards.dataset import CARD_FILE, MANIFEST_FILE, MAX_CARD_BYTES, read_card
from smile_data.shards.integrity import HashingReader
from smile_data.shards.validate import validate_dataset

DEFAULT_PUBLISH_WORKERS = 4  # parallel shard uploads
PROBLEMS_SHOWN = 3  # validation problems named in the refusal (validate lists them all)


@dataclass
class PublishReport:
    uploaded: list[str] = field(default_factory=list)  # files sent in this run, in order
    already_there: list[str] = field(default_factory=list)  # files found complete at the destination
    bytes_sent: int = 0
    card_sha256: str = ""
    fetch_command: str = ""  # what the receiving lab runs


@dataclass(frozen=True)
class DatasetFile:
    """One file to publish with the size and sha256 it must have: the card's for the shards and
    the manifest, as hashed here for the files the card does not record (README, the card)."""

    name: str
    size: int
    sha256: str


def dataset_files(folder: Path, card: dict[str, Any]) -> list[DatasetFile]:
    """The dataset's own files in upload order, the card last (see the module docstring)."""
    files = [DatasetFile(s["name"], s["bytes"], s["sha256"]) for s in card["shards"]]
    manifest = card.get("manifest")  # a schema-1 card records no manifest digest
    files.append(DatasetFile(MANIFEST_FILE, manifest["bytes"], manifest["sha256"]) if manifest
                 else _described(folder, MANIFEST_FILE))
    files += [_described(folder, name) for name in (PREVIEW_FILE, README_FILE) if (folder / name).is_file()]
    files.append(_described(folder, CARD_FILE))
    return files


def _described(folder: Path, name: str) -> DatasetFile:
    size, sha256 = _size_and_sha256(folder / name)
    return DatasetFile(name, size, sha256)


def _size_and_sha256(location: str | Path) -> tuple[int, str]:
    with remote.open_binary(location) as handle:  # a local file only if it is inside its folder
        hashing = HashingReader(handle)
        hashing.drain()
    return hashing.size, hashing.digest.hexdigest()


def is_complete(location: str | Path, expected: DatasetFile) -> bool:
    """Whether `location` holds the file with the expected size and sha256."""
    if not remote.exists(location) or remote.size(location) != expected.size:
        return False
    return _size_and_sha256(location) == (expected.size, expected.sha256)


def _remote_filesystem(location: str) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(location)


def send_file(source: Path, destination: str | Path, expected: DatasetFile) -> None:
    """Copy `source` to `destination` (a path: written under a temporary name, renamed once
    complete; a URL: an object store shows it once the upload is complete). Bytes that are not
    the expected ones (the file changed since it was validated) are not left there."""
    with remote.open_binary(source) as handle:
        reading = HashingReader(handle)
        if not remote.is_url(destination):
            with atomic_path(destination) as temporary, open(temporary, "wb") as writing:
                shutil.copyfileobj(reading, writing, remote.CHUNK_BYTES)
                _check_sent(reading, expected, destination)  # before the rename
            return
        filesystem, path = _remote_filesystem(str(destination))
        with filesystem.open(path, "wb") as writing:
            shutil.copyfileobj(reading, writing, remote.CHUNK_BYTES)
    try:
        _check_sent(reading, expected, destination)
    except ValueError:
        filesystem.rm(path)
        raise


def _check_sent(reading: HashingReader, expected: DatasetFile, destination: str | Path) -> None:
    if (reading.size, reading.digest.hexdigest()) != (expected.size, expected.sha256):
        raise ValueError(f"{destination}: not published: the source file changed since it was "
                         f"validated (its size or sha256 is no longer the card's)")


def fetch_command(url: str | Path, name: str, card_sha256: str) -> str:
    return f"smile-data fetch {url} --out {name} --card-sha256 {card_sha256}"


def _check_source(folder: Path, quick: bool, workers: int) -> None:
    report = validate_dataset(folder, quick=quick, workers=workers)
    if not report.ok:
        shown = "; ".join(report.problems[:PROBLEMS_SHOWN])
        raise ValueError(f"{folder}: not published, {len(report.problems)} problem(s) found by "
                         f"validation ({shown}); `smile-data validate {folder}` lists them")


def _check_destination(url: str | Path, card_bytes: bytes) -> None:
    if remote.is_url(url):
        remote.check_url(str(url))
    elif Path(url).exists() and not Path(url).is_dir():
        raise ValueError(f"{url}: not a folder")
    card = remote.join(url, CARD_FILE)
    if remote.exists(card) and remote.read_bytes(card, MAX_CARD_BYTES) != card_bytes:
        raise ValueError(f"{card}: holds another dataset's card; publish to an empty folder "
                         "or remove that dataset first")


def publish_dataset(folder: str | Path, url: str | Path, quick: bool = False,
                    workers: int = DEFAULT_PUBLISH_WORKERS, show_progress: bool = True) -> PublishReport:
    """Validate the dataset in `folder` and send its own files to `url`; see the module docstring."""
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, not {workers}")
    if remote.is_url(folder) or remote.is_pipe(folder):
        raise ValueError(f"{folder}: publish sends a dataset folder on this machine "
                         "(fetch a remote dataset first)")
    folder = Path(folder)
    card_bytes, card = read_card(folder)
    _check_destination(url, card_bytes)  # a store that cannot be reached fails before validating
    _check_source(folder, quick, workers)
    files = dataset_files(folder, card)
    if not remote.is_url(url):
        Path(url).mkdir(parents=True, exist_ok=True)
        names = {f.name for f in files}
        remove_stale_temporaries(url, is_own=lambda name: name in names)  # of a killed run
    card_sha256 = hashlib.sha256(card_bytes).hexdigest()
    report = PublishReport(card_sha256=card_sha256,
                           fetch_command=fetch_command(url, folder.resolve().name, card_sha256))
    shards, rest = files[: len(card["shards"])], files[len(card["shards"]):]
    with progress_bar(total=sum(f.size for f in files), unit="B", unit_scale=True,
                      desc=f"publish {folder.name}", disable=not show_progress) as bar, \
            concurrent.futures.ThreadPoolExecutor(max(1, min(workers, len(shards)))) as pool:
        for file, sent in zip(shards, pool.map(lambda f: _publish_one(folder, url, f), shards)):
            _record(report, file, sent, bar)
        for file in rest:  # one after the other: the card goes up last
            _record(report, file, _publish_one(folder, url, file), bar)
    return report


def _publish_one(folder: Path, url: str | Path, file: DatasetFile) -> bool:
    """Send one file unless it is already complete there; whether it was sent."""
    destination = remote.join(url, file.name)
    if is_complete(destination, file):
        return False
    send_file(folder / file.name, destination, file)
    if remote.size(destination) != file.size:
        raise ValueError(f"{destination}: {remote.size(destination)} bytes after the upload, "
                         f"not {file.size}; rerun to send it again")
    return True


def _record(report: PublishReport, file: DatasetFile, sent: bool, bar: Any) -> None:
    bar.update(file.size)
    if sent:
        report.uploaded.append(file.name)
        report.bytes_sent += file.size
    else:
        report.already_there.append(file.name)
