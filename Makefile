# mailprefs: `make run` to try it, `make test` to test it. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
PORT ?= 5000
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install run test test-sqlite test-browser bench lint format pg dovecot clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# One process on SQLite: web, scheduler and worker; mail captured under instance/mail.
run: install
	MAILPREFS_ENV=development $(FLASK) mailprefs migrate
	MAILPREFS_ENV=development $(FLASK) mailprefs seed-demo
	MAILPREFS_ENV=development $(FLASK) mailprefs serve --host 127.0.0.1 --port $(PORT)

# The whole suite, on SQLite and (where reachable) PostgreSQL; see docs/testing.md.
test: install
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

test-sqlite: install
	MAILPREFS_TEST_POSTGRES_URL=off $(BIN)/pytest -n 2 $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check mailprefs tests bench
	$(BIN)/lint-imports --no-cache  # the layer contract in setup.cfg

format: install
	$(BIN)/ruff format mailprefs tests bench
	$(BIN)/ruff check --fix .

# Start this machine's PostgreSQL and create the role and database the tests look for.
pg:
	.ci/postgres

# A private Dovecot (IMAPS, self-signed, one user) to try `mailprefs fetch-bounces` by
# hand; prints the MAILPREFS_BOUNCE_IMAP_* settings to use. The tests start their own.
dovecot: install
	$(BIN)/python -m tests.support.dovecot

clean:
	rm -rf $(VENV) instance .pytest_cache test-artifacts
