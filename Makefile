# The two commands: `make run` (quick grid + tables) and `make test`.
# `make run` is `kanbench run $(GRID)` in the checkout's virtual environment.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
GRID   ?= quick
ARGS   ?=
# cells at once, each on its share of the cores (a 2-core machine: two cells of one thread)
JOBS   ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 8 ? n : 8 )))

.PHONY: install install-dev browser data run test test-fast bench lint clean-results

KERNELS := $(BIN)/python -c "from kanbench.methods.layers.kernels.build import load_all; load_all()"

# the package and what it needs; with .pyc: where PYTHONDONTWRITEBYTECODE is set, none is made later
$(VENV)/.packages: pyproject.toml
	test -x $(BIN)/pip || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install -q -e .
	touch $@

# what make run needs: the packages and the C++ kernels
$(VENV)/.installed: $(VENV)/.packages
	$(KERNELS)
	touch $@

# the tests' extras (pytest, ruff, hypothesis, Ray, submitit) on top, installed while the
# kernels compile (pip mostly unpacks; the compiler takes the cores)
$(VENV)/.installed-dev: $(VENV)/.packages
	$(BIN)/pip install -q -e '.[dev]' & pip=$$!; $(KERNELS); kernels=$$?; \
	wait $$pip && [ $$kernels = 0 ]
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# the HTML leaderboard's test reads it in Debian's headless Chromium (apt, as root)
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } || \
	echo "warning: no chromium and no root apt to install it; the site test will fail"

# Fashion-MNIST comes from Debian's dataset-fashion-mnist where apt can install it (as root).
data: install
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null \
	    && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; fi
	$(BIN)/python scripts/prepare_data.py

run: data
	$(BIN)/kanbench run $(GRID) --jobs $(JOBS) $(ARGS); status=$$?; \
	echo "tables: results/tables/$(GRID)_*.md  plots: results/plots/$(GRID)_*.png  site: results/site/index.html"; \
	exit $$status

# the slowest tests listed at the end of every full run (CI's output included)
test: install-dev browser
	$(BIN)/python -m pytest -q --durations=20

test-fast: install-dev browser
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python scripts/bench_kan.py
	$(BIN)/python scripts/bench_kmeans.py
	$(BIN)/python scripts/bench_gather.py
	$(BIN)/python scripts/bench_index_coding.py
	$(BIN)/python scripts/bench_multihead.py
	$(BIN)/python scripts/bench_multihead.py --arch detection --kmeans-iterations 2

lint: install-dev
	$(BIN)/ruff check .
