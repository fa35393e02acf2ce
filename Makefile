# garrison: build, run, test, benchmark.
GO ?= go
BIN := bin
GOTEST_FLAGS ?= -count=1 -timeout 30m
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run test test-deps bench vet deps fmt clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/garrison ./cmd/garrison
	$(GO) build -o $(BIN)/echo ./examples/echo

# Starts garrison up and the example echo service, which registers itself;
# the registry is then at http://127.0.0.1:8080/api/v1/services.
run: build
	./scripts/run.sh

# Installs what the tests need when it is missing (apt packages, the Docker
# daemon), then runs the whole suite: the main module and the registrar
# module (registrar/go.mod), which ./... at the root does not reach.
test: test-deps vet
	$(GO) test $(GOTEST_FLAGS) ./...
	cd registrar && $(GO) test $(GOTEST_FLAGS) ./...

test-deps:
	./scripts/test-deps.sh

bench: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

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
