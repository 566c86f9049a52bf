# Developer and CI entry points. Everything runs in ./.venv, created on demand.
#   make demo   - set up and smooth an example image
#   make test   - set up, lint and run the test suite
#   make build  - incremental rebuild of the compiled engine after editing csrc/
#   make bench  - the solver benchmark (paper Table 1 workload and sweeps)
#   make bench-docs - full `tvcli bench` run -> docs/benchmarks.{json,md,png}
#   make gpu-data - data/gpu/{bsds.pack,eps.pack,cifar10.tar.gz} for .ci/gpu_train.sh
#                   (from ../shared/data and data/eps; git-ignored, carried to the GPU
#                   machine); fails when a GPU run would carry more than 61 MiB
#   make bench-peers - install the peers `tvcli bench` compares with (proxTV, cvxpylayers)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
EXT    := $(firstword $(wildcard tvcli/_C*.so))
CSRC   := $(shell find csrc -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \))

.PHONY: setup build test lint demo bench bench-docs bench-peers clean gpu-data

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q --no-build-isolation -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# ninja (a dev dependency) recompiles only the translation units that changed.
build: setup
	$(PY) setup.py -q build_ext --inplace

tvcli/.built: $(CSRC) $(VENV)/.installed
	$(PY) setup.py -q build_ext --inplace
	touch $@

lint: setup
	$(VENV)/bin/ruff check tvcli tests $(wildcard benchmarks examples)

test: tvcli/.built lint
	$(VENV)/bin/pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

demo: tvcli/.built
	$(VENV)/bin/tvcli smooth examples/images/astronaut_noisy.png -o build/demo/astronaut_smooth.png --lam 0.05 --compare --overwrite
	@echo "wrote build/demo/astronaut_smooth.png and build/demo/astronaut_smooth.compare.png (input | output)"

bench: tvcli/.built
	$(PY) -m tvcli.bench

# proxTV's sdist (prox-tv-sdist) builds its C code through cffi, which pip's
# isolated build environment does not provide: install cffi first, then build it
# against this environment without isolation. It links the system BLAS and LAPACK
# (Debian/Ubuntu: libblas-dev liblapack-dev, installed here when missing and
# apt-get can). The other peers are the [bench] extra.
bench-peers: setup
	@if ! ldconfig -p | grep -q 'libblas\.so ' || ! ldconfig -p | grep -q 'liblapack\.so '; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing libblas-dev liblapack-dev (proxTV links them)"; \
	    apt-get install -y -q libblas-dev liblapack-dev >/dev/null; \
	  else \
	    echo "proxTV needs BLAS and LAPACK development files: install libblas-dev and liblapack-dev (or your system's equivalent), then rerun" >&2; exit 1; \
	  fi; \
	fi
	$(PIP) install -q cffi pycparser
	$(PIP) install -q --no-build-isolation prox-tv-sdist
	$(PIP) install -q "cvxpylayers>=1.0" "matplotlib>=3.5"
	$(PY) -c "import prox_tv, cvxpylayers; print('bench peers installed: proxTV, cvxpylayers')"

bench-docs: tvcli/.built
	$(VENV)/bin/tvcli bench --json > docs/benchmarks.json
	$(PY) benchmarks/make_report.py docs/benchmarks.json --out docs/benchmarks.md

BSDS500 ?= ../shared/data/bsds500
data/bsd432/manifest.json:
	$(VENV)/bin/tvcli data bsd432 data/bsd432 --bsds500 $(BSDS500) -q

EPS_DATA ?= data/eps
$(EPS_DATA)/manifest.json:
	$(VENV)/bin/tvcli data eps $(EPS_DATA) --bsds500 $(BSDS500) --train 6 --val 2 --test 10

gpu-data: setup $(EPS_DATA)/manifest.json
	$(PY) -m tvcli.learning.train.gpu make-data --bsds500 $(BSDS500) --eps $(EPS_DATA)

clean:
	rm -rf build tvcli/_C*.so tvcli/_core*.so tvcli/.built
