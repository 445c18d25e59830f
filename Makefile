# greenloop: every command a developer or CI needs. `make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Every interpreter of the matrix that this machine has (pyenv); 3.11 is the default venv.
PYENV_ROOT ?= $(HOME)/.pyenv
EXTRA_PYTHONS := $(foreach v,3.12.1 3.13.0,$(wildcard $(PYENV_ROOT)/versions/$(v)/bin/python3))

.PHONY: all venv venvs system-deps lint typecheck unit test test-matrix test-pollers compat compat-check compat-patched bench bench-green floor request-cost demo figures clean

all: test

# Debian packages the tests and demos need (wrk for load, redis-server for integration tests).
system-deps:
	@need=""; for p in wrk:wrk redis-server:redis-server; do \
	  cmd=$${p%%:*}; pkg=$${p##*:}; command -v $$cmd >/dev/null || need="$$need $$pkg"; done; \
	if [ -n "$$need" ]; then \
	  echo "installing Debian packages:$$need"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$need; fi

# (Re)create the venv if missing and install everything; cheap when already satisfied.
venv:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test,demo]'

venvs: venv
	@for py in $(EXTRA_PYTHONS); do \
	  v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  test -x .venv-$$v/bin/python || $$py -m venv .venv-$$v; \
	  .venv-$$v/bin/python -m pip install -q --disable-pip-version-check -e '.[test,demo]'; \
	done

lint: venv
	$(VENV)/bin/ruff check greenloop tests compat demos
	$(VENV)/bin/ruff format --check greenloop tests compat demos
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest -q

# The unit tests on every Python of the matrix installed here.
test-matrix: venvs
	@set -e; for py in $(PY) $(foreach p,$(EXTRA_PYTHONS),.venv-$(shell $(p) -c 'import sys; print("%d.%d" % sys.version_info[:2])')/bin/python); do \
	  echo "=== pytest on $$($$py -V)"; $$py -m pytest -q -p no:cacheprovider; done

# The unit tests again on greenloop's fallback pollers (poll, select: used where epoll is
# missing), on 3.11; asyncio's reference loop then uses the same readiness API.
test-pollers: venv
	@set -e; for p in poll select; do \
	  echo "=== pytest with GREENLOOP_POLLER=$$p"; GREENLOOP_POLLER=$$p $(PY) -m pytest -q -p no:cacheprovider; done

# Everything CI runs: lint, the tests on 3.11/3.12/3.13 (and on the fallback pollers), the
# asyncio conformance run on 3.11.
test: system-deps venvs lint test-matrix test-pollers compat-check

# CPython's own test.test_asyncio against greenloop and asyncio's loop; writes compat/results/.
compat: venvs
	@for py in $(PY) .venv-3.12/bin/python .venv-3.13/bin/python; do \
	  test -x $$py && $$py -m compat.run_test_asyncio --write; done

# CI's conformance gate: greenloop must pass every test asyncio's own loop passes (3.11).
compat-check: venv
	$(PY) -m compat.run_test_asyncio --check

# The stdlib's own tests (test_socket, test_threading, ...) under patch_all, one interpreter per file.
compat-patched: venvs
	@for py in $(PY) .venv-3.12/bin/python .venv-3.13/bin/python; do \
	  test -x $$py && $$py -m compat.run_stdlib_patched --patch all --write; done

bench: venv
	$(PY) -m demos.bench

bench-green: venv
	$(PY) -m demos.bench.green

# Knot-C beside the same request code on bare greenlets (the floor) and as uvloop callbacks.
floor: system-deps venv
	$(PY) -m demos.bench.floor

# Where a request's user-space work goes, per server and layer (valgrind; about a minute each).
request-cost: system-deps venv
	@command -v valgrind >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq valgrind; }
	$(PY) -m demos.bench.request_cost

demo: system-deps venv
	$(PY) -m demos.demo

figures: system-deps venv
	$(PY) -m demos.figures

clean:
	rm -rf .venv .venv-3.* .mypy_cache .ruff_cache .pytest_cache *.egg-info
