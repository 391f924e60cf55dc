# Quick start: `make demo` (ingest generated photos and search them) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A second environment with every dependency at the lowest version pyproject.toml declares.
LOWEST := .venv-lowest
LOWEST_STAMP := $(LOWEST)/.installed
export PIXEL_DETECTIVE_HOME ?= $(CURDIR)/.pixel_detective
export DAGSTER_HOME ?= $(PIXEL_DETECTIVE_HOME)/dagster_home
HOST ?= 127.0.0.1
PORT ?= 3000

.PHONY: install demo test test-lowest lint format dev serve bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch/torchvision first: pinned to the builds available locally on these machines
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/pip install --quiet torch torchvision
	$(BIN)/pip install --quiet -e ".[dev,raw,heif,jxl]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pixel-detective demo --folder demo_images --query "a cat"

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Each declared range is true at its low end too: pins every direct dependency to its lower bound.
$(LOWEST_STAMP): pyproject.toml .ci/lowest_constraints.py
	$(PYTHON) -m venv $(LOWEST)
	$(PYTHON) .ci/lowest_constraints.py > $(LOWEST)/constraints.txt
	$(LOWEST)/bin/pip install --quiet -c $(LOWEST)/constraints.txt ".[dev,raw,heif,jxl]"
	touch $(LOWEST_STAMP)

# One test file per dependency family (torch/open_clip/transformers and the torch-free image tower, qdrant, scikit-learn, Pillow
# plugins, Dagster, FastAPI): the whole suite already runs on the newest versions in `make test`.
LOWEST_TESTS := tests/test_models.py tests/test_image_tower.py tests/test_index.py tests/test_projection.py tests/test_formats.py \
	tests/test_pipeline.py tests/test_search.py tests/test_serve.py

test-lowest: $(LOWEST_STAMP)
	PYTHONPATH=$(CURDIR) $(LOWEST)/bin/python -m pytest -q $(LOWEST_TESTS)

lint: $(STAMP)
	$(BIN)/ruff format --check pixel_detective_dagster tests benchmarks
	$(BIN)/ruff check pixel_detective_dagster tests benchmarks
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format pixel_detective_dagster tests benchmarks
	$(BIN)/ruff check --fix pixel_detective_dagster tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks --json benchmarks/results.json

# `make dev PORT=3001 HOST=...` (127.0.0.1 unless asked); Ctrl-C or SIGTERM to `pixel-detective dev` stops every Dagster process
dev: $(STAMP)
	exec $(BIN)/pixel-detective dev --host $(HOST) --port $(PORT)

serve: $(STAMP)
	$(BIN)/pixel-detective serve

clean:
	rm -rf $(VENV) $(LOWEST) .pixel_detective demo_images test-artifacts
