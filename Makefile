# Every target creates .venv with `python3 -m venv` when it is missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# What the suite exercises beyond the core: launchers (joblib, submitit, Ray), reports, telemetry, MLflow.
TEST_EXTRAS := test,launchers,ray,report,telemetry,mlflow

.PHONY: demo test install clean bench reliability

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[$(TEST_EXTRAS)]"
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m experiments.run

test: $(TEST_STAMP)
	$(BIN)/python -m pytest

# Regenerates docs/benchmarks.md (mock server, workloads, TextGrad and Trace in their own venvs under .cache/bench, scale).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m benchmarks.bench

# The whole reliability suite (fault matrix, kills, secrets, fuzzed inputs, attacks, test-split isolation; a fast slice
# of it runs in `make test`), then docs/reliability.md from the figures it measured (regenerated even when a test fails,
# so the doc shows the failure; the target still fails).
reliability: $(TEST_STAMP)
	$(BIN)/python -m pytest tests/reliability --reliability-full -p no:randomly; status=$$?; \
	$(BIN)/python tests/reliability/figures.py && exit $$status

clean:
	rm -rf $(VENV) runs outputs .cache
