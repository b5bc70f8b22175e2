# Étoile. `./build.sh` then `make test` is the whole Quick start.
SHELL    := /bin/bash
GO       ?= go
OUT      ?= out
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH

MODULE := github.com/etoile-os/etoile
# -trimpath and fixed ldflags make both binaries reproducible.
ETOILE_LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.commitTime=$(SOURCE_DATE_EPOCH)
AGENT_LDFLAGS  := -s -w -X $(MODULE)/agent.Version=$(VERSION) -X $(MODULE)/agent.Commit=$(COMMIT)
GOBUILD := $(GO) build -trimpath -buildvcs=false
# `make image` builds without K3s, loudly, where the K3s release cannot be
# reached; `bin/etoile build` alone fails instead. BUILD_FLAGS= to be strict.
BUILD_FLAGS ?= --k3s-optional

.PHONY: all build image image-standin test test-unit test-qa test-deps bench lint clean k3s-standin gpu-tests gpu-check

all: build

build:
	@mkdir -p bin
	$(GOBUILD) -ldflags '$(ETOILE_LDFLAGS)' -o bin/etoile ./cmd/etoile
	CGO_ENABLED=0 $(GOBUILD) -ldflags '$(AGENT_LDFLAGS)' -o bin/etoile-agent ./cmd/etoile-agent

image: build
	bin/etoile build -o $(OUT) $(BUILD_FLAGS)

# The same image with the K3s stand-in (a test double) in place of K3s, for
# the K3s scenarios: kept apart from out/'s real image.
image-standin: build k3s-standin
	ETOILE_K3S_DIR=$(OUT)/k3s-standin bin/etoile build -o $(OUT)/standin

test-deps:
	@bash -c '. scripts/deps.sh && ensure_packages "$${BUILD_PACKAGES[@]}" "$${TEST_PACKAGES[@]}" && ensure_apt_lists && ensure_go && ensure_chronyd'

# Every test: unit and integration tests, then the QEMU boots of the built
# media (build tag qa). A missing tool fails its test; nothing is skipped.
test: test-deps image image-standin test-unit test-qa

test-unit:
	$(GO) test -count=1 -timeout 30m ./...

QA_ENV = ETOILE_QA_BUILD_FLAGS='$(BUILD_FLAGS)' ETOILE_OUT=$(CURDIR)/$(OUT) ETOILE_OUT_STANDIN=$(CURDIR)/$(OUT)/standin ETOILE_BIN=$(CURDIR)/bin ETOILE_QA_ETOILE_LDFLAGS='$(ETOILE_LDFLAGS)' ETOILE_QA_AGENT_LDFLAGS='$(AGENT_LDFLAGS)'

# The QEMU tests' overall limit grows with ETOILE_QA_TIMEOUT_SCALE, as their waits do.
# make's own variable, so that `make test ETOILE_QA_TIMEOUT_SCALE=3` counts too
# (GNU make 4.3 does not pass command-line variables into $(shell)).
QA_TIMEOUT = $(shell awk -v s='$(ETOILE_QA_TIMEOUT_SCALE)' 'BEGIN { s += 0; if (s < 1) s = 1; printf "%dm", 60 * s }')

test-qa:
	$(QA_ENV) $(GO) test -count=1 -tags qa -timeout $(QA_TIMEOUT) -v ./qa/ 2>&1 | tee $(OUT)/qa-test.log | awk -f scripts/qa-log-filter.awk; exit $${PIPESTATUS[0]}

# Benchmarks print their figures and write docs/benchmarks.md; they assert
# no times.
bench: test-deps image image-standin
	$(QA_ENV) $(GO) test -count=1 -tags qa -run '^$$' -bench . -benchtime 2x -timeout 60m ./qa/
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 20m ./image/media/ ./constellation/hubcli/
	@echo "Figures written to docs/benchmarks.md"

# A release-shaped folder holding the K3s stand-in (a test double, never
# shipped): ETOILE_K3S_DIR=out/k3s-standin ./build.sh exercises the release path.
k3s-standin:
	$(GO) run ./qa/k3sstandin/mkrelease -out $(OUT)/k3s-standin

# On a machine with NVIDIA GPUs and their driver loaded, as root: the inventory
# and the NVIDIA device files checked against the live driver (not part of
# `make test`: its machines have no GPU).
gpu-tests: build
	@mkdir -p bin/gpu
	CGO_ENABLED=0 $(GO) test -c -tags gpu -o bin/gpu/inventory.test ./agent/inventory
	CGO_ENABLED=0 $(GO) test -c -tags gpu -o bin/gpu/nvdev.test ./agent/nvdev
	CGO_ENABLED=0 $(GO) test -c -tags gpu -o bin/gpu/k3s.test ./agent/k3s

gpu-check: gpu-tests
	scripts/gpu-check.sh $(OUT)/gpu-check

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags qa ./qa/
	$(GO) vet -tags gpu ./agent/inventory/ ./agent/nvdev/ ./agent/k3s/
	$(GO) vet -tags guest ./agent/network/
	@if command -v staticcheck >/dev/null; then staticcheck ./...; else echo "staticcheck not installed: skipped (go install honnef.co/go/tools/cmd/staticcheck@latest)"; fi

clean:
	rm -rf bin $(OUT)
