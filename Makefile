# The two commands of the README: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.telex-installed
# Every dependency at the version and hash of a lock; `make lock` writes both from pyproject.toml.
LOCK   := requirements/dev.lock
UV_COMPILE := $(BIN)/uv pip compile pyproject.toml requirements/build.in --universal \
	--python-version 3.11 --generate-hashes --custom-compile-command "make lock" --quiet

.PHONY: run test lint typecheck pytest setup system-deps docs clean lock lower-bounds eval

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "telex needs Python 3.11 or newer, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# After changing a dependency in pyproject.toml: the dev lock (what `make` installs), then the
# image's lock (requirements/telex.lock, runtime only) at the same versions.
lock: $(STAMP)
	$(UV_COMPILE) --extra dev -o $(LOCK)
	$(UV_COMPILE) -c $(LOCK) -o requirements/telex.lock

# Do pyproject's lower bounds hold? The lowest allowed version of every direct dependency, in a
# throwaway virtual environment, against the unit tests and the poller's HTTP tests.
lower-bounds: $(STAMP)
	./scripts/check-lower-bounds.sh

run: $(STAMP)
	$(BIN)/telex run

lint: $(STAMP)
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench

typecheck: $(STAMP)
	$(BIN)/mypy services

# Chromium, Prometheus, docker-compose and Apache Kafka (Java 17, Maven, the broker from Maven
# Central, cached in .cache/kafka) are real peers of the tests; install them if missing.
system-deps:
	@./scripts/system-deps.sh

pytest: $(STAMP) system-deps
	$(BIN)/pytest

test: lint typecheck pytest

# Extraction scored on a corpus of real pages (not in the repo: copyrighted), with CPU per
# page against a baseline ref: make eval CORPUS=/path/to/corpus [BASELINE=main]
eval: $(STAMP)
	@test -n "$(CORPUS)" || { echo "usage: make eval CORPUS=/path/to/corpus [BASELINE=ref]"; exit 2; }
	$(BIN)/python bench/extraction_eval.py --corpus "$(CORPUS)" $(if $(BASELINE),--baseline $(BASELINE))

# Regenerate the reference documents that tests check against the code.
docs: $(STAMP)
	$(BIN)/telex reference metrics > docs/metrics.md
	$(BIN)/telex reference config > docs/configuration.md
	$(BIN)/python deploy/grafana/build_dashboard.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
