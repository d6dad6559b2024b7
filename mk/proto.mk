##@ Protobuf and generated code
#
# Included by the root Makefile (bash, -eu -o pipefail). Everything runs
# offline once the caches are warm: buf and the protoc plugins are built from
# the versions pinned in tools/go.mod (a tool module outside go.work), and the
# googleapis protos come from the npm package google-proto-files.

PROTO_ROOT       := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
PROTO_DIR        := $(PROTO_ROOT)/proto
GEN_DIR          := $(PROTO_ROOT)/gen
# Hand-written files inside gen/ that `make generate` keeps.
GEN_KEEP         := go.mod go.sum openapi/openapi.go

PROTO_TOOLS_DIR  := $(PROTO_ROOT)/tools
PROTO_TOOLS_BIN  := $(PROTO_ROOT)/.cache/tools/bin
BUF              := $(PROTO_TOOLS_BIN)/buf
PROTO_TOOLS      := $(BUF) $(addprefix $(PROTO_TOOLS_BIN)/,protoc-gen-go protoc-gen-go-grpc protoc-gen-grpc-gateway protoc-gen-openapiv2)

GOOGLE_PROTO_FILES_VERSION := 6.0.1
GOOGLE_PROTO_FILES_SHA256  := 711763f77ea15bbc7436aac53db013b421d2c7b86ae27f4013723970ce54a96e
# The only googleapis files our protos import, directly or not.
GOOGLE_PROTO_FILES := google/api/annotations.proto google/api/http.proto google/api/field_behavior.proto
PROTO_DEPS_DIR   := $(PROTO_ROOT)/.cache/proto-deps
PROTO_DEPS_STAMP := $(PROTO_DEPS_DIR)/.google-proto-files-$(GOOGLE_PROTO_FILES_VERSION)

# Branch that proto-breaking compares with.
PROTO_BREAKING_AGAINST ?= main

# `go build -v` output turned into a progress count when the root Makefile
# provides PROGRESS; otherwise only compiler errors pass.
PROTO_PROGRESS = $(if $(PROGRESS),$(PROGRESS),awk '/ |^\#/')

.PHONY: proto-tools
proto-tools: $(PROTO_TOOLS) ## Build buf and the protoc plugins pinned in tools/go.mod (cold ~2-5 min, then instant)

# One go build for all tools, so they share the compile; rerun only when the
# pins change. touch, because go build leaves an up-to-date binary untouched.
$(PROTO_TOOLS) &: $(PROTO_TOOLS_DIR)/go.mod $(PROTO_TOOLS_DIR)/go.sum
	@echo "proto: building buf and the protoc plugins from tools/go.mod (first time takes ~2-5 min on 2 cores)…"
	@mkdir -p $(PROTO_TOOLS_BIN)
	cd $(PROTO_TOOLS_DIR) && GOWORK=off go build -v -o $(PROTO_TOOLS_BIN)/ tool 2>&1 | $(PROTO_PROGRESS)
	@touch $(PROTO_TOOLS)

.PHONY: proto-deps
proto-deps: $(PROTO_DEPS_STAMP) ## Unpack the googleapis protos (npm google-proto-files) into .cache/proto-deps

$(PROTO_DEPS_STAMP):
	@echo "proto: unpacking $(GOOGLE_PROTO_FILES) from npm google-proto-files@$(GOOGLE_PROTO_FILES_VERSION)…"
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	npm pack --silent --pack-destination "$$tmp" google-proto-files@$(GOOGLE_PROTO_FILES_VERSION) >/dev/null; \
	tgz=$$tmp/google-proto-files-$(GOOGLE_PROTO_FILES_VERSION).tgz; \
	if ! echo "$(GOOGLE_PROTO_FILES_SHA256)  $$tgz" | sha256sum --check --status; then \
		echo "proto: google-proto-files-$(GOOGLE_PROTO_FILES_VERSION).tgz does not match GOOGLE_PROTO_FILES_SHA256 in mk/proto.mk" >&2; exit 1; \
	fi; \
	rm -rf $(PROTO_DEPS_DIR); mkdir -p $(PROTO_DEPS_DIR); \
	tar -xzf "$$tgz" -C $(PROTO_DEPS_DIR) --strip-components=1 $(addprefix package/,$(GOOGLE_PROTO_FILES))
	@touch $@

.PHONY: generate
generate: $(PROTO_TOOLS) $(PROTO_DEPS_STAMP) ## Regenerate gen/ from proto/ with buf, deleting the old output first
	@echo "proto: deleting old output in gen/ (keeping $(GEN_KEEP))"
	cd $(GEN_DIR) && find . -type f $(foreach f,$(GEN_KEEP),! -path ./$(f)) -delete && find . -mindepth 1 -type d -empty -delete
	@echo "proto: buf generate"
	cd $(PROTO_ROOT) && $(BUF) generate

.PHONY: proto-lint
proto-lint: $(PROTO_TOOLS) $(PROTO_DEPS_STAMP) ## Lint proto/ with buf (STANDARD rules, see buf.yaml)
	cd $(PROTO_ROOT) && $(BUF) lint

# buf cannot compare with `.git#branch=main` directly: the googleapis module is
# git-ignored, so main's protos would not compile. Compare with a copy of
# main's tree that gets the same googleapis files.
.PHONY: proto-breaking
proto-breaking: $(PROTO_TOOLS) $(PROTO_DEPS_STAMP) ## Fail on wire- or source-breaking proto changes since branch main (FILE rules)
	@cd $(PROTO_ROOT); \
	ref=$(PROTO_BREAKING_AGAINST); \
	if ! git rev-parse --verify --quiet "$$ref^{commit}" >/dev/null; then \
		echo "proto-breaking: skipped, branch $$ref has no commits yet"; exit 0; \
	fi; \
	if [ -z "$$(git ls-tree -r --name-only "$$ref" -- $(PROTO_DIR) | grep '\.proto$$' || true)" ]; then \
		echo "proto-breaking: skipped, branch $$ref has no .proto files under $(PROTO_DIR:$(PROTO_ROOT)/%=%)/ yet"; exit 0; \
	fi; \
	against=$$(mktemp -d); trap 'rm -rf "$$against"' EXIT; \
	git archive "$$ref" | tar -x -C "$$against"; \
	[ -f "$$against/buf.yaml" ] || cp buf.yaml "$$against/"; \
	mkdir -p "$$against/.cache" && cp -R $(PROTO_DEPS_DIR) "$$against/.cache/"; \
	echo "proto-breaking: comparing proto/ with branch $$ref ($$(git rev-parse --short "$$ref"))"; \
	if ! $(BUF) breaking --against "$$against"; then \
		echo "proto-breaking: the changes above break clients built from branch $$ref: add new fields, messages or versions (v2) instead of changing or removing old ones" >&2; \
		exit 1; \
	fi; \
	echo "proto-breaking: no breaking change"

.PHONY: check-generated
check-generated: generate ## Fail when gen/ differs from what `make generate` writes (run in CI)
	@cd $(PROTO_ROOT); \
	changed=$$(git diff --no-renames --name-status -- $(GEN_DIR)); \
	untracked=$$(git ls-files --others --exclude-standard -- $(GEN_DIR)); \
	if [ -n "$$changed$$untracked" ]; then \
		echo "check-generated: gen/ is not what 'make generate' writes from proto/:" >&2; \
		[ -z "$$changed" ] || echo "$$changed" | sed 's/^/  /' >&2; \
		[ -z "$$untracked" ] || echo "$$untracked" | sed 's/^/  ?\t/' >&2; \
		echo "check-generated: run 'make generate' and commit gen/ together with the proto change." >&2; \
		exit 1; \
	fi; \
	echo "check-generated: gen/ matches proto/"
