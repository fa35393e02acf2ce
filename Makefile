# garrison: build, run, test, benchmark.
GO ?= go
BIN := bin
GOTEST_FLAGS ?= -count=1 -timeout 30m
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run test test-deps bench vet deps fmt clean

build:
	# Static: the warm runner pool runs this binary in its image FROM scratch.
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/garrison ./cmd/garrison
	CGO_ENABLED=0 $(GO) build -o $(BIN)/echo ./examples/echo

# Starts garrison up and the example echo service, which registers itself;
# the registry is then at http://127.0.0.1:8080/api/v1/services.
run: build
	./scripts/run.sh

# Installs what the tests need when it is missing (apt packages, the Docker
# daemon), then runs the whole suite: the main module and the registrar
# module (registrar/go.mod), which ./... at the root does not reach.
# GARRISON_TEST_DEBOOTSTRAP: `make test` (and so CI) also builds and runs a
# debootstrap base image (images/debootstrap.sh, minutes); a bare
# `go test ./...` leaves that one test out.
test: test-deps vet
	GARRISON_TEST_DEBOOTSTRAP=1 $(GO) test $(GOTEST_FLAGS) ./...
	cd registrar && $(GO) test $(GOTEST_FLAGS) ./...

test-deps:
	./scripts/test-deps.sh

# Every benchmark here is a whole scenario with its own baseline, so it
# runs one iteration per run (-benchtime 1x), BENCH_COUNT runs, and the
# figure shown is the median of the runs with its 90% range (benchstat, from
# the Go module proxy, installed into bin/). The raw runs stay in
# bin/bench.txt. BENCH picks benchmarks by name, BENCH_PKGS packages of the
# main module (the registrar module's run with the default ./...).
# bench/nomadautoscaler runs garrison beside HashiCorp's nomad-autoscaler on
# one Nomad (test-deps builds Nomad); its build.sh builds nomad-autoscaler
# from the Go module proxy once (minutes) and caches it in ~/.cache/garrison.
BENCH ?= .
BENCH_COUNT ?= 5
BENCH_PKGS ?= ./...
BENCHSTAT_VERSION := v0.0.0-20260908200009-22c9c6c9d4da
BENCHSTAT := $(BIN)/benchstat

$(BENCHSTAT):
	GOBIN=$(abspath $(BIN)) $(GO) install golang.org/x/perf/cmd/benchstat@$(BENCHSTAT_VERSION)

bench: SHELL := /bin/bash
bench: .SHELLFLAGS := -o pipefail -c
bench: test-deps $(BENCHSTAT)
	$(if $(filter ./... ./bench/nomadautoscaler,$(BENCH_PKGS)),./bench/nomadautoscaler/build.sh >/dev/null)
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 1x -count $(BENCH_COUNT) -timeout 180m $(BENCH_PKGS) | tee $(BIN)/bench.txt
	$(if $(filter ./...,$(BENCH_PKGS)),cd registrar && $(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 1x -count $(BENCH_COUNT) -timeout 60m ./... | tee -a ../$(BIN)/bench.txt)
	$(BENCHSTAT) -confidence 0.9 $(BIN)/bench.txt

vet: deps
	$(GO) vet ./...
	cd registrar && $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# The registrar module is what services import: it must not pull the etcd
# server, Docker or gin (registrar/deps_test.go checks the same).
deps:
	@deps=$$(cd registrar && $(GO) list -deps ./...) || exit 1; \
	heavy=$$(echo "$$deps" | grep -E '^(go\.etcd\.io/etcd/server|go\.etcd\.io/bbolt|go\.etcd\.io/raft|github\.com/docker|github\.com/moby|github\.com/gin-gonic)' || true); \
	test -z "$$heavy" || { echo "the registrar module depends on:"; echo "$$heavy"; exit 1; }

clean:
	rm -rf $(BIN)
