# The two commands of the README: `make run` and `make test`. Everything else helps them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13 as .python-version says: pyenv's, else any python3.13 on PATH.
PYTHON ?= $(shell (pyenv which python 2>/dev/null | grep -q 3.13 && pyenv which python) || command -v python3.13 || command -v python3.12)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.PHONY: help install run test lint format migrate demo worker beat lock screenshots bench bench-venv clean

help:
	@echo "make run    set up, load the demo, serve on http://127.0.0.1:8000"
	@echo "make test   set up, run the whole test suite"
	@echo "make lint   ruff check and format --check"
	@echo "make bench  the performance benchmark, into docs/performance.md (PostgreSQL, Redis)"

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.13 (or 3.12) is needed: pyenv install 3.13"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput -v 0

demo: migrate
	$(BIN)/python manage.py demo

run: demo
	@echo
	@echo "Milepost is at http://127.0.0.1:8000/  (admin: http://127.0.0.1:8000/admin/)"
	@echo "Log in with the demo logins above. Stop with Ctrl-C."
	@# No beat or worker in the embedded default: beat's schedule runs in a loop of its own
	@# (held messages, webhook retries, queued partner events, reminders, the ETA's jobs).
	$(BIN)/python manage.py beat_embedded & trap "kill $$! 2>/dev/null" EXIT INT TERM; \
	  $(BIN)/python manage.py runserver 127.0.0.1:8000

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

worker: install
	$(BIN)/celery -A config worker -l INFO

beat: install
	$(BIN)/celery -A config beat -l INFO

# Re-pin the whole dependency tree after changing pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e ".[dev]"
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt
	rm -rf .lock-venv

# The benchmark (docs/performance.md): needs PostgreSQL and Redis on loopback, wrk and
# Chromium from Debian, and a quiet machine. ARGS="--scale 0.05" for a quick run.
# BENCH_PYTHON measures with another interpreter, in a venv of its own (.venv-bench): by
# default the production image's build when bench/build-python.sh has made it, else the
# project's venv (BENCH_PYTHON= forces the latter).
BENCH_PYTHON ?= $(wildcard /opt/cpython/3.13.5-pgo/bin/python3.13)
BENCH_VENV := $(if $(BENCH_PYTHON),.venv-bench,$(VENV))

bench: $(if $(BENCH_PYTHON),bench-venv,install)
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(BENCH_VENV)/bin/python -m bench.run $(ARGS)

bench-venv:
	@test -x "$(BENCH_PYTHON)" || { echo "BENCH_PYTHON=$(BENCH_PYTHON) is not an interpreter"; exit 1; }
	@if [ "$$(readlink -f .venv-bench/bin/python)" != "$$(readlink -f $(BENCH_PYTHON))" ]; then \
	  rm -rf .venv-bench && $(BENCH_PYTHON) -m venv .venv-bench; fi
	.venv-bench/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"

# The journey page at 1280 px and 360 px, from the browser test, into the docs.
screenshots: install
	$(BIN)/pytest tests/e2e/test_portal.py -q
	mkdir -p docs/screenshots
	cp artifacts/journey-desktop.png artifacts/journey-phone.png docs/screenshots/

clean:
	rm -rf $(VENV) .venv-bench staticfiles .pytest_cache .ruff_cache artifacts
