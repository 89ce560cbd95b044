# `make train` and `make test` set up .venv on first use (and again when requirements.txt changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: train test test-learning bench quality demo clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/python main.py --dataset mnist --train $(ARGS)

# The learning tests train to a result for minutes: test-learning runs them (CI runs both).
test: $(STAMP)
	$(BIN)/python -m pytest -m "not learning" $(PYTEST_ARGS)

test-learning: $(STAMP)
	$(BIN)/python -m pytest -m learning -n 0 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench.py $(ARGS)

demo: $(STAMP)
	$(BIN)/python main.py --dataset mnist --demo $(ARGS)

quality: $(STAMP)
	$(BIN)/python quality.py $(ARGS)

clean:
	rm -rf checkpoints samples logs export
