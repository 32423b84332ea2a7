# The everyday commands; each one is a script or a go command you can also
# run by hand.
BINARY  := bin/todo-backend
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: run test build vet fmt ci clean faults bench load

run: ## local PostgreSQL in .dev/ and the server on :8000
	@bash scripts/dev.sh

test: ## throwaway PostgreSQL, go test -race with coverage
	@bash scripts/test.sh

build: ## one static binary in bin/
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BINARY) .

vet:
	go vet ./...

fmt:
	gofmt -w .

ci: ## what CI runs
	@bash .ci/run

clean:
	rm -rf bin

faults: ## SIGKILL PostgreSQL and SIGTERM the server under load; count lost writes
	@bash scripts/faults.sh

bench: ## Go benchmarks over a throwaway PostgreSQL
	@bash scripts/bench.sh

load: ## wrk against the binary vs pgbench ceilings (see scripts/load.sh)
	@bash scripts/load.sh
