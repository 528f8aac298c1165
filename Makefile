# Switchyard. `make help` lists the targets.
#
# Every target loops over the workspace modules: `go test ./...` stops at
# module boundaries, so one invocation per module.

SHELL := /bin/bash
MODULES := $(shell go list -f '{{.Dir}}' -m)
SERVICE_MODULES := $(filter %/services/ingress %/services/dispatcher %/services/notifier %/services/auditor %/services/switchyard,$(MODULES))
CONFIG ?= deployments/demo.yaml
BIN := $(CURDIR)/bin
TEST_FLAGS ?= -race -count=1 -timeout 10m
BROWSER_DIR := tests/browser
BENCH_FLAGS ?= -benchtime=3s
BENCH_TABLE_FLAGS ?=

PROTOC_GEN_GO_VERSION := v1.36.12
BUF_VERSION := v1.75.0

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}'

.PHONY: run
run: ## Run all of Switchyard in one process with the demo config (CONFIG=... to change)
	go run ./services/switchyard/cmd/switchyard run --config $(CONFIG)

.PHONY: build
build: ## Build every module, and the binaries into ./bin
	@set -e; for m in $(MODULES); do echo "build $${m#$(CURDIR)/}"; (cd $$m && go build ./...); done
	@mkdir -p $(BIN)
	go build -o $(BIN)/ ./services/switchyard/cmd/switchyard ./services/ingress/cmd/ingress \
		./services/dispatcher/cmd/dispatcher ./services/notifier/cmd/notifier ./services/auditor/cmd/auditor

.PHONY: test
test: browser-deps ## Run every module's tests with -race (needs Postgres, and chromium for the console's browser test; see README)
	@failed=""; for m in $(MODULES); do \
		echo "=== test $${m#$(CURDIR)/}"; \
		(cd $$m && go test $(TEST_FLAGS) ./...) || failed="$$failed $${m#$(CURDIR)/}"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi; echo "all modules passed"

.PHONY: browser-deps
browser-deps: ## Install the console browser test's npm packages (npm ci in tests/browser) if missing
	@if [ ! -f $(BROWSER_DIR)/node_modules/playwright-core/package.json ]; then \
		if command -v npm >/dev/null; then echo "npm ci in $(BROWSER_DIR)"; (cd $(BROWSER_DIR) && npm ci --no-audit --no-fund); \
		else echo "npm is missing: the console's browser test will fail (apt-get install -y chromium nodejs npm)"; fi; \
	fi

.PHONY: bench
bench: ## Run the benchmarks of every module, then print the benchmark table and write bench.json (bench-table)
	@set -e; for m in $(MODULES); do \
		if grep -rqs --include='*_test.go' '^func Benchmark' $$m; then \
			echo "=== bench $${m#$(CURDIR)/}"; (cd $$m && go test -run '^$$' -bench . -benchmem $(BENCH_FLAGS) ./...); \
		fi; \
	done
	@$(MAKE) --no-print-directory bench-table

.PHONY: bench-table
bench-table: ## Print the one benchmark table and write bench.json, about 3 min (BENCH_TABLE_FLAGS=-long: the full run, about 20 min)
	@mkdir -p $(BIN)
	go build -o $(BIN)/ ./services/switchyard/cmd/switchyard
	go run ./tests/benchtable -switchyard $(BIN)/switchyard -out bench.json $(BENCH_TABLE_FLAGS)

.PHONY: chaos
chaos: ## Run the long failure-injection tests in tests/ (build tag chaos): chaos, cluster, the fault matrix (table + chaos.json)
	cd tests && go test -tags chaos -run 'Chaos|Cluster|FaultMatrix' -v -count=1 -timeout 90m ./...

.PHONY: lint
lint: ## gofmt, go vet, and a GOWORK=off build of each service module
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do echo "vet $${m#$(CURDIR)/}"; (cd $$m && go vet -tags chaos,explain ./...); done
	@set -e; for m in $(SERVICE_MODULES); do echo "GOWORK=off build $${m#$(CURDIR)/}"; (cd $$m && GOWORK=off go build ./...); done

.PHONY: generate
generate: $(BIN)/buf $(BIN)/protoc-gen-go ## Regenerate the protobuf Go code from proto/*.proto
	cd proto && PATH=$(BIN):$$PATH buf lint && PATH=$(BIN):$$PATH buf generate
	cd proto && go test ./...

.PHONY: promtool
promtool: $(BIN)/promtool ## Put promtool into ./bin (from Debian's prometheus package; no server installed or started)

# The alert rules' tests need promtool. It comes out of Debian's prometheus
# package unpacked, not installed: installing it would start a Prometheus
# server.
$(BIN)/promtool:
	@mkdir -p $(BIN)
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cd "$$tmp"; \
		apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; \
		dpkg -x prometheus_*.deb root; cp root/usr/bin/promtool $(BIN)/promtool
	$(BIN)/promtool --version

$(BIN)/buf:
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

.PHONY: tidy
tidy: ## go mod tidy every module (GOWORK=off, so each builds alone), then sync the workspace
	@set -e; for m in $(MODULES); do echo "tidy $${m#$(CURDIR)/}"; (cd $$m && GOWORK=off go mod tidy); done
	go work sync

.PHONY: clean
clean: ## Remove ./bin, the demo's ./data and bench.json
	rm -rf $(BIN) data bench.json
