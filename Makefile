# hl-debug: `make demo` runs the main job, `make test` runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
EXPORT ?= ../shared/data/chatbot_intent_classifier_data.json.zip
# The live API's recorded answers, used as the API's evidence when the file is there.
RECORDED ?= ../shared/data/recorded_predictions_project411.json
DB ?= data/hl_debug.db
HOST ?= 127.0.0.1
PORT ?= 5000
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

# Re-installs only when the project's metadata or pins change.
$(STAMP): setup.cfg pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[test,lint,ray]'
	touch $(STAMP)

demo: install
	$(BIN)/hl-debug --db $(DB) run $(EXPORT) $(if $(wildcard $(RECORDED)),--recorded-predictions $(RECORDED))
	$(BIN)/hl-debug --db $(DB) serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not browser"

# ruff on the code, mypy on the library, import-linter on the import direction (setup.cfg).
lint: install
	$(BIN)/ruff check hl_debug webapp pipelines tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --config setup.cfg

clean:
	rm -rf $(VENV) build *.egg-info
