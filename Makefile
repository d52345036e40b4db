# Every target builds .venv from nothing when it is missing: `make test` on a fresh clone just works.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export AWS_ACCESS_KEY_ID ?= testing
export AWS_SECRET_ACCESS_KEY ?= testing
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_ACCOUNT_ID_ENDPOINT_MODE ?= disabled
export POWERTOOLS_TRACE_DISABLED ?= true
export POWERTOOLS_METRICS_NAMESPACE ?= Aetheris

.PHONY: test lint types unit install bench bench-cost bench-history bench-peers chaos demo clean test-localstack test-e2e tools build browser wheel resources

# SAM CLI and cfn-lint pin their own boto3/pydantic: they live in a venv of their own.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
PY312 := $(firstword $(wildcard /root/.pyenv/versions/3.12*/bin) $(dir $(shell command -v python3.12 2>/dev/null)))

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(TOOLS_STAMP):
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --upgrade pip
	$(TOOLS)/bin/pip install -q "aws-sam-cli>=1.130" "cfn-lint>=1.20"
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# sam build needs the functions' Python (3.12) on PATH; no Docker.
build: $(TOOLS_STAMP)
	PATH="$(PY312):$$PATH" $(TOOLS)/bin/sam build

# The package users install: `pip install "dist/aetheris-<version>-py3-none-any.whl[local]"`.
wheel: $(STAMP)
	$(BIN)/pip wheel --no-deps -q -w dist .

# template.yaml's tables, queues and bucket as the library ships them (a test fails while they differ).
resources: $(STAMP)
	$(BIN)/python -m aetheris_infra.template

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# The UI test drives Debian's Chromium (never `playwright install`); where it cannot be installed,
# that test is skipped and says why.
browser:
	@test -x /usr/bin/chromium || apt-get install -y chromium >/dev/null 2>&1 || \
		echo "chromium could not be installed: tests/functional/test_ui_browser.py will be skipped"

test: lint types tools browser
	$(BIN)/pytest

# The functional suite against a running LocalStack (endpoint from localstack-client /
# LOCALSTACK_HOST); LocalStack itself is not started here: it needs Docker or a host install.
test-localstack: $(STAMP)
	AETHERIS_BACKEND=localstack $(BIN)/pytest tests/functional -m "not chaos"

# Against a deployed stack, with real credentials: make test-e2e AETHERIS_E2E_STACK=aetheris-dev
test-e2e: $(STAMP)
	AETHERIS_E2E_STACK=$(AETHERIS_E2E_STACK) $(BIN)/pytest -m e2e tests/e2e

bench: $(STAMP)
	$(BIN)/python bench/requests_per_step.py

# Cost per million operations, all-in, beside LDF and Step Functions (bench/results/cost.json).
bench-cost: $(STAMP)
	$(BIN)/python bench/cost.py

# Requests, read units, items and CPU per tick at steps 10 ... 10,000 (bench/results/history.json).
bench-history: $(STAMP)
	$(BIN)/python bench/history.py

# The peers (DBOS, the LDF testing runner) live in a venv of their own: never runtime dependencies.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q -e ".[bench]"
	touch $(BENCH_STAMP)

bench-peers: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python bench/peers.py $(PEERS_ARGS)

# The full chaos run (300 jobs, >= 5,000 faults, >= 100 cancels, every crash point); the suite runs a smaller seeded one.
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

demo: $(STAMP)
	$(BIN)/python -m aetheris_infra.demo

clean:
	rm -rf $(VENV) $(TOOLS) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
