# Two entry points: `make study` runs the default study, `make test` the tests.
# Both create .venv on first use (plain pip: torch is taken from the machine's disk).
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PATH := $(BIN):$(PATH)

.PHONY: study test lint report clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# lesion.tools.run runs Snakemake under a kernel lock: a second `make study` stops at
# once, and a run killed outright resumes (its stale Snakemake lock is removed).
study: $(STAMP)
	$(BIN)/python -m lesion.tools.run $(BIN)/snakemake
	@$(MAKE) --no-print-directory report

# The report is rebuilt only when something in results/ is newer than it.
report: $(STAMP)
	@if [ ! -f results/report.html ] || [ -n "$$(find results -type f -newer results/report.html ! -name report.html -print -quit)" ]; then \
		$(BIN)/snakemake --report results/report.html; \
	else echo "Report up to date: results/report.html"; fi

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf results logs benchmarks .snakemake
