# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The stub generator, pinned (the stubs are committed and `make proto` must be
# reproducible) and kept apart: grpcio-tools 1.62.3 emits stubs that load on any
# protobuf 3.20-7.x, but as a package it would pull protobuf 4 into the venv.
PROTO_TOOLS := $(VENV)/proto-tools
PROTO_FILES := $(wildcard proto/stablequeue/v1/*.proto)

.PHONY: run test browser proto proto-check bench lint fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps --upgrade --target $(PROTO_TOOLS) grpcio-tools==1.62.3
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sq-coordinator --listen 127.0.0.1:50051 --data-dir ./data

test: $(STAMP) browser
	$(BIN)/python -m pytest

# The dashboard tests drive Debian's chromium (Playwright never downloads one).
# Without root or apt they are skipped, and say so.
browser:
	@command -v chromium >/dev/null || { \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } || \
		echo "make: could not install chromium (apt-get); the browser tests will be skipped"; }

proto: $(STAMP)
	PYTHONPATH=$(PROTO_TOOLS) $(BIN)/python -m grpc_tools.protoc -Iproto \
		--python_out=clients --pyi_out=clients --grpc_python_out=clients $(PROTO_FILES)

bench: $(STAMP)
	$(BIN)/python bench/bench_queue.py
	$(BIN)/python bench/bench_dispatch.py
	$(BIN)/python bench/bench_library.py
	$(BIN)/python bench/bench_agent.py
	$(BIN)/python bench/bench_download.py
	$(BIN)/python bench/bench_failover.py
	$(BIN)/python bench/bench_http.py
	$(BIN)/python bench/bench_scale.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) data .pytest_cache
