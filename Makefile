VENV ?= .venv
PY := $(VENV)/bin/python
# two install stamps: what the server, CLI and simulator need (make run), and that plus the test extra
# (make test, make install); each is redone only when pyproject.toml changes, so a warm venv never calls pip
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

# make run listens on HOST:PORT (also taken from TRUCKX_HOST / TRUCKX_PORT); e.g. `make run PORT=9000`
HOST ?= $(or $(TRUCKX_HOST),127.0.0.1)
PORT ?= $(or $(TRUCKX_PORT),8888)

.PHONY: run test bench install install-run clean console screenshots

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP_RUN): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(STAMP_TEST): $(STAMP_RUN) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $@

## the runtime dependencies only (what `make run` installs)
install-run: $(STAMP_RUN)

## a development venv: runtime and test dependencies
install: $(STAMP_TEST)

## run the server on the embedded default (SQLite + video dir under ./truckx-data) on HOST:PORT
run: $(STAMP_RUN)
	exec $(VENV)/bin/truckx-server --host '$(HOST)' --port '$(PORT)'

## the whole test suite
test: $(STAMP_TEST)
	$(PY) -m pytest $(PYTEST_ARGS)

## the benchmark suite (prints the table; a full run writes benchmarks/RESULTS.md and benchmarks/results.json)
## e.g. make bench BENCH_ARGS="--only 1,6 --quick"; see benchmarks/README.md (--profile, compare.py)
bench: $(STAMP_TEST)
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

## refresh docs/screenshots/ (the browser tests, writing their screenshots there)
screenshots: $(STAMP_TEST)
	TRUCKX_UPDATE_SCREENSHOTS=1 $(PY) -m pytest tests/browser $(PYTEST_ARGS)

## rebuild the fleet console (truckx_server/static/) from frontend/ (Node 20, npm); the result is committed
console:
	cd frontend && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
