# Two commands on a fresh machine: `make train` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
ifndef SWEEP_DIR
SWEEP_DIR := outputs/multiruns/sweep-demo_$(shell date +%Y-%m-%d_%H-%M-%S)  # evaluated once
endif

.DEFAULT_GOAL := help
.PHONY: help install train test lint summary sweep-demo sweep-demo-tuned report prepare-imagenet eval bench clean clean-runs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,export]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its test tools and the ONNX export extra

train: $(STAMP)  ## train the paper's switches on the embedded digits set (ARGS="key=value ..." to change)
	$(PY) src/train.py $(ARGS)

# Test files run in parallel, one module per worker at a time (module fixtures are made once), on
# up to TEST_WORKERS (default: the cores, at most 4: each test starts training processes of its own),
# in the order tests/conftest.py gives them (the cluster tests first).
TEST_WORKERS ?= auto
test: $(STAMP)  ## run the test suite (TEST_WORKERS=1: one process)
	$(PY) -m pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist loadscope --no-loadscope-reorder $(ARGS)

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

summary: $(STAMP)  ## print the layers, parameters and mult-adds (ARGS="model=paper")
	$(PY) src/summary.py $(ARGS)

sweep-demo: $(STAMP)  ## the norm × pool ablation sweep on digits (18 jobs, ~7 min on 2 cores), then its report
	$(PY) src/train.py -m experiment=ablation_norm_pool hydra.sweep.dir=$(SWEEP_DIR) $(ARGS); \
	  status=$$?; $(PY) src/report.py $(SWEEP_DIR) && exit $$status

sweep-demo-tuned: $(STAMP)  ## the same ablation, fair: each configuration tuned (3 trials), then 2 seeds at its best (~11 min on 2 cores); the report
	$(PY) src/train.py -m experiment=ablation_norm_pool hparams_search=per_config seed=0,1 hydra.sweeper.n_jobs=2 \
	  'hydra.sweeper.trial_overrides=["trainer.max_epochs=4"]' hydra.sweep.dir=$(SWEEP_DIR) $(ARGS); \
	  status=$$?; $(PY) src/report.py $(SWEEP_DIR) && exit $$status

report: $(STAMP)  ## summarise a sweep: make report SWEEP_DIR=outputs/multiruns/<date>/<time>-<id>
	$(PY) src/report.py $(SWEEP_DIR)

prepare-imagenet: $(STAMP)  ## ILSVRC-2012 archives -> data layout: make prepare-imagenet ARCHIVES=<dir> [ROOT=data/imagenet] [ARGS="--format shards"]
	$(PY) src/prepare_imagenet.py --archives $(ARCHIVES) --root $(or $(ROOT),data/imagenet) $(ARGS)

eval: $(STAMP)  ## evaluate a checkpoint: make eval ARGS="ckpt_path=<file> data=imagenet tta=tencrop"
	$(PY) src/eval.py $(ARGS)

bench: $(STAMP)  ## speed benchmarks against their baselines: a table and outputs/bench/latest.json
	$(PY) -m bench.run $(ARGS)

clean:  ## remove caches and build artefacts; never a run (see clean-runs), never .venv
	rm -rf .pytest_cache .ruff_cache src/*.egg-info
	find . \( -path ./.venv -o -path ./.git -o -path ./outputs \) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

clean-runs:  ## delete every run and sweep in outputs/: says how many and how big, then asks (or CONFIRM=1)
	@dirs=$$(ls -d outputs/runs outputs/multiruns outputs/evals 2>/dev/null); \
	if [ -z "$$dirs" ]; then echo "No runs in outputs/."; exit 0; fi; \
	count=$$(find $$dirs -name results.json | wc -l); size=$$(du -sch $$dirs | tail -n 1 | cut -f 1); \
	echo "This deletes $$count run(s) with their checkpoints and results, $$size in all: $$dirs"; \
	if [ "$(CONFIRM)" != 1 ]; then \
	  if [ -t 0 ]; then printf "Delete them? [y/N] "; read answer; else answer=n; fi; \
	  if [ "$$answer" != y ]; then echo "Nothing deleted (make clean-runs CONFIRM=1 deletes without asking)."; exit 1; fi; \
	fi; \
	rm -rf $$dirs && echo "Deleted."
