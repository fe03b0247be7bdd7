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

clean:
	rm -rf $(WORK)
