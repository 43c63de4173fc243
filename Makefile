# The two commands of the README: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.telex-installed

.PHONY: run test lint typecheck pytest setup system-deps docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "telex needs Python 3.11 or newer, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

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

# Regenerate the reference documents that tests check against the code.
docs: $(STAMP)
	$(BIN)/telex reference metrics > docs/metrics.md
	$(BIN)/telex reference config > docs/configuration.md
	$(BIN)/python deploy/grafana/build_dashboard.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
