# Every target creates the virtualenv and installs into it first, so each is one command
# on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test lint fmt bench-single bench bench-quick bench-latency clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m swarmget.demo

# Everything, on a fresh machine too: scripts/test-prereqs.sh installs curl, aria2c and chromium
# (as root, with apt) and starts a PostgreSQL (Debian's, or pgserver from PyPI) unless
# SWARMGET_TEST_PG names one; only what cannot be had there is skipped, with a message.
test: $(STAMP)
	SWARMGET_TEST_PYTHON=$(BIN)/python bash scripts/test-prereqs.sh $(BIN)/pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src

fmt: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench-single: $(STAMP)
	$(BIN)/python bench/single_host.py

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The namespace LAN (as root; skips with a message where namespaces are not permitted).
bench: $(BENCH_STAMP)
	$(BIN)/python bench/lan.py all

# `all --quick` includes `share` (fetch once per LAN: 3 hosts, 8 MiB, sha256 of every download).
bench-quick: $(BENCH_STAMP)
	$(BIN)/python bench/lan.py all --quick
	$(BIN)/python bench/lan.py run user --quick --rtt-ms 30 --results bench/out/latency-quick

# As a user sees it (swarmget get -> verified file), with a 30 ms round trip to the origin.
bench-latency: $(BENCH_STAMP)
	$(BIN)/python bench/lan.py run user --rtt-ms 30 --results bench/results/latency

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
