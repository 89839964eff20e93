# onlstm: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The data root: ONLSTM_DATA_DIR if set, else ../shared/data when present, else ./data
ONLSTM_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)
export ONLSTM_DATA_DIR
ARGS ?=
# extra overrides for every evidence sweep, e.g. EVIDENCE_ARGS="trainer=gpu hydra.launcher.n_jobs=1"
EVIDENCE_ARGS ?=
EVIDENCE_SWEEPS := lm parsing logic syneval
# the sweeps that only evaluate checkpoints of earlier ones: run with eval.py, the others with train.py
EVIDENCE_EVAL_SWEEPS := parsing
# Pins the CPU build of torch (see constraints.txt); `make install CONSTRAINTS=` keeps the torch
# an existing environment has (VENV=that environment).
CONSTRAINTS ?= constraints.txt
# make bench names its tables by the code's commit, so that a rerun never overwrites a table the docs cite
BENCH_COMMIT := $(shell git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)

.PHONY: help install train test test-full evidence evidence-report bench lint clean

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[dev,launchers]"
	touch $@

install: $(VENV)/.installed ## create .venv and install the package with its test and launcher extras

train: install ## the main job: a CPU-sized ON-LSTM LM on PTB (~15 min), validation and test perplexity
	$(BIN)/python train.py experiment=ptb_cpu $(ARGS)

test: install ## the test suite without the slow tests
	$(BIN)/python -m pytest -m "not slow" -q $(ARGS)

test-full: install ## every test, the slow ones too
	$(BIN)/python -m pytest -q $(ARGS)

evidence: install ## ON-LSTM vs LSTM x 3 seeds for each of the paper's claims, then docs/evidence.md (hours on a CPU; run again to continue an interrupted sweep)
	for sweep in $(EVIDENCE_SWEEPS); do \
		entry=$$(case $$sweep in $(EVIDENCE_EVAL_SWEEPS)) echo eval.py;; *) echo train.py;; esac); \
		OMP_NUM_THREADS=1 $(BIN)/python $$entry -m experiment=evidence_$$sweep $(EVIDENCE_ARGS) || exit 1; \
	done
	$(MAKE) evidence-report

evidence-report: install ## docs/evidence.md from the finished runs under logs/evidence
	$(BIN)/python -m tasks.reports.evidence $(addprefix logs/evidence/,$(EVIDENCE_SWEEPS)) --tuning logs/evidence/logic_tuning --out docs/evidence

bench: install ## CPU throughput benchmarks (tables printed and saved as benchmarks/results/<bench>_cpu_<commit>.md; ~20 min, idle machine)
	$(BIN)/python benchmarks/recurrence.py | tee benchmarks/results/recurrence_cpu_$(BENCH_COMMIT).md
	$(BIN)/python benchmarks/lm_throughput.py --out benchmarks/results/lm_throughput_cpu_$(BENCH_COMMIT).md
	$(BIN)/python benchmarks/dropconnect.py | tee benchmarks/results/dropconnect_cpu_$(BENCH_COMMIT).md

lint: install ## ruff
	$(BIN)/ruff check onlstm tasks datamodules tests benchmarks train.py eval.py

clean: ## remove the virtual environment and run outputs
	rm -rf $(VENV) logs
