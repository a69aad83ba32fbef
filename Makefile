# portrait-gans — `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
UV      := $(shell command -v uv 2>/dev/null)
DATA    ?=
ARGS    ?=

# pytest-xdist workers for the test targets: each test runs one torch thread (tests/conftest.py), so two workers
# use both cores of a CI machine; a test module stays on one worker (its module-scoped fixtures train once).
TEST_JOBS ?= 2
XDIST   := $(if $(filter-out 0 1,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadscope,)
# the reliability suite spreads single tests over the workers, keeping each xdist_group (one system's resume tests
# and their shared reference run) on one worker
XDIST_GROUPS := $(if $(filter-out 0 1,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadgroup,)

export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1
# Bytecode: where PYTHONDONTWRITEBYTECODE is set (this project's CI machines) every process compiled torch,
# Lightning and torchmetrics from source, ~30 s of each start; keep the .pyc files in one folder outside the tree.
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX ?= $(CURDIR)/.cache/pycache

# --------------------------------------------------------------------------------------- environment
.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@if [ -z "$(UV)" ]; then python3 -m pip install --quiet uv; fi
	@UV=$$(command -v uv || echo "python3 -m uv"); \
	  $$UV venv --quiet --allow-existing $(VENV) --python 3.11 2>/dev/null || $$UV venv --quiet --allow-existing $(VENV); \
	  $$UV pip install --quiet --python $(PY) -r requirements.lock && \
	  $$UV pip install --quiet --python $(PY) --no-deps -e .
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv with the locked stack (uv, ~30 s from cache)

.PHONY: lock
lock: ## re-resolve requirements.lock from pyproject.toml
	uv pip compile pyproject.toml --extra dev --extra faces --extra editor --python-version 3.11 -o requirements.lock

# ------------------------------------------------------------------------------------------ quality
.PHONY: test
test: $(STAMP) ## fast test suite (no slow/gpu/ddp/browser/reliability tests; WANDB disabled; TEST_JOBS=2 workers)
	WANDB_MODE=disabled $(PY) -m pytest $(XDIST) -m "not slow and not gpu and not ddp and not browser and not reliability" -q $(ARGS)

.PHONY: test-reliability
test-reliability: $(STAMP) ## per-config NaN guard, checkpoint loading, SIGKILL/SLURM-requeue exact resume
	WANDB_MODE=disabled $(PY) -m pytest $(XDIST_GROUPS) -m "reliability" -q $(ARGS)

.PHONY: test-ddp
test-ddp: $(STAMP) ## DDP parity per system: 2 gloo processes on CPU vs 1 process with the same global batch
	WANDB_MODE=disabled $(PY) -m pytest -m "ddp and not slow" -q $(ARGS)

.PHONY: test-slow
test-slow: $(STAMP) ## the slow tests only
	WANDB_MODE=disabled $(PY) -m pytest $(XDIST) -m "slow" -q $(ARGS)

.PHONY: test-all
test-all: $(STAMP) ## every CPU test, slow ones included
	WANDB_MODE=disabled $(PY) -m pytest $(XDIST) -m "not gpu" -q $(ARGS)

.PHONY: test-browser
test-browser: $(STAMP) ## the browser editor in a real headless Chromium (installs Debian's chromium via apt if missing)
	@command -v chromium >/dev/null || { $$([ "$$(id -u)" = 0 ] || echo sudo) apt-get update -qq && \
	  $$([ "$$(id -u)" = 0 ] || echo sudo) apt-get install -y -qq chromium >/dev/null; }
	WANDB_MODE=disabled $(PY) -m pytest -m browser -q $(ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff lint + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

.PHONY: format
format: $(STAMP) ## ruff autofix + format
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

.PHONY: clean
clean: ## remove caches and run outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache runs wandb lightning_logs bench_results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: distclean
distclean: clean ## also remove .venv
	rm -rf $(VENV)

# ------------------------------------------------------------------------------------------- editor
.PHONY: editor
editor: $(STAMP) ## browser face editor on http://127.0.0.1:7860, a tab per model; CKPT="[model=]path ..." else newest runs
	$(PY) -m experiments.editor $(foreach c,$(CKPT),--checkpoint $(c)) $(ARGS)

.PHONY: editor-screenshots
editor-screenshots: ## re-take docs/editor_<tab>.png with the browser tests' Chromium
	EDITOR_SCREENSHOTS=docs $(MAKE) test-browser

# -------------------------------------------------------------------------------------------- bench
.PHONY: bench
bench: bench-data bench-maskgan bench-maggan bench-mask-guided bench-portraitgan ## every benchmark (each prints a ratio against a baseline measured in the same run)

.PHONY: bench-data
bench-data: $(STAMP) ## synthetic face world: faces/s at 128² on one core vs reading the same faces from disk
	$(PY) -m datamodules.bench_data

.PHONY: bench-maskgan
bench-maskgan: $(STAMP) ## DMN training step per part (G forward, D step, G step), default vs shared_d_forward + adam_fused (+ channels_last; + bf16 autocast or bf16 conv math where native), interleaved, wall and CPU-time ratios; CPU: 64²x4 ngf 16 and 128²x2 ngf 32; GPU: 512² x 8, MFU
	$(PY) -m experiments.bench_maskgan $(ARGS)

.PHONY: bench-maggan
bench-maggan: $(STAMP) ## MagGAN G and critic step img/s: optimized vs eager fp32; GPU: 256², batch 32, bf16, MFU
	$(PY) -m experiments.bench_maggan $(ARGS)

.PHONY: bench-mask-guided
bench-mask-guided: $(STAMP) ## Gu et al. training iteration img/s (G + D + D2): optimized vs eager fp32; GPU: 256², batch 4, bf16, MFU
	$(PY) -m experiments.bench_mask_guided $(ARGS)

.PHONY: bench-portraitgan
bench-portraitgan: $(STAMP) ## PortraitGAN training step img/s vs eager fp32: batch_d_calls, + channels_last, + bf16 where native (CPU); GPU: 512², batch 2, bf16, MFU
	$(PY) -m experiments.bench_portraitgan $(ARGS)

# ----------------------------------------------------------------------------------------- training
# DATA=/path/to/dataset trains on the real data; without DATA the experiment's DataModule renders the
# synthetic face world in the real on-disk layout (cached under ~/.cache/portrait-gans) and trains on it.
.PHONY: train-parser
train-parser: $(STAMP) ## train the U-Net face parser (DATA=/path/to/helen for Helen 11 classes at 256; else synthetic 64², CPU)
ifdef DATA
	$(PY) -m experiments.train parser_unet_helen_256 data.root=$(DATA) $(ARGS)
else
	$(PY) -m experiments.train parser_unet_synthetic_64 $(ARGS)
endif

.PHONY: train-maskgan
train-maskgan: $(STAMP) ## MaskGAN† (MaskVAE -> DMN -> EBST); DATA=/path/to/CelebAMask-HQ for the paper run (GPU), else synthetic 64² on CPU
ifdef DATA
	$(PY) -m experiments.train maskgan_celebamaskhq_512 data.root=$(DATA) $(ARGS)
else
	$(PY) -m experiments.train maskgan_synthetic_64 $(ARGS)
endif

.PHONY: eval-maskgan
eval-maskgan: $(STAMP) ## the paper's Tables 2-4 protocols on the test split: make eval-maskgan CKPT=... [DATA=...]
	@test -n "$(CKPT)" || { echo 'usage: make eval-maskgan CKPT=runs/.../checkpoints/last.ckpt [DATA=/path/to/CelebAMask-HQ]'; exit 2; }
	$(PY) -m experiments.evaluate maskgan --checkpoint $(CKPT) $(if $(DATA),--data $(DATA)) $(ARGS)

# MASKS: the soft-mask cache of experiments.parse (default $(DATA)/soft_masks_19).
MASKS ?= $(if $(DATA),$(DATA)/soft_masks_19)
.PHONY: train-maggan
train-maggan: $(STAMP) ## MagGAN (mask-guided STGAN, WGAN-GP); DATA=/path/to/celeba [MASKS=cache] for the paper 256² run (GPU), else synthetic 64² on CPU
ifdef DATA
	$(PY) -m experiments.train maggan_celeba_256 data.root=$(DATA) data.soft_masks=$(MASKS) $(ARGS)
else
	$(PY) -m experiments.train maggan_synthetic_64 $(ARGS)
endif

.PHONY: eval-maggan
eval-maggan: $(STAMP) ## Tables 1 and 3 protocols (MRE, edit accuracy, FID, PSNR/SSIM, hat split): make eval-maggan CKPT=... [DATA=... MASKS=...]
	@test -n "$(CKPT)" || { echo 'usage: make eval-maggan CKPT=runs/.../checkpoints/last.ckpt [DATA=/path/to/celeba MASKS=cache]'; exit 2; }
	$(PY) -m experiments.evaluate maggan --checkpoint $(CKPT) $(if $(DATA),--data $(DATA) --masks $(MASKS)) $(ARGS)

# PARSER: Gu et al.'s frozen face parser P_F (a FaceParser .ckpt with Helen's 11 classes, e.g. from
# `make train-parser DATA=...`, or the official latest_net_P.pth). Without DATA, P_F is trained first.
PARSER ?=
.PHONY: train-mask-guided
train-mask-guided: $(STAMP) ## Gu et al. mask-guided editing; DATA=/path/to/helen PARSER=P_F.ckpt for the paper 256² run (GPU), else P_F + model on synthetic 64², CPU
ifdef DATA
	$(PY) -m experiments.train mask_guided_helen_256 data.root=$(DATA) $(if $(PARSER),model.parser_checkpoint=$(PARSER)) $(ARGS)
else
	$(PY) -m experiments.train mask_guided_parser_synthetic_64
	$(PY) -m experiments.train mask_guided_synthetic_64 model.parser_checkpoint=$$(ls -t runs/mask_guided_parser_synthetic_64/*/checkpoints/last.ckpt | head -1) $(ARGS)
endif

.PHONY: eval-mask-guided
eval-mask-guided: $(STAMP) ## Tables 1-3 protocols (FID of 5k unpaired samples, parsing accuracy, parser + generated faces): make eval-mask-guided CKPT=... [DATA=...]
	@test -n "$(CKPT)" || { echo 'usage: make eval-mask-guided CKPT=runs/.../checkpoints/last.ckpt (or the official folder) [DATA=/path/to/helen]'; exit 2; }
	$(PY) -m experiments.evaluate mask-guided --checkpoint $(CKPT) $(if $(DATA),--data $(DATA)) $(ARGS)

.PHONY: train-portraitgan
train-portraitgan: $(STAMP) ## PortraitGAN (landmark + modality cycle GAN); DATA=/path/to/RaFD (with modalities/) for the paper 512² run (GPU), else synthetic 64² on CPU
ifdef DATA
	$(PY) -m experiments.train portraitgan_rafd_512 data.root=$(DATA) $(ARGS)
else
	$(PY) -m experiments.train portraitgan_synthetic_64 $(ARGS)
endif

.PHONY: eval-portraitgan
eval-portraitgan: $(STAMP) ## Table 1 (MSE, both SSIMs, inference time; copy and modality-oracle baselines): make eval-portraitgan CKPT=... [DATA=...]
	@test -n "$(CKPT)" || { echo 'usage: make eval-portraitgan CKPT=runs/.../checkpoints/last.ckpt [DATA=/path/to/RaFD]'; exit 2; }
	$(PY) -m experiments.evaluate portraitgan --checkpoint $(CKPT) $(if $(DATA),--data $(DATA)) $(ARGS)

.PHONY: train-attr-classifier
train-attr-classifier: $(STAMP) ## ResNet-18 attribute classifier (DATA=/path/to/celeba at 128², GPU; else synthetic 64², CPU)
ifdef DATA
	$(PY) -m experiments.train attr_classifier_celeba_128 data.root=$(DATA) $(ARGS)
else
	$(PY) -m experiments.train attr_classifier_synthetic_64 $(ARGS)
endif

train-exp-%: $(STAMP) ## train any experiment by name: make train-exp-parser_bisenet_celebamaskhq_512 ARGS="data.root=..."
	$(PY) -m experiments.train $* $(ARGS)

.PHONY: experiments
experiments: $(STAMP) ## list the experiment configs
	@$(PY) -m experiments.train --list

.PHONY: smoke
smoke: $(STAMP) ## every experiment config for 2 steps on synthetic fixtures
	@set -e; for e in $$($(PY) -m experiments.train --list | tail -n +2); do \
	  echo "== smoke $$e"; $(PY) -m experiments.train $$e --smoke run.out_dir=runs/smoke $(ARGS); done

sweep-%: $(STAMP) ## start a wandb sweep + agent from experiments/configs/sweeps/<name>.yaml (needs wandb login)
	$(PY) -m experiments.sweep $* $(ARGS)

.PHONY: compare
compare: $(STAMP) ## compare finished runs: make compare RUNS="runs/a/x runs/b/y" -> runs/compare/{curves.png,summary.md}
	@test -n "$(RUNS)" || { echo 'usage: make compare RUNS="runs/<exp>/<run> runs/<exp>/<run>"'; exit 2; }
	$(PY) -m experiments.compare $(RUNS)

.PHONY: weights
weights: $(STAMP) ## list the pretrained weight files and whether they are present in the cache
	$(PY) -m experiments.weights
