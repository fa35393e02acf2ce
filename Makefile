# garrison: build, run, test, benchmark.
GO ?= go
BIN := bin
GOTEST_FLAGS ?= -count=1 -timeout 30m
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run test test-deps bench vet fmt clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/garrison ./cmd/garrison
	$(GO) build -o $(BIN)/echo ./examples/echo

# Starts garrison up and the example echo service, which registers itself;
# the registry is then at http://127.0.0.1:8080/api/v1/services.
run: build
	./scripts/run.sh

# Installs what the tests need when it is missing (apt packages, the Docker
# daemon), then runs the whole suite.
test: test-deps vet
	$(GO) test $(GOTEST_FLAGS) ./...

test-deps:
	./scripts/test-deps.sh

bench: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

clean:
	rm -rf $(BIN)
