# onlstm: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The data root: ONLSTM_DATA_DIR if set, else ../shared/data when present, else ./data
ONLSTM_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)
export ONLSTM_DATA_DIR
ARGS ?=
# The evidence sweeps of round 2, in the order of their plan (docs/preregistration.md): the entry
# script and its arguments, one sweep per quoted item; each resumes where it stopped. Extra overrides
# (EVIDENCE_ARGS, e.g. "trainer=gpu") make runs the report does not count for the plan: it names them;
# Hydra's own settings (hydra.launcher.n_jobs=1) are not a run's overrides and change nothing it checks.
EVIDENCE_SWEEPS := "train.py -m experiment=evidence2_logic" \
	"train.py -m experiment=evidence2_lm" \
	"eval.py -m experiment=evidence2_lm_marks" \
	"eval.py -m experiment=evidence2_parsing" \
	"train.py -m experiment=evidence2_listops" \
	"train.py -m experiment=evidence2_logic seed=1,2,3"
EVIDENCE_ARGS ?=
# where the sweeps write (paths.log_dir/evidence), and where their records are kept in the checkout
EVIDENCE_LOGS ?= logs/evidence
EVIDENCE_RECORDS := docs/evidence/runs/round2
TUNING_RECORDS := docs/evidence/runs/tuning
# make mutate: workers side by side (one thread each) and where the per-module scores go
MUTATE_JOBS ?= 1
# Address space of mutmut and each mutant's tests (KiB, `ulimit -v`): a mutant that makes a loop
# endless while it appends to a list (segment_schedule's `start += length` made `-=`) fills the
# memory within its timeout, and the machine's other jobs with it; capped, it fails as caught.
MUTATE_MEMORY_KB ?= 8388608
MUTATION_SCORES ?= docs/testing/mutation_scores.md
# Pins the CPU build of torch (see constraints.txt); `make install CONSTRAINTS=` keeps the torch
# an existing environment has (VENV=that environment).
CONSTRAINTS ?= constraints.txt
# make bench names its tables by the code's commit, so that a rerun never overwrites a table the docs cite
BENCH_COMMIT := $(shell git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)

.PHONY: help install train test test-full evidence evidence-report mutate mutate-survivors bench lint clean

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-17s %s\n", $$1, $$2}'

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

evidence: install ## the pre-registered sweeps of round 2, then docs/evidence.md (many CPU-hours; run again to continue)
	for sweep in $(EVIDENCE_SWEEPS); do \
		OMP_NUM_THREADS=1 $(BIN)/python $$sweep $(EVIDENCE_ARGS) || exit 1; \
	done
	$(MAKE) evidence-report

evidence-report: install ## docs/evidence.md: keeps the runs' records (docs/evidence/runs), then reports from them
	if [ -d $(EVIDENCE_LOGS)/round2 ]; then $(BIN)/python -m tasks.reports.archive $(EVIDENCE_LOGS)/round2 $(EVIDENCE_RECORDS); fi
	if [ -d $(EVIDENCE_LOGS)/tuning ]; then $(BIN)/python -m tasks.reports.archive $(EVIDENCE_LOGS)/tuning $(TUNING_RECORDS); fi
	$(BIN)/python train.py experiment=logic_paper --cfg job > docs/evidence/logic_paper_config.yaml
	$(BIN)/python -m tasks.reports.evidence $(EVIDENCE_RECORDS)/* --tuning $(TUNING_RECORDS)/* --plan docs/preregistration.md \
		--round1 docs/evidence/round1.md --paper-config docs/evidence/logic_paper_config.yaml \
		--paper-epoch benchmarks/results/logic_paper_epoch_cpu.md --out docs/evidence

bench: install ## CPU throughput benchmarks (tables printed and saved as benchmarks/results/<bench>_cpu_<commit>.md; ~20 min, idle machine)
	$(BIN)/python benchmarks/recurrence.py | tee benchmarks/results/recurrence_cpu_$(BENCH_COMMIT).md
	$(BIN)/python benchmarks/lm_throughput.py --out benchmarks/results/lm_throughput_cpu_$(BENCH_COMMIT).md
	$(BIN)/python benchmarks/dropconnect.py | tee benchmarks/results/dropconnect_cpu_$(BENCH_COMMIT).md

mutate: install ## mutation testing (docs/testing.md): hours, niced, resumable; MODULE=onlstm.cell (or "a b"): only its mutants not run yet
	$(call mutmut_run,--unrun)

mutate-survivors: install ## rerun the survivors of MODULE (one or several) not explained yet (after writing tests against them)
	@test -n "$(MODULE)" || { echo "name the module: make mutate-survivors MODULE=onlstm.cell"; exit 2; }
	$(call mutmut_run,--survivors)

# mutmut run over MUTANTS (names or patterns; every mutant not run yet when empty), or over the names
# `tests.mutation_scores $(1) MODULE...` prints (MODULE: one module or several, one mutmut run, so one
# clean test run, for all); where it prints none, nothing is left to run. A fresh checkout has no
# records yet: there each module stands for the pattern of all its mutants.
define mutmut_run
	@names='$(MUTANTS)'; \
	if [ -n '$(MODULE)' ] && [ ! -d mutants ]; then names='$(addsuffix .*,$(MODULE))'; \
	elif [ -n '$(MODULE)' ]; then \
		names=$$($(BIN)/python -m tests.mutation_scores $(1) $(MODULE)) || exit 2; \
		[ -n "$$names" ] || echo "$(MODULE): no mutants left to run ($(1))"; \
	fi; \
	if [ -z '$(MODULE)' ] || [ -n "$$names" ]; then \
		ulimit -v $(MUTATE_MEMORY_KB) || exit 2; \
		OMP_NUM_THREADS=1 WANDB_MODE=offline nice -n 10 $(BIN)/mutmut run --max-children $(MUTATE_JOBS) $$names || exit $$?; \
	fi
	$(BIN)/python -m tests.mutation_scores --out $(MUTATION_SCORES)
endef

lint: install ## ruff
	$(BIN)/ruff check onlstm tasks datamodules tests benchmarks train.py eval.py

clean: ## remove the virtual environment and run outputs
	rm -rf $(VENV) logs
