# emozone-lite: the two commands are `make demo` and `make test`.
# Both create .venv when it is missing and install the package first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.emozone-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# idle OpenMP threads of torch must not spin against numba's renderer threads
export OMP_WAIT_POLICY := PASSIVE

.PHONY: install demo demo-fast test test-py test-nb lab bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m emozone_lite demo

demo-fast: $(STAMP)
	$(PY) -m emozone_lite demo --fast

# Every test: pytest on tests/ and nbval on notebooks/ (EMOZONE_FAST=1 shrinks
# sizes and iterations, never the checks).
test: $(STAMP)
	EMOZONE_FAST=1 MPLBACKEND=Agg $(PY) -m pytest tests -q
	EMOZONE_FAST=1 MPLBACKEND=Agg $(PY) -m pytest --nbval-lax notebooks -q -p no:cacheprovider

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/bench_render.py
	$(PY) benchmarks/bench_studio.py

clean:
	rm -rf outputs .pytest_cache
