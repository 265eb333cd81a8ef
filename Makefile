# One command per task. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.installed-dev
LOCAL  := $(VENV)/.installed-local
BENCH  := $(VENV)/.installed-bench
# Arize Phoenix, the trace backend the tests start, lives in a virtualenv of its own: its
# many dependencies (and its pytest plugin) stay out of the project's environment.
PHOENIX_VENV    := .venv-phoenix
PHOENIX         := $(PHOENIX_VENV)/.installed
PHOENIX_VERSION ?= 20.26.1

.PHONY: install demo test test-fast lint docs bench bench-postgres postgres llama-server phoenix prometheus clean

$(BASE): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# llama-cpp-python compiles llama.cpp from source (~5 min on 2 cores). A native build
# (-march=native) can emit AMX instructions that some VMs fault on at the first real
# prompt, so build for a portable AVX2 baseline, and never reuse a cached native wheel.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_BMI2=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
$(LOCAL): $(BASE)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q --no-cache-dir \
	  'llama-cpp-python[server]==0.3.36'
	$(BIN)/pip install -q -e '.[dev,local]'
	touch $@

$(BENCH): $(BASE)
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

$(PHOENIX):
	test -x $(PHOENIX_VENV)/bin/python || $(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/pip install -q -U pip
	$(PHOENIX_VENV)/bin/pip install -q 'arize-phoenix==$(PHOENIX_VERSION)'
	touch $@

phoenix: $(PHOENIX)  ## Arize Phoenix in .venv-phoenix, for the tracing test

prometheus:  ## Debian's prometheus, for the metrics test (apt-get, as root)
	@command -v prometheus >/dev/null 2>&1 || test -x /usr/bin/prometheus || { \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends prometheus; } || { \
	  echo "could not install Debian's prometheus: run 'apt-get install prometheus' as root"; \
	  exit 1; }

install: $(LOCAL)

demo: $(BASE)  ## the support-desk example, end to end on the simulator
	$(BIN)/python -m examples.support_desk.demo

# The PostgreSQL store's tests start a private server of their own (tests/pg_cluster.py);
# this installs the Debian package if no server binaries are found.
postgres:
	bash scripts/postgres.sh install

test: $(LOCAL) postgres $(PHOENIX) prometheus  ## every test: the real llama.cpp server, PostgreSQL, SIGKILL crash tests, Phoenix, Prometheus
	$(BIN)/python -m pytest

test-fast: $(BASE) postgres  ## the quick loop: no llama.cpp build, no llama server, slow crash tests or telemetry backends
	$(BIN)/python -m pytest -m "not llama and not slow and not backend"

lint: $(BASE)
	$(BIN)/ruff check src tests examples bench docs
	$(BIN)/mypy

docs: $(BASE)  ## the documentation site (docs/, mkdocs.yml) into site/, warnings are errors
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(BENCH)  ## reliability, budgets (one engine, several), store limits, resilience, fault server, leases, waits, codec, sandbox, then Convoy vs the peers
	$(BIN)/python bench/reliability.py --agents 5 --fault-rate 0.05 --sessions 10000 \
	  --plot bench/reliability.png
	$(BIN)/python bench/budget_stress.py --sessions 2000
	$(BIN)/python bench/budget_engines.py --engines 2 --sessions 1000
	$(BIN)/python bench/store_limits.py
	$(BIN)/python bench/resilience_overhead.py
	$(BIN)/python bench/breaker_reject.py
	$(BIN)/python bench/lease_overhead.py
	$(BIN)/python bench/waits.py
	$(BIN)/python bench/journal_codec.py
	$(BIN)/python bench/faults.py --sessions 300 --concurrency 20 --outage-s 30
	$(BIN)/python bench/observability.py --clock cpu
	$(BIN)/python bench/pii_redaction.py
	$(BIN)/python bench/sandbox.py
	bash bench/run.sh

llama-server: $(LOCAL)  ## serve SmolLM2-135M on http://127.0.0.1:8765/v1
	bash scripts/llama_server.sh

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) .convoy .pytest_cache .mypy_cache .ruff_cache site
