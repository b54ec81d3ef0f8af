# Image copy detection course. Two commands do everything on a fresh machine:
#   make course   set up .venv, build mini-DISC, run every lesson headless into build/course/ (with timings.json)
#   make test     set up .venv, run the unit tests and every lesson under nbval (test profile)
# make publish    (maintainers) run the course profile and commit its outputs and measured times
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= course
LESSONS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
INDEX := notebooks/index.ipynb
OUT := build/course

.PHONY: help venv system-deps check data course publish timings lab test unit nbtest students lock clean

help:
	@echo "make course   set up and run the whole course (profile $(PROFILE)) into $(OUT)/"
	@echo "make test     set up and run all tests (unit + notebooks, test profile)"
	@echo "make lab      open JupyterLab on the lessons"
	@echo "make check    environment check (OK/FAIL per requirement)"

# Debian packages: libmagic1 (AugLy imports python-magic) and chromium (the browser check of
# the widgets in make test; optional for make course). Installed when missing and running as root.
system-deps:
	@missing=""; \
	ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1' || missing="libmagic1"; \
	command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  elif echo "$$missing" | grep -q libmagic1; then \
	    echo "libmagic is missing: install it (Debian/Ubuntu: sudo apt-get install libmagic1)"; exit 1; \
	  else echo "note: chromium is missing, so the browser check will be skipped (sudo apt-get install chromium)"; fi; \
	fi

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

check: venv
	$(BIN)/python -m isc_helpers.tool.checks

data: venv
	ISC_PROFILE=$(PROFILE) $(BIN)/isc-course build-data

course: venv data
	ISC_HEADLESS=1 $(BIN)/python tools/course.py run --profile $(PROFILE) --out $(OUT)
	@echo "Executed lessons, HTML copies and timings.json are in $(OUT)/. Open the lessons with: make lab"

publish: venv
	ISC_PROFILE=course $(BIN)/isc-course build-data
	ISC_HEADLESS=1 $(BIN)/python tools/course.py publish

timings: venv
	$(BIN)/python tools/course.py timings

lab: venv
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) --notebook-dir=. notebooks/

unit: venv
	ISC_PROFILE=test ISC_HEADLESS=1 $(BIN)/python -m pytest -q tests

nbtest: venv
	ISC_PROFILE=test ISC_HEADLESS=1 $(BIN)/python -m pytest -q --nbval-lax $(INDEX) $(LESSONS)

test: venv system-deps
	ISC_PROFILE=test ISC_HEADLESS=1 $(BIN)/python -m pytest -q --durations=10 tests --nbval-lax $(INDEX) $(LESSONS)

students: venv
	$(BIN)/python tools/make_student_copies.py

lock: venv
	$(BIN)/pip freeze --exclude-editable | sort -f > constraints.new && echo "review constraints.new, then move it over constraints.txt"

clean:
	rm -rf build cache
