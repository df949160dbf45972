# One place for the commands people and CI run. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PATH := $(HOME)/.local/bin:$(PATH)
UV ?= uv
PROTO_SRC := protos/model_runner/v1/runner.proto
PROTO_OUT := model_runner/v1

.PHONY: help uv setup setup-all torch proto proto-check lint typecheck test test-fast test-postgres run migrate bench-runner bench-gateway bench-turn bench-history clean frontend frontend-types frontend-types-check frontend-check chromium test-e2e screenshots

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

uv: ## install uv if it is missing
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --user --quiet "uv>=0.5,<1" \
		|| python3 -m pip install --user --quiet --break-system-packages "uv>=0.5,<1"

# `make run` needs only the transformers extra; the tests also exercise the llama.cpp backend,
# whose package compiles from source (minutes, once per machine: uv caches the built wheel).
SETUP_EXTRAS ?= --extra transformers

setup: uv ## create .venv from uv.lock (dev tools, the transformers extra) and add the torch build that fits
	@# --inexact: keep torch, which is not in the lock (see scripts/install_torch.sh).
	$(UV) sync --locked $(SETUP_EXTRAS) --inexact
	./scripts/install_torch.sh

setup-all: ## like setup, with every extra (llama.cpp included), as the tests need
	$(MAKE) setup SETUP_EXTRAS=--all-extras

bench-history: ## history benchmark: list/open/search p50/p99 with 10,000 chats x 100 messages (docs/benchmarks.md)
	$(UV) run python -m bench.history --chats $${CHATS:-10000} --messages $${MESSAGES:-100}

bench-runner: ## runner benchmark: TTFT and tokens/s at 1, 4, 16 chats vs the bare engine (docs/benchmarks.md); ARGS=...
	$(UV) run python -m bench.runner $(ARGS)

bench-gateway: ## gateway benchmark: WS/SSE//v1 streams through the backend vs the runner direct (docs/benchmarks.md); ARGS=--quick
	$(UV) run python -m bench.gateway $(ARGS)

bench-turn: ## turn CPU benchmark: CPU-ms per persisted chat turn in process vs bare SQL (docs/benchmarks.md); ARGS=--turns 100
	$(UV) run python -m bench.turn_cpu $(ARGS)

torch: ## install torch into .venv if missing (local CPU wheel, else CPU/CUDA picked by uv); TORCH_BACKEND=cu128 forces a GPU build
	./scripts/install_torch.sh

proto: ## regenerate the Python code and type stubs from protos/
	$(UV) run python -m grpc_tools.protoc -Iprotos --python_out=. --mypy_out=. \
		--grpc_python_out=. --mypy_grpc_out=. $(PROTO_SRC)

proto-check: proto ## fail if the committed generated code differs from a fresh generation
	@git diff --exit-code -- $(PROTO_OUT) || (echo "generated code is stale: run 'make proto' and commit" >&2; exit 1)

lint: ## ruff lint + format check
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: ## mypy strict
	$(UV) run mypy

test: setup-all frontend chromium ## set up, then run the whole test suite (UI unit tests, then pytest incl. e2e)
	cd frontend && npm test
	$(UV) run pytest -q

test-fast: ## unit tests only
	$(UV) run pytest -q tests/unit

# The backend's tests again on PostgreSQL: each data directory gets a fresh database copied
# from one migrated per run, all dropped at the end (tests/support/databases.py). Not the
# runner or browser tests: they never touch the database. Unreachable PostgreSQL skips the
# tests, or fails them under CI=true.
TEST_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
test-postgres: ## the backend unit and integration tests on PostgreSQL (TEST_POSTGRES_URL)
	WEBUI_TEST_DATABASE_URL=$(TEST_POSTGRES_URL) $(UV) run pytest -q tests/unit/backend tests/integration/backend

migrate: ## apply database migrations (WEBUI_DATA_DIR / WEBUI_DATABASE_URL)
	$(UV) run webui-backend migrate

run: setup frontend ## set up and start the runner, the backend and the UI on http://127.0.0.1:8080
	$(UV) run honcho start -f Procfile

# --- web UI (frontend/): Node 20+ and npm --------------------------------------------------
FRONTEND_STAMP := frontend/node_modules/.npm-ci.stamp
FRONTEND_SOURCES := $(shell find frontend/src frontend/index.html frontend/vite.config.ts -type f 2>/dev/null)
FRONTEND_TYPES := frontend/src/lib/api/openapi.json frontend/src/lib/api/events.schema.json frontend/src/lib/api/schema.d.ts

$(FRONTEND_STAMP): frontend/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js 20+ to build the UI" >&2; exit 1; }
	@# Not `npm ci`: npm 11 leaves other platforms' optional packages (rollup's native builds)
	@# out of the lock when the registry it uses does not list them, and `npm ci` then refuses
	@# the lock as out of sync. `npm install` installs exactly the locked versions just as well.
	cd frontend && npm install --no-audit --no-fund
	@touch $@

frontend/dist/index.html: $(FRONTEND_STAMP) $(FRONTEND_SOURCES)
	cd frontend && npm run build

frontend: frontend/dist/index.html ## install the UI's packages (npm install from the lock) and build it into frontend/dist

frontend-types: setup $(FRONTEND_STAMP) ## regenerate the UI's API types from the backend (OpenAPI + WS event schemas)
	$(UV) run python frontend/scripts/dump_schemas.py
	cd frontend && npm run gen:api

frontend-types-check: frontend-types ## fail if the committed UI API types differ from a fresh generation
	@git diff --exit-code -- $(FRONTEND_TYPES) || (echo "UI API types are stale: run 'make frontend-types' and commit" >&2; exit 1)

frontend-check: $(FRONTEND_STAMP) ## UI type check (svelte-check) and unit tests (vitest)
	cd frontend && npm run check && npm test && npm run build && npm run size

chromium: ## install Debian's chromium for the browser tests when missing (needs root)
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	elif [ "$$CI" = true ]; then \
		echo "chromium is missing and cannot be installed without root" >&2; exit 1; \
	else \
		echo "chromium is missing and this is not root: the browser tests will be skipped" >&2; \
	fi

test-e2e: setup frontend chromium ## the browser tests only (Playwright + chromium, real backend and runner)
	$(UV) run pytest -q tests/e2e

screenshots: setup frontend chromium ## refresh docs/screenshots/ from the browser tests
	E2E_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(UV) run pytest -q tests/e2e
