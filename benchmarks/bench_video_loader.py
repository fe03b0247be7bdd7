"""The pretraining worker on video shards against the authors' decord pipeline, per core.

Inputs: K400-like videos (k400_like.py: 10 s, 30 fps, 320-px short side, libx264's defaults),
the authors' kind of input. Rows, all in one process pinned to one core, taking turns clip by
clip (so whatever else runs on the machine slows every row alike); clips/s are per second of
the process's CPU time:

    decord, authors' input     decord.VideoReader(file, num_threads=1) on the original files,
                               a random window (16 frames at stride 4), get_batch, then the
                               multi-scale crop to 224: with OpenCV (the anchor: the faster of
                               the two), or with PIL as the released GroupMultiScaleCrop does
    decord, our shards' bytes  the same on the videos of the shards packed with the defaults
    ours                       the pretraining worker (smile_train.data.loader.PretrainClips, one
                               loader worker): tar -> sample checked against the manifest ->
                               window decode -> multi-scale crop -> overlays (objects: a
                               synthetic bank of 200, 2 per clip; or none) -> trajectory masks,
                               2 per clip; on shards `smile-data pack --store video` wrote from
                               the same files: with its defaults, at 320 px, or --copy (the
                               files as they are)
Each row's peak resident memory is measured in a fresh process of its own (one worker).

    python benchmarks/bench_video_loader.py [--clips 96]

The decord rows need the `bench` extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue as queue_module
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reader import peak_resident_mb  # noqa: E402
from bench_render import make_bank  # noqa: E402
from k400_like import (  # noqa: E402
    CLIP_FRAMES,
    CLIP_STRIDE,
    CROP_SCALES,
    INPUT_SIZE,
    write_k400_like,
)
from command_line import Option, benchmark_parser  # noqa: E402
from one_core import cpu_seconds_in_turn, load_average, pin_to_one_core  # noqa: E402

from smile_data.render.settings import PackSettings  # noqa: E402
from smile_data.sampling import crop_resize_clip, multiscale_crop_box, window_indices  # noqa: E402

BANK_OBJECTS = 200
CHILD_POLL_SECONDS = 1.0  # how often the parent checks that a benchmark process is alive
WARM_UP_CLIPS = 4  # untimed clips per row first: libraries, first shard, sprite cache
ANCHOR = "decord + crop (OpenCV), authors' input"
ROWS = {  # row -> (what it decodes, overlay)
    ANCHOR: ("originals", None),
    "decord + crop (PIL, as released), authors' input": ("originals", None),
    "decord + crop (OpenCV), our shards' bytes (pack defaults)": ("defaults", None),
    "ours, pack defaults, objects, 2 masks": ("defaults", "objects"),
    "ours, pack defaults, no overlay, 2 masks": ("defaults", "none"),
    "ours, pack at 320 px, objects, 2 masks": ("320", "objects"),
    "ours, pack --copy (authors' files), objects, 2 masks": ("copy", "objects"),
}
PACKINGS = {"defaults": {}, "320": {"short_side": 320}, "copy": {"reencode": False}}


def pil_crop(frames: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """GroupMultiScaleCrop's crop and bilinear resize of each frame, on PIL images."""
    x, y, w, h = box
    images = [Image.fromarray(frame).crop((x, y, x + w, y + h)).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
              for frame in frames]
    return np.stack([np.asarray(image) for image in images])


def decord_clips(paths: list[str], crop: str):
    """An endless stream of the authors' clips: decord window, multi-scale crop."""
    import decord

    for i in itertools.count():
        rng = np.random.default_rng([1, i])
        reader = decord.VideoReader(paths[i % len(paths)], num_threads=1)
        frames = reader.get_batch(window_indices(rng, len(reader), CLIP_FRAMES, CLIP_STRIDE).tolist()).asnumpy()
        # Freed now, as the authors' loader frees it: a live reader's thread keeps polling
        # (about 15 % of a core), which the next row in turn would be charged for.
        del reader
        box = multiscale_crop_box(rng, frames.shape[1], frames.shape[2], INPUT_SIZE, CROP_SCALES, 1)
        if crop == "pil":
            yield pil_crop(frames, box)
        else:
            yield crop_resize_clip(frames, np.zeros((len(frames), 0, 4), np.float32), box, INPUT_SIZE)[0]


def worker_clips(shards: list[str], overlay: str, bank: str):
    """The pretraining loader worker's stream on the shards."""
    from smile_train.data.loader import PretrainClips
    from smile_train.settings.pretrain import PretrainSettings

    settings = PretrainSettings(input_size=INPUT_SIZE, frames=CLIP_FRAMES, stride=CLIP_STRIDE, crop="multiscale",
                                overlay=overlay, bank=bank if overlay == "objects" else "",
                                mask="trajectory", mask_repeats=2, second_mask="own", shuffle_buffer=0,
                                num_workers=0)
    return iter(PretrainClips(shards, settings))


def stream(name: str, inputs: dict, bank: str):
    what, overlay = ROWS[name]
    if name.startswith("decord"):
        paths = inputs["originals"] if what == "originals" else inputs["decoded " + what]
        return decord_clips(paths, "pil" if "PIL" in name else "opencv")
    return worker_clips(inputs[what], overlay, bank)


def time_rows(inputs: dict, bank: str, clips: int, queue) -> None:
    """All rows in this process on one core, clip by clip in turn; CPU seconds per row."""
    pin_to_one_core()
    streams = {name: stream(name, inputs, bank) for name in ROWS}
    queue.put(cpu_seconds_in_turn(streams, clips, warm_up=WARM_UP_CLIPS))


def row_memory(name: str, inputs: dict, bank: str, clips: int, queue) -> None:
    """Peak resident memory of a process that makes `clips` clips with one row's pipeline."""
    pin_to_one_core()
    clip_stream = stream(name, inputs, bank)
    for _ in range(clips):
        next(clip_stream)
    queue.put(peak_resident_mb())


def in_child(context, target, *args):
    """target(*args, queue) in a process of its own; its result, or an error if it died."""
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    while True:
        try:
            result = queue.get(timeout=CHILD_POLL_SECONDS)
            break
        except queue_module.Empty:
            if not process.is_alive():  # it raised (traceback above): do not wait forever
                raise SystemExit(f"{target.__name__} failed in its process (exit code {process.exitcode})")
    process.join()
    return result


def pack(sources: Path, out: Path, changes: dict) -> list[str]:
    """`smile-data pack --store video` of the sources with its defaults and `changes`."""
    from smile_data.render.run import pack_dataset

    card = pack_dataset(PackSettings(videos=str(sources), store="video", **changes), out)
    return [str(out / shard["name"]) for shard in card["shards"]]


def shard_videos(shards: list[str], folder: Path) -> list[str]:
    """The video members of the shards as files (decord reads files)."""
    from smile_data.shards.reader import iter_tar_samples

    folder.mkdir()
    paths = []
    for raw in (raw for shard in shards for raw in iter_tar_samples(shard)):
        paths.append(str(folder / f"{raw['__key__']}.mp4"))
        Path(paths[-1]).write_bytes(raw["mp4"])
    return paths


def main() -> None:
    args = benchmark_parser(__doc__, [
        Option("--clips", 96, "clips timed per row"),
        Option("--memory-clips", 16, "clips per row in the memory runs"),
    ]).parse_args()
    context = multiprocessing.get_context("spawn")  # fork after PyAV / OpenCV threads can deadlock
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        originals = write_k400_like(folder / "sources")
        inputs = {"originals": [str(p) for p in originals]}
        for name, changes in PACKINGS.items():
            inputs[name] = pack(folder / "sources", folder / f"shards-{name}", changes)
        inputs["decoded defaults"] = shard_videos(inputs["defaults"], folder / "decoded-defaults")
        bank = str(make_bank(folder / "bank", BANK_OBJECTS))
        before = load_average()
        seconds = in_child(context, time_rows, inputs, bank, args.clips)
        after = load_average()
        memory = {name: in_child(context, row_memory, name, inputs, bank, args.memory_clips) for name in ROWS}
        megabytes = {name: sum(Path(p).stat().st_size for p in inputs[name]) / len(originals) / 1e6
                     for name in ("originals", *PACKINGS)}
    defaults = PackSettings()
    print(f"{len(originals)} K400-like videos (10 s, 30 fps, 320-px short side, libx264 defaults, "
          f"{megabytes['originals']:.2f} MB each); pack defaults: short side {defaults.short_side}, "
          f"keyframe every {defaults.keyframe_interval} ({megabytes['defaults']:.2f} MB per video in the "
          f"shards; 320 px {megabytes['320']:.2f}, --copy {megabytes['copy']:.2f}); clip: {CLIP_FRAMES} frames "
          f"at stride {CLIP_STRIDE}, multi-scale crop to {INPUT_SIZE}; one core, rows in turn, CPU time")
    print(f"{before} before, {after} after")
    print("| pipeline | clips/s per core | ms/clip | vs the anchor | peak RSS MB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    anchor = args.clips / seconds[ANCHOR]
    for name in ROWS:
        rate = args.clips / seconds[name]
        print(f"| {name} | {rate:.1f} | {1000 / rate:.1f} | {rate / anchor:.2f}x | {memory[name]:.0f} |")


if __name__ == "__main__":
    main()
