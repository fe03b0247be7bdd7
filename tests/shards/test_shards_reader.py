"""Safe reading: round trips, webdataset and tar compatibility, refusal of unsafe members."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import subprocess
import tarfile

import numpy as np
import pytest
import webdataset
from PIL import Image

from smile_data.shards import layout, reader
from smile_data.shards.reader import (
    decode_sample,
    decode_webdataset_sample,
    expand_urls,
    iter_tar_samples,
    read_samples,
)
from tests.shards.synthetic_clips import SyntheticClips

PNG_CLIPS = SyntheticClips(samples_per_task=2, codec="png")
JPEG_TOLERANCE = 12  # mean absolute error of quality-90 JPEG on the synthetic frames
EXIF_ORIENTATION, EXIF_ROTATE_90 = 0x0112, 6  # the tag, and "turn 90 degrees clockwise to view"


def test_png_round_trip_is_exact(tmp_path, write_synthetic):
    write_synthetic(tmp_path / "d", task=PNG_CLIPS)
    samples = list(read_samples(str(tmp_path / "d" / "clips-{000000..000004}.tar")))
    assert [s.key for s in samples] == [layout.sample_key(i) for i in range(14)]
    for i, sample in enumerate(samples):
        frames, metadata = PNG_CLIPS.clip(i)
        assert sample.frames.dtype == np.uint8 and sample.frames.shape == (4, 32, 32, 3)
        np.testing.assert_array_equal(sample.frames, frames)
        assert sample.metadata == json.loads(json.dumps(metadata))
        assert sample.label == i % 10
    assert layout.boxes_array(samples[0].metadata).shape == (4, 1, 4)


def test_jpeg_round_trip_and_url_forms(dataset):
    clips = SyntheticClips(samples_per_task=2)
    by_glob = list(read_samples(str(dataset / "clips-*.tar")))
    by_list = list(read_samples(sorted(str(p) for p in dataset.glob("*.tar"))))
    by_pipe = list(read_samples(f"pipe:cat {dataset / 'clips-000000.tar'}"))
    assert [s.key for s in by_glob] == [s.key for s in by_list]
    assert [s.key for s in by_pipe] == [s.key for s in by_glob[:3]]
    frames, _ = clips.clip(int(by_glob[0].key))
    error = np.abs(by_glob[0].frames.astype(int) - frames).mean()
    assert error < JPEG_TOLERANCE
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        expand_urls(str(dataset / "nothing-*.tar"))


def test_webdataset_without_decoders_reads_the_same(dataset):
    urls = sorted(str(p) for p in dataset.glob("*.tar"))
    pipeline = webdataset.WebDataset(urls, shardshuffle=False).map(decode_webdataset_sample)
    ours = list(read_samples(urls))
    theirs = list(pipeline)
    assert [s.key for s in theirs] == [s.key for s in ours]
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.frames, b.frames)
        assert a.metadata == b.metadata and a.label == b.label


def test_plain_tar_lists_members_in_fixed_order(dataset):
    listing = subprocess.run(["tar", "-tf", str(dataset / "clips-000000.tar")],
                             capture_output=True, text=True, check=True).stdout.split()
    first = [f"0000000000.{ext}" for ext in ("00.jpg", "01.jpg", "02.jpg", "03.jpg", "cls", "json")]
    assert listing[:6] == first
    assert len(listing) == 3 * 6
    with tarfile.open(dataset / "clips-000000.tar") as archive:
        info = archive.getmembers()[0]
    assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (0, 0, 0, "", "", 0o644)


def pickle_shard(tmp_path, make_member, make_pickle, marker):
    """A shard whose one sample carries .pyd and .pickle members next to its frames."""
    clips = SyntheticClips(samples_per_task=1)
    sample = clips.sample(0)
    path = tmp_path / "evil-000000.tar"
    with tarfile.open(path, "w") as archive:
        for extension, data in sorted(sample.members.items()):
            archive.addfile(*_as_file(make_member(f"{sample.key}.{extension}", data)))
        for extension in ("pyd", "pickle"):
            archive.addfile(*_as_file(make_member(f"{sample.key}.{extension}", make_pickle(marker))))
    return path


def _as_file(member):
    info, data = member
    return info, io.BytesIO(data)


def test_pickles_are_never_unpickled(tmp_path, make_member, make_pickle):
    control = tmp_path / "control"
    pickle.loads(make_pickle(control))  # the payload does create its marker
    assert control.exists()
    marker = tmp_path / "pwned"
    shard = pickle_shard(tmp_path, make_member, make_pickle, marker)
    refused = []
    raws = list(iter_tar_samples(shard, on_refused=lambda info, why: refused.append(info.name)))
    assert refused == ["0000000000.pyd", "0000000000.pickle"]
    assert set(raws[0]) == {"__key__", "00.jpg", "01.jpg", "02.jpg", "03.jpg", "json", "cls"}
    assert decode_sample(raws[0]).key == "0000000000"
    with pytest.raises(ValueError, match=r"0000000000\.pickle is not allowed"):
        for sample in webdataset.WebDataset(str(shard), shardshuffle=False):
            decode_webdataset_sample(sample)
    assert not marker.exists()


def sample_raw(**changes):
    raw = {"__key__": "0000000000", **SyntheticClips(samples_per_task=1).sample(0).members}
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not None}


def test_decode_errors_name_key_and_member():
    png = SyntheticClips(codec="png").sample(0).members["00.png"]
    small = SyntheticClips(height=16, width=16).sample(0).members["00.jpg"]
    metadata = json.loads(sample_raw()["json"])
    cases = {
        r"0000000000\.02\.jpg is missing": sample_raw(**{"02.jpg": None}),
        r"0000000000\.01\.jpg is 16x16, the metadata says 32x32": sample_raw(**{"01.jpg": small}),
        r"0000000000\.00\.jpg: not a readable JPEG": sample_raw(**{"00.jpg": png}),
        r"0000000000\.json is not valid JSON": sample_raw(json=b"{not json"),
        r"0000000000\.json: schema_version": sample_raw(
            json=layout.encode_metadata({**metadata, "schema_version": 2})),
        r"0000000000\.04\.jpg is not one of its 4": sample_raw(**{"04.jpg": small}),
        r"0000000000\.cls says 3, the JSON 0": sample_raw(cls=b"3"),
        r"0000000000\.cls: label": sample_raw(cls=b"three"),
    }
    for message, raw in cases.items():
        with pytest.raises(ValueError, match=message):
            decode_sample(raw)
    assert decode_sample(sample_raw(cls=None)).label == 0  # the JSON label suffices


def test_a_sample_over_the_byte_budget_is_refused_before_its_member_is_read(dataset, monkeypatch):
    shard = dataset / "clips-000000.tar"
    sizes = [info.size for info in tarfile.open(shard).getmembers()[:6]]  # sample 0000000000
    monkeypatch.setattr(reader, "MAX_SAMPLE_BYTES", sum(sizes[:2]))
    read = []
    original = reader.tar_members

    def spying(*args):
        for member in original(*args):
            yield member._replace(read=lambda member=member: read.append(member.info.name) or member.read())

    monkeypatch.setattr(reader, "tar_members", spying)
    with pytest.raises(ValueError, match=r"clips-000000\.tar: sample '0000000000': member "
                                         r"'0000000000\.02\.jpg' brings the sample to"):
        list(iter_tar_samples(shard))
    assert read == ["0000000000.00.jpg", "0000000000.01.jpg"]


def test_a_clip_over_the_pixel_budget_is_refused_before_decoding():
    metadata = json.loads(sample_raw()["json"])
    huge = {**metadata, "frames": 100, "height": 2048, "width": 2048,
            "objects": [{**metadata["objects"][0], "boxes": [[0, 0, 1, 1]] * 100,
                         "angles": [0.0] * 100}]}
    raw = sample_raw(json=layout.encode_metadata(huge))
    with pytest.raises(ValueError, match=r"0000000000\.json: a clip of 100 frames of 2048x2048 "
                                         r"is over the limit"):
        decode_sample(raw)


def test_exif_orientation_does_not_turn_frames(tmp_path):
    frames, _ = SyntheticClips(samples_per_task=1).clip(0)
    frame = np.ascontiguousarray(frames[0])
    frame[:4] = 255  # a white band along the top: turned, it would be a side
    plain, rotated = io.BytesIO(), io.BytesIO()
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = EXIF_ROTATE_90
    Image.fromarray(frame).save(plain, "JPEG", quality=95)
    Image.fromarray(frame).save(rotated, "JPEG", quality=95, exif=exif)
    expected = decode_sample(sample_raw(**{"00.jpg": plain.getvalue()})).frames[0]
    decoded = decode_sample(sample_raw(**{"00.jpg": rotated.getvalue()})).frames[0]
    np.testing.assert_array_equal(decoded, expected)
    assert decoded[:4].mean() > 200 and decoded[:, :4].mean() < decoded[:4].mean()


def test_compressed_and_foreign_streams_are_refused_by_name(tmp_path, dataset):
    shard = dataset / "clips-000000.tar"
    packed = tmp_path / "clips-000000.tar.gz"
    packed.write_bytes(gzip.compress(shard.read_bytes()))
    with pytest.raises(reader.UnreadableShard, match=r"clips-000000\.tar\.gz: not a readable "
                                                     r"uncompressed tar"):
        list(iter_tar_samples(packed))
    cut = tmp_path / "cut.tar"
    cut.write_bytes(shard.read_bytes()[:3000])  # ends inside a member's data
    with pytest.raises(reader.UnreadableShard, match=r"cut\.tar: .*member '0000000000\.0"):
        list(iter_tar_samples(cut))


def test_an_oversized_header_extension_is_refused_before_tarfile_reads_it(tmp_path):
    long_name = tarfile.TarInfo("././@LongLink")
    long_name.type = tarfile.GNUTYPE_LONGNAME
    long_name.size = 1 << 40  # tarfile would try to read a TiB into one bytes object
    path = tmp_path / "evil-000000.tar"
    path.write_bytes(long_name.tobuf(tarfile.GNU_FORMAT) + bytes(4 * tarfile.BLOCKSIZE))
    with pytest.raises(reader.UnreadableShard, match="a tar header extension of 1099511627776"):
        list(iter_tar_samples(path))


def test_streams_from_webdataset_gopen_read_as_files_do(dataset):
    from webdataset.gopen import gopen

    shard = dataset / "clips-000001.tar"
    with gopen(f"pipe:cat {shard}", "rb") as stream:
        piped = list(iter_tar_samples(stream))
    assert piped == list(iter_tar_samples(shard)) and len(piped) == 3
