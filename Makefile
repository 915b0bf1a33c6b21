# emozone-lite: the two commands are `make demo` and `make test`.
# Both create .venv when it is missing and install the package first (exact pins
# from constraints.txt, library ranges from pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.emozone-installed
PIP    := $(PY) -m pip install -q -c constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The toolkit's thread policy (emozone_lite/threads.py): idle OpenMP threads sleep
# instead of spinning against the numba renderer's threads. Exported here so that it
# reaches every process make starts before torch loads (notebook kernels, tests).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo demo-fast test lint format lab bench wheel-check book clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PIP) -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m emozone_lite demo

demo-fast: $(STAMP)
	$(PY) -m emozone_lite demo --fast

# Every test: pytest on tests/ (the grading checks among them: each unchanged exercise stub
# fails, each worked solution passes) and nbval on notebooks/ and solutions/ (EMOZONE_FAST=1
# shrinks sizes and iterations, never the checks).
test: $(STAMP)
	EMOZONE_FAST=1 MPLBACKEND=Agg $(PY) -m pytest tests -q
	EMOZONE_FAST=1 MPLBACKEND=Agg $(PY) -m pytest --nbval-lax notebooks solutions -q -p no:cacheprovider

# ruff: lint and format check (CI runs this before the tests); `make format` fixes.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/bench_render.py
	$(PY) benchmarks/bench_studio.py

# A plain install as a user gets it: build the wheel, install it (no extras) into a
# fresh venv outside the checkout, run the fast demo from another folder.
wheel-check: $(STAMP)
	PYTHON=$(PYTHON) BUILD_PY=$(PY) bash .ci/wheel_check

# The course site: every notebook executed (FAST sizes, as `make test`), one page each, the
# course map (book/index.md), docs/design.md and docs/teaching.md; then the site's own test in
# headless Chromium. Sources are assembled in build/book/src (notebook 07 reads ../docs/claim from
# there); executed outputs are cached in build/book/jupyter_cache (BOOK_EXECUTION=force re-runs them),
# the executed notebooks land in build/book/jupyter_execute, the pages in site/.
BOOK_BUILD := build/book
book: $(STAMP)
	rm -rf $(BOOK_BUILD)/src $(BOOK_BUILD)/docs $(BOOK_BUILD)/doctrees $(BOOK_BUILD)/html $(BOOK_BUILD)/jupyter_execute site
	mkdir -p $(BOOK_BUILD)/src $(BOOK_BUILD)/docs $(BOOK_BUILD)/outputs
	cp -R book/. $(BOOK_BUILD)/src/
	cp notebooks/[0-9][0-9]_*.ipynb docs/design.md docs/teaching.md docs/*.png $(BOOK_BUILD)/src/
	cp -R docs/claim $(BOOK_BUILD)/docs/claim
	EMOZONE_FAST=1 MPLBACKEND=Agg EMOZONE_OUTPUTS=$(CURDIR)/$(BOOK_BUILD)/outputs \
	  BOOK_BUILD_DIR=$(CURDIR)/$(BOOK_BUILD) $(PY) -m sphinx -b html --keep-going \
	  -d $(BOOK_BUILD)/doctrees $(BOOK_BUILD)/src $(BOOK_BUILD)/html
	cp -R $(BOOK_BUILD)/html site
	EMOZONE_SITE=site EMOZONE_SITE_NOTEBOOKS=$(BOOK_BUILD)/jupyter_execute \
	  $(PY) -m pytest tests/test_site.py -q -p no:cacheprovider

clean:
	rm -rf outputs .pytest_cache build dist site
