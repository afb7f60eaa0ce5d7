# One entry point for what developers and CI run. `make help` lists the targets.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= /var/cache/flick/target
export FLICK_TOOLS_DIR ?= /var/cache/flick/tools
export FLICK_SERVICES_DIR ?= /var/cache/flick/services
FLICK_BIN ?= $(CARGO_TARGET_DIR)/debug/flick
export FLICK_BIN

.PHONY: help dev stack test services services-down build lint fmt supergraph supergraph-check check-deploy bench chaos

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

dev: ## build flick, install Traefik + hive-router on first run, serve the platform at http://127.0.0.1:8080
	scripts/dev.sh

stack: ## production topology here: a process per service, replicas, real services, mesh, Prometheus (scripts/stack.sh)
	scripts/stack.sh

chaos: ## load and fault suite on the stack (release build, ~15 min): goose load, kills, outages, a table of figures (scripts/chaos.sh)
	scripts/chaos.sh

test: services ## start the real test services if needed, then run every test
	scripts/tools.sh ffmpeg
	cargo build -p flick --bin flick
	scripts/e2e.sh
	cargo nextest run --workspace --no-fail-fast

services: ## start PostgreSQL+pgvector (5433), SeaweedFS S3 (9000), Redis, RabbitMQ when absent
	scripts/services.sh up

services-down: ## stop the services started by `make services`
	scripts/services.sh down

build: ## build every crate
	cargo build --workspace --all-targets

lint: ## formatting and clippy, as CI runs them
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	cargo fmt --all

supergraph: ## compose supergraph/supergraph.graphql from the subgraphs' SDL
	cargo build -p flick --bin flick
	scripts/supergraph.sh

supergraph-check: ## fail if the checked-in supergraph is stale or does not compose
	cargo build -p flick --bin flick
	scripts/supergraph.sh --check

check-deploy: ## validate Compose, Helm chart, Istio policies, Prometheus rules, Grafana dashboards
	scripts/check-deploy.sh

bench: ## load figures of the quality bars (release build, wrk on loopback)
	scripts/bench.sh
