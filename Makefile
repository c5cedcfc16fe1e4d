# LearnTrack: the two commands a fresh clone needs are `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup demo test stack-up stack-down stack-status clean-state

$(STAMP): requirements.txt pyproject.toml
	@echo "==> Python environment ($(VENV)), pinned by requirements.txt"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet --progress-bar off -r requirements.txt
	@$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

## setup: Python venv + every server and jar of the local stack (idempotent, prints progress)
setup: $(STAMP)
	@$(BIN)/learntrack stack install

## demo: set up, start the stack, generate data, run the DAG, print a summary of every store
demo: setup
	@$(BIN)/learntrack demo

## test: set up, start the stack, run the whole test suite against the real servers
test: setup
	@$(BIN)/learntrack stack up
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

stack-up: setup
	@$(BIN)/learntrack stack up
stack-down:
	@$(BIN)/learntrack stack down
stack-status:
	@$(BIN)/learntrack stack status
