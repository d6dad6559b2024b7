# storeprov — the single entry point. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ROOT        := $(abspath .)
CACHE       := $(ROOT)/.cache
SANDBOX_DIR := $(CACHE)/sandbox
SANDBOX_BIN := $(SANDBOX_DIR)/bin
KUBECONFIG_SANDBOX := $(SANDBOX_DIR)/kubeconfig

KUBE_VERSION := v1.37.2
# Version stamps that `kube-apiserver --version` reports; kwokctl reads them
# to choose flags, so the binaries must not call themselves v0.0.0.
KUBE_LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/client-go/pkg/version.gitMajor=1 \
	-X k8s.io/client-go/pkg/version.gitMinor=37
KWOK_LDFLAGS := -s -w -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$(KUBE_VERSION:v%=%)
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=v3.22.0

DASHBOARD := services/gateway/dashboard

# Go modules of the workspace (go.work); each must build alone too.
MODULES := $(shell go work edit -json | sed -n 's/.*"DiskPath": "\.\/\(.*\)".*/\1/p')

# Turns `go build -v` package lines into a progress count; other lines
# (compiler errors) pass through.
PROGRESS := awk '/ |^\#/ {print; fflush(); next} {n++; if (n % 200 == 0) {printf "  … %d packages compiled\n", n; fflush()}}'

-include mk/*.mk

.PHONY: help
help: ## List the targets, by section, in the order the makefiles give them
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5); next} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Sandbox cluster

SANDBOX_TOOLS := $(SANDBOX_BIN)/.kube $(SANDBOX_BIN)/.etcd $(SANDBOX_BIN)/.kwok $(SANDBOX_BIN)/.helm $(SANDBOX_BIN)/sandbox

.PHONY: sandbox-bin
sandbox-bin: $(SANDBOX_TOOLS) ## Build the sandbox's binaries from pinned Go modules (cold ~10 min, then instant)

$(SANDBOX_BIN)/.kube: deploy/sandbox/tools/kube/go.mod deploy/sandbox/tools/kube/go.sum
	@echo "sandbox: building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $(KUBE_VERSION) (cold: ~8 min on 2 cores)"
	@mkdir -p $(SANDBOX_BIN)
	cd deploy/sandbox/tools/kube && GOWORK=off go build -v -ldflags '$(KUBE_LDFLAGS)' -o $(SANDBOX_BIN)/ \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl 2>&1 | $(PROGRESS)
	@touch $@

$(SANDBOX_BIN)/.etcd: deploy/sandbox/tools/etcd/go.mod deploy/sandbox/tools/etcd/go.sum deploy/sandbox/tools/etcd/main.go
	@echo "sandbox: building etcd"
	@mkdir -p $(SANDBOX_BIN)
	cd deploy/sandbox/tools/etcd && GOWORK=off go build -v -ldflags '-s -w' -o $(SANDBOX_BIN)/etcd . 2>&1 | $(PROGRESS)
	@touch $@

$(SANDBOX_BIN)/.kwok: deploy/sandbox/tools/kwok/go.mod deploy/sandbox/tools/kwok/go.sum
	@echo "sandbox: building kwok, kwokctl"
	@mkdir -p $(SANDBOX_BIN)
	cd deploy/sandbox/tools/kwok && GOWORK=off go build -v -ldflags '$(KWOK_LDFLAGS)' -o $(SANDBOX_BIN)/ \
		sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl 2>&1 | $(PROGRESS)
	@touch $@

$(SANDBOX_BIN)/.helm: deploy/sandbox/tools/helm/go.mod deploy/sandbox/tools/helm/go.sum
	@echo "sandbox: building helm CLI"
	@mkdir -p $(SANDBOX_BIN)
	cd deploy/sandbox/tools/helm && GOWORK=off go build -v -ldflags '$(HELM_LDFLAGS)' -o $(SANDBOX_BIN)/helm helm.sh/helm/v3/cmd/helm 2>&1 | $(PROGRESS)
	@touch $@

$(SANDBOX_BIN)/sandbox: $(shell find deploy/sandbox/cmd deploy/sandbox/internal -name '*.go') deploy/sandbox/go.mod deploy/sandbox/go.sum
	@mkdir -p $(SANDBOX_BIN)
	go build -o $@ ./deploy/sandbox/cmd/sandbox

.PHONY: sandbox-up
sandbox-up: sandbox-bin ## Start the sandbox cluster (or reuse the running one); kubeconfig in .cache/sandbox/kubeconfig
	$(SANDBOX_BIN)/sandbox up --dir $(SANDBOX_DIR)

.PHONY: sandbox-down
sandbox-down: ## Remove the sandbox cluster and its state (safe when none runs)
	@if [ -x $(SANDBOX_BIN)/sandbox ]; then $(SANDBOX_BIN)/sandbox down --dir $(SANDBOX_DIR); else echo "sandbox: nothing to remove"; fi

##@ Run

DEV_FLAGS ?=

.PHONY: dev
dev: sandbox-up ## Run the whole platform on embedded defaults (sandbox, embedded NATS, SQLite); Ctrl-C stops it
	go run ./deploy/devstack/cmd/devstack --root $(ROOT) --data-dir $(CACHE)/dev --bin-dir $(CACHE)/bin \
		--kubeconfig $(KUBECONFIG_SANDBOX) $(DEV_FLAGS)

##@ Build and test

.PHONY: build
build: ## Build every module in the workspace and alone
	go build $(addprefix ./,$(addsuffix /...,$(MODULES)))
	@for m in $(MODULES); do echo "build alone: $$m"; (cd $$m && GOWORK=off go build ./...); done

.PHONY: vet
vet: ## go vet every module
	go vet $(addprefix ./,$(addsuffix /...,$(MODULES)))

# The dashboard's browser test (deploy/e2e TestDashboardInBrowser) drives
# Debian's Chromium at this path.
CHROMIUM  := /usr/bin/chromium

.PHONY: test
test: sandbox-up dashboard-test $(CHROMIUM) ## Run every test: unit, integration (SQLite, embedded NATS, sandbox cluster; PostgreSQL/NATS when their URLs are set), end to end
	STOREPROV_SANDBOX_DIR=$(SANDBOX_DIR) go test -count=1 -timeout 30m $(addprefix ./,$(addsuffix /...,$(MODULES)))

# Installed as .ci/run does when missing and we may (root with apt-get);
# otherwise test stops early and says how.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "test: installing chromium from Debian (the dashboard's browser test drives it)"; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "test: $(CHROMIUM) is missing; the dashboard's browser test drives it: sudo apt-get install -y chromium" >&2; \
		exit 1; \
	fi

$(DASHBOARD)/node_modules/.package-lock.json: $(DASHBOARD)/package-lock.json
	cd $(DASHBOARD) && npm ci --no-audit --no-fund

.PHONY: dashboard-test
dashboard-test: $(DASHBOARD)/node_modules/.package-lock.json ## Dashboard unit tests (Vitest), generated client and built assets current
	cd $(DASHBOARD) && npm test && npm run check-dist

.PHONY: test-medusa
test-medusa: ## Build helm/medusa-image on this machine's Node, run the chart's Jobs (migrate, admin user, seed twice), serve, place an order (npm install and build cached in .cache/medusa)
	cd helm && STOREPROV_TEST_MEDUSA=1 STOREPROV_TEST_MEDUSA_CACHE=$(CACHE)/medusa GOWORK=off \
		go test -count=1 -timeout 60m -run '^TestMedusaImageSellsAnOrder$$' -v .

.PHONY: faults
faults: sandbox-up ## Run the fault suite in full (kills, restarts, outages, API faults; 10 stores each) and write docs/faults.md
	STOREPROV_FAULTS=full STOREPROV_SANDBOX_DIR=$(SANDBOX_DIR) go test -count=1 -timeout 150m -run '^TestFaults$$' -v ./deploy/e2e

.PHONY: bench
bench: sandbox-up ## Measure the platform beside helm and kubectl on the sandbox (~15 min) and write docs/benchmarks.md
	go run ./deploy/bench/cmd/bench --root $(ROOT) --sandbox-dir $(SANDBOX_DIR) --form full --write docs

##@ Lint

GOLANGCI_LINT_DIR := $(ROOT)/tools/golangci-lint
GOLANGCI_LINT     := $(CACHE)/tools/bin/golangci-lint
SHELLCHECK        := /usr/bin/shellcheck
# The charts' script files and CI's; the scripts inside the charts'
# templates are checked by helm's TestShellScriptsPassShellcheck.
SHELL_SCRIPTS     := $(wildcard helm/*/files/*.sh) .ci/run

.PHONY: lint
lint: lint-go lint-proto lint-shell lint-dashboard ## Every linter: Go (gofmt, go vet, golangci-lint), proto (buf), shell (shellcheck), dashboard (tsc, eslint); fails on any finding
	@echo "lint: no finding"

.PHONY: lint-go
lint-go: vet $(GOLANGCI_LINT) ## gofmt, go vet and golangci-lint (.golangci.yml) on every module
	@out=$$(gofmt -l $(MODULES)); \
	if [ -n "$$out" ]; then echo "lint: not formatted by gofmt (run gofmt -w on them):" >&2; echo "$$out" | sed 's/^/  /' >&2; exit 1; fi
	@if ! $(GOLANGCI_LINT) run $(addprefix ./,$(addsuffix /...,$(MODULES))); then \
		echo "lint: golangci-lint found the problems above: fix them (a finding that is wrong gets //nolint:<linter> // <why> on its line)" >&2; exit 1; \
	fi

# Built from the version pinned in tools/golangci-lint/go.mod (a tool module
# outside go.work, apart from tools/go.mod's buf).
$(GOLANGCI_LINT): $(GOLANGCI_LINT_DIR)/go.mod $(GOLANGCI_LINT_DIR)/go.sum
	@echo "lint: building golangci-lint from tools/golangci-lint/go.mod (first time takes ~5 min on 2 cores)"
	@mkdir -p $(dir $@)
	cd $(GOLANGCI_LINT_DIR) && GOWORK=off go build -v -o $(dir $@) tool 2>&1 | $(PROGRESS)
	@touch $@

.PHONY: lint-proto
lint-proto: $(PROTO_TOOLS) $(PROTO_DEPS_STAMP) ## buf lint and buf format on proto/
	@if ! $(BUF) lint; then echo "lint: buf lint found the problems above in proto/: fix them (rules in buf.yaml)" >&2; exit 1; fi
	@if ! $(BUF) format proto -d --exit-code; then echo "lint: proto/ is not formatted as buf formats it: run '$(BUF:$(ROOT)/%=%) format proto -w'" >&2; exit 1; fi

.PHONY: lint-shell
lint-shell: $(SHELLCHECK) ## shellcheck on the charts' scripts, files and templates, and on .ci/run
	@if ! shellcheck --format=gcc $(SHELL_SCRIPTS); then echo "lint: shellcheck found the problems above: fix the scripts" >&2; exit 1; fi
	@if ! out=$$(cd helm && CI=true go test -count=1 -run '^TestShellScriptsPassShellcheck$$' . 2>&1); then \
		echo "$$out" >&2; echo "lint: shellcheck found the problems above in a script of the charts' templates: fix the template" >&2; exit 1; \
	fi

# Installed as .ci/run does when missing and we may (root with apt-get);
# otherwise lint stops early and says how.
$(SHELLCHECK):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "lint: installing shellcheck from Debian"; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; \
	else \
		echo "lint: $(SHELLCHECK) is missing: sudo apt-get install -y shellcheck" >&2; \
		exit 1; \
	fi

.PHONY: lint-dashboard
lint-dashboard: $(DASHBOARD)/node_modules/.package-lock.json ## The dashboard's type check (tsc) and linter (eslint, eslint.config.js)
	@if ! (cd $(DASHBOARD) && npm run --silent typecheck); then echo "lint: tsc found the type errors above in the dashboard: fix them" >&2; exit 1; fi
	@if ! (cd $(DASHBOARD) && npm run --silent lint); then echo "lint: eslint found the problems above in the dashboard: fix them (npx eslint --fix fixes some)" >&2; exit 1; fi
