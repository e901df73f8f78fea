VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench install clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## run the server on the embedded default (SQLite + video dir under ./truckx-data) on 127.0.0.1:8888
run: $(STAMP)
	$(VENV)/bin/truckx-server --host 127.0.0.1 --port 8888

## the whole test suite
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## the benchmark suite (prints the table; a full run writes benchmarks/RESULTS.md and benchmarks/results.json)
## e.g. make bench BENCH_ARGS="--only 1,6 --quick"; see benchmarks/README.md (--profile, compare.py)
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
