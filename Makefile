# Two commands: `make lab` opens the course, `make test` checks all of it.
# Both create .venv on first use; delete .venv to start over.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sdcourse-installed
JUPYTER_ARGS ?=
PYTEST_ARGS ?=

.PHONY: lab test exercises site figures clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

# Jupyter refuses to run as root unless told; containers and cloud notebooks often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks $(ROOT_FLAG) $(JUPYTER_ARGS)

# Fast mode shrinks training and sampling so every notebook runs in seconds;
# notebooks/ and solutions/ are executed by nbval, two at a time (one thread each:
# two workers with two threads each on two cores run several times slower).
test: $(STAMP)
	SDCOURSE_FAST=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --nbval-lax \
		--durations=25 $(PYTEST_ARGS)

exercises: $(STAMP)
	$(BIN)/sdcourse exercises build

# The course as a book: every lesson executed (full mode unless SDCOURSE_FAST=1 is given) and
# rendered by Sphinx + myst-nb into $(SITE_OUT); executions are cached, so a rebuild re-runs only
# the lessons that changed. Open $(SITE_OUT)/index.html.
SITE_OUT ?= _build/site$(if $(SDCOURSE_FAST),-fast)
site: $(STAMP)
	$(BIN)/sphinx-build -b html -c site -q -T . $(SITE_OUT)  # -T: a failing cell is shown in full
	@du -sh $(SITE_OUT)

# One small PNG per lesson (docs/figures/, committed, shown in the README), taken from the lessons
# as `make site` executes them in fast mode.
figures: $(STAMP)
	$(MAKE) site SDCOURSE_FAST=1
	$(BIN)/python site/figures.py _build/.jupyter_cache-fast

clean-venv:
	rm -rf $(VENV)
