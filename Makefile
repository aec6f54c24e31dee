# dicomscrub: the two set-up commands are `make demo` and `make test`.
# Both install what they need into .venv (Python 3.11, pinned by uv.lock) and the system
# packages they need with apt-get when run as root (tesseract-ocr, jq, curl, DejaVu fonts).

SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := --extra airflow --extra dagster --extra serve --extra s3 --extra fast-ocr --extra dev
# fonts-dejavu-core: the fonts the synthetic corpus burns into its images (`samples generate`);
# fonts-dejavu-extra: the other DejaVu faces of the held-out sweeps (`quality.py --faces`).
SYSTEM_PACKAGES := tesseract-ocr jq curl fonts-dejavu-core fonts-dejavu-extra
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export OMP_THREAD_LIMIT ?= 1

.PHONY: demo test test-fast lint typecheck install system-deps bench quality clean

demo: install
	$(BIN)/python -m dicomscrub.dagster_assets.demo

test: install lint typecheck
	$(BIN)/pytest

# Skips the slow integration tests (Airflow, Dagster, end to end); CI runs everything.
test-fast: install
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	@mkdir -p build/mypy/dicomscrub
	@for p in core provider dagster_assets; do ln -sfn ../../../$$p build/mypy/dicomscrub/$$p; done
	$(BIN)/mypy -p dicomscrub.core -p dicomscrub.provider -p dicomscrub.dagster_assets

install: system-deps $(VENV)/.synced

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON) $(EXTRAS)
	@touch $@

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

system-deps:
	@missing=""; \
	for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing system packages:$$missing"; \
	    echo "run as root, or ask an administrator to run: sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

# Benchmarks compare against dicognito, deid and presidio-image-redactor (the bench extra).
# They run in a separate environment, .venv-bench (all extras + bench), so that the test
# environment .venv is never disturbed; opencv (presidio) needs libgl1 and libglib2.0-0.
BENCH_VENV := .venv-bench
BENCH_SYSTEM_PACKAGES := libgl1 libglib2.0-0
BENCH_ARGS ?=

bench: install $(BENCH_VENV)/.synced
	@$(MAKE) --no-print-directory system-deps SYSTEM_PACKAGES="$(BENCH_SYSTEM_PACKAGES)"
	$(BENCH_VENV)/bin/python benchmarks/run.py $(BENCH_ARGS)

$(BENCH_VENV)/.synced: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(BENCH_VENV) $(UV) sync --frozen --python $(PYTHON) $(EXTRAS) --extra bench
	@touch $@

# Quality of dicomscrub on the default synthetic corpus (seed 0, 3 patients, 14 files).
quality: install
	$(BIN)/python benchmarks/quality.py $(QUALITY_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(TOOLS) build demo bench-out
