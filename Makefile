# `make train` and `make test` set up .venv on first use (and again when requirements.txt changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: train test test-full test-learning test-all bench quality demo clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/python main.py --dataset mnist --train $(ARGS)

# Tiers by what they cost (docs/tests.md): test touches every module and command once, in about 5 minutes
# on 2 cores; test-full runs what it leaves out (whole bad-input catalogues, the browser, long fault probes,
# tf.distribute, the benchmark); test-learning trains to a result. test-all and CI run all three.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not learning and not full" $(PYTEST_ARGS)

test-full: $(STAMP)
	$(BIN)/python -m pytest -m "full and not learning" $(PYTEST_ARGS)

test-learning: $(STAMP)
	$(BIN)/python -m pytest -m learning -n 0 $(PYTEST_ARGS)

test-all: test test-full test-learning

bench: $(STAMP)
	$(BIN)/python bench.py $(ARGS)

demo: $(STAMP)
	$(BIN)/python main.py --dataset mnist --demo $(ARGS)

quality: $(STAMP)
	$(BIN)/python quality.py $(ARGS)

clean:
	rm -rf checkpoints samples logs export
