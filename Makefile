# Two entry points: `make study` runs the default study, `make test` the tests.
# Both create .venv on first use (plain pip: torch is taken from the machine's disk).
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.test-stamp
export PATH := $(BIN):$(PATH)

# `make study CONFIG=config/mnist.yaml` runs another study (its --configfile);
# `CONFIG="config/config.yaml my.yaml"` layers an overlay on the default, as Snakemake's
# --configfile does with several files (merged in order).
CONFIG ?=
CONFIG_ARGS := $(if $(CONFIG),--configfile $(CONFIG))

.PHONY: study test lint report clean mutation config-exists verify

# What a study needs; the tests' extras (pytest, torchattacks, the cluster
# executors, ...) come with the first `make test` only.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# lesion.tools.run runs Snakemake under a kernel lock: a second `make study` stops at
# once, and a run killed outright resumes (its stale Snakemake lock is removed).
study: config-exists $(STAMP)
	$(BIN)/python -m lesion.tools.run $(BIN)/snakemake $(CONFIG_ARGS)
	@$(MAKE) --no-print-directory report REPORT_FLAGS=--just-built

# A missing CONFIG file (each of its words) is named before anything is installed or
# run (Snakemake's own message for a missing --configfile is a traceback).
config-exists:
	@for file in $(CONFIG); do if [ ! -f "$$file" ]; then \
		echo "make study: error: CONFIG=$$file: no such file; expected a study config, e.g. one of: $(wildcard config/*.yaml) (or several, merged in order)" >&2; exit 1; fi; done

# The study's report (results/report.html, or results/NAME/report.html for a config
# with `study: NAME`), rebuilt only when something in its results is newer, and only for
# a study up to date with its config (a dry run first; `make study` has just built it).
report: config-exists $(STAMP)
	@$(BIN)/python -m lesion.tools.run --report $(REPORT_FLAGS) $(BIN)/snakemake $(CONFIG_ARGS)

# Check every output of the built study (docs/running.md): one line per bad file, exit
# status 1 when any; `make verify REPAIR=1` removes them for the next `make study` to rebuild.
verify: config-exists $(STAMP)
	$(BIN)/python -m lesion tools verify $(CONFIG_ARGS) $(if $(REPAIR),--repair)

# One pytest-xdist worker per core; a test file stays on one worker, so a module's
# built study (its fixture) is built once. pytest-xdist queues the files with the
# most tests first (tests/conftest.py's LONGEST breaks ties).
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=25

# Mutation testing (docs/testing.md) of the functions that compute what a study
# reports: operators, evaluation, predict's rows, metrics, crash masks, bounds,
# training's loss. Not part of `make test` (1,779 mutants: 29 minutes on 2
# cores, measured 2026-12-03). Each run starts clean: mutmut 3.8's incremental mode re-maps tests to
# functions from the changed tests only, which leaves mutants without the tests
# that would kill them. The score per module comes last.
MUTANTS := 'lesion.operators.*' 'lesion.evaluate.x_summarise*' 'lesion.evaluate.x__stacked_*' \
	'lesion.metrics.x__top*' 'lesion.metrics.x_variant_metrics*' 'lesion.metrics.x_clean_top1*' \
	'lesion.metrics.x_study_metrics*' 'lesion.metrics.x_summarise*' \
	'lesion.predict.x__table*' 'lesion.predict.x__crash_results*' 'lesion.predict.x__weight_results*' \
	'lesion.activations.x_keep_mask*' 'lesion.activations.x_crashed_logits*' 'lesion.activations.x_neurons_of*' \
	'lesion.activations.x_forward_with_sites*' \
	'lesion.sweeps.x__difference*' 'lesion.sweeps.x__norms*' 'lesion.sweeps.x__windows*' 'lesion.sweeps.x__fill*' \
	'lesion.sweeps.x_regenerate*' 'lesion.sweeps.x_variants*' 'lesion.sweeps.x_one_variant*' 'lesion.sweeps.x_variant_table*' \
	'lesion.studies.faults.bounds.x__per_input_terms*' 'lesion.studies.faults.bounds.x_bounds_per_input*' \
	'lesion.studies.faults.bounds.x_aggregate*' 'lesion.studies.faults.bounds.x_monte_carlo*' \
	'lesion.studies.faults.bounds.x_b3_*' 'lesion.studies.faults.bounds.x__dense_chain*' \
	'lesion.train.x__loss*'
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,mutation]'
	rm -rf mutants
	$(BIN)/mutmut run --max-children $$(nproc) $(MUTANTS)
	$(BIN)/python tests/mutation_score.py

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf results logs benchmarks .snakemake
