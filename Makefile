# The everyday commands; each one is a script or a go command you can also
# run by hand.
BINARY  := bin/todo-backend
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: run clean-dev test test-dev build vet fmt ci clean faults bench load image

run: ## local PostgreSQL (in .dev/, or under /var/tmp) and the server on :8000
	@bash scripts/dev.sh

clean-dev: ## stop and remove make run's cluster, secret and binary
	@bash scripts/clean-dev.sh

test: ## throwaway PostgreSQL, go test -race with coverage, the make run check
	@bash scripts/test.sh

test-dev: ## make run and make clean-dev from a fresh copy, as root and as an ordinary user
	@bash scripts/test-dev.sh

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

faults: ## SIGKILL PostgreSQL, SIGTERM the server, restart instances behind haproxy, run the image; count lost writes
	@bash scripts/faults.sh

image: ## the container image from Containerfile, with podman
	@bash scripts/image.sh

bench: ## Go benchmarks over a throwaway PostgreSQL
	@bash scripts/bench.sh

load: ## wrk against the binary vs pgbench ceilings (see scripts/load.sh)
	@bash scripts/load.sh
