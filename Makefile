# Quick start: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use. A GPU user changes TORCH_VERSION (or TORCH_SPEC) here.
PYTHON ?= python3.11
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?= torch==$(TORCH_VERSION)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where `make gpu-check` writes gpu-check.json (and the gpu tests' log and JUnit XML).
OUT ?= gpu-check-out

.PHONY: demo test lint install clean gpu-check

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; run 'make PYTHON=/path/to/python3.11 ...'"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned, so the package's own `torch>=` range installs nothing more.
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ldnet demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# On a CUDA machine: the `gpu` tests and ldnet vs hrnet_w32 figures (about 3 minutes on one
# H200); without CUDA: the CPU self-checks, one line, exit 0.
gpu-check: $(STAMP)
	$(BIN)/python -m ldnet.bench.gpucheck --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check ldnet tests
	$(BIN)/ruff format --check ldnet tests

clean:
	rm -rf $(VENV) build *.egg-info
