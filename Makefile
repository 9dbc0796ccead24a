# The two commands a newcomer needs: `make run` and `make test`. Everything else is for contributors.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test protos lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (the first time takes a minute or two; log in $(VENV)/install.log)"
	@( $(PY) -m pip install --disable-pip-version-check --upgrade pip \
	   && $(PY) -m pip install --disable-pip-version-check -e '.[dev,embedded]' ) > $(VENV)/install.log 2>&1 \
	   || { tail -n 40 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

## Start embedded PostgreSQL and Redis (unless METERING_DATABASE_URL / METERING_REDIS_URL are set),
## migrate, and run all four services until Ctrl-C.
run: install
	@$(PY) -m meterlib.devrun

## The whole test suite, against embedded servers unless URLs are given.
test: install
	@$(PY) -m pytest $(PYTEST_ARGS)

## Regenerate the Python code of protos/ into libs/.
protos: install
	@$(PY) scripts/gen_protos.py

## Lint and type-check: ruff, mypy, import contracts, buf.
lint: install
	@$(VENV)/bin/ruff check libs/meterlib services tests bench scripts
	@$(VENV)/bin/ruff format --check libs/meterlib services tests bench scripts
	@$(VENV)/bin/mypy libs/meterlib services
	@$(VENV)/bin/lint-imports
	@cd protos && ../$(VENV)/bin/buf lint

## Benchmarks: `make bench` runs all, `make bench NAME=grpc` those whose name starts with grpc.
bench: install
	@$(PY) -m bench $(if $(NAME),--name $(NAME),)

clean:
	rm -rf $(VENV) .metering bench-results.json
