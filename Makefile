# Conclave: `make run` starts the local demo (three appliances), `make run-one`
# a single appliance, `make test` runs every test.
# Both install what is missing on a Debian machine (PostgreSQL, Chromium).

GO        ?= go
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
BIN       := bin/conclave
DATA_DIR  ?= ./var/appliance
DEMO_DIR  ?= ./var/demo
ARTIFACTS ?= $(CURDIR)/bin/test-artifacts
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build run run-one generate test test-go vet fmt-check generate-check deps-run deps-test bench clean fuzz fuzz-short vulncheck vulncheck-if-reachable

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/conclave

# Regenerate the templ views (the generated *_templ.go files are committed).
generate:
	$(GO) tool templ generate

# Three appliances on 127.0.0.1:8441-8443, each with its own PostgreSQL;
# the first is a cluster, the others wait to be added. DEMO_FLAGS=--formed
# adds them at once (conclave demo -h).
run: deps-run build
	$(BIN) demo --data-dir $(DEMO_DIR) $(DEMO_FLAGS)

# One appliance on 127.0.0.1:8441.
run-one: deps-run build
	$(BIN) serve --data-dir $(DATA_DIR)

# PostgreSQL's server binaries (initdb, pg_ctl) for the private database.
deps-run:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "Installing PostgreSQL (apt-get install postgresql)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi

# Tests also drive a real browser.
deps-test: deps-run
	@if ! command -v chromium >/dev/null 2>&1; then \
		echo "Installing Chromium (apt-get install chromium)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

test: deps-test vet fmt-check generate-check test-go fuzz-short vulncheck-if-reachable

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# The committed *_templ.go files must be what templ generates now.
generate-check:
	@$(GO) build -o bin/templ github.com/a-h/templ/cmd/templ
	@tmp=$$(mktemp -d) && cp -r views go.mod $$tmp/ && \
	(cd $$tmp && $(CURDIR)/bin/templ generate >/dev/null 2>&1) && \
	for f in views/*_templ.go; do \
		if ! cmp -s $$f $$tmp/$$f; then echo "$$f is stale: run 'make generate' and commit"; rm -rf $$tmp; exit 1; fi; \
	done; rm -rf $$tmp

# Screenshots and other test output land in $(ARTIFACTS). The web package
# takes about 7 minutes on 2 cores here; CI once ran it past 20 minutes, so
# the timeout leaves room for a slower machine (the CI limit is 90).
test-go:
	@mkdir -p $(ARTIFACTS)
	$(GO) test -count=1 -timeout 45m -artifacts -outputdir=$(ARTIFACTS) ./...

# The benchmarks of bench/ against their targets (enroll, replication,
# failover, console and memory): about 8 minutes on 2 cores. Writes the
# table to bin/bench/results.md (copy it into README.md's Benchmarks
# section). BENCH_FLAGS passes -runs N, -rows N; BENCH=Enroll runs one.
BENCH ?= .
bench: deps-run build
	@mkdir -p bin/bench
	$(GO) test ./bench -run '^$$' -bench '$(BENCH)' -benchtime 1x -timeout 30m -args \
		-results $(CURDIR)/bin/bench/results.md -binary $(CURDIR)/$(BIN) $(BENCH_FLAGS)
	@cat bin/bench/results.md

# --- Hardening: fuzz tests and known vulnerabilities ---

# Every Fuzz function of the repository, FUZZTIME each, one worker (the
# machine is shared). make test runs them briefly; make fuzz for longer.
# A failing input is saved under the package's testdata/fuzz/ and replayed
# by every later go test.
FUZZTIME ?= 3s
fuzz-short:
	@for file in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
		pkg=$$(dirname $$file); \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
			printf 'fuzz %-12s %-22s %s\n' $$pkg $$name $(FUZZTIME); \
			out=$$($(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime=$(FUZZTIME) -parallel 1 2>&1) || { echo "$$out" | tail -40; exit 1; }; \
		done; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=$${FUZZTIME_LONG:-2m}

# govulncheck, pinned. It needs its database at vuln.go.dev: make vulncheck
# fails when that cannot be reached; make test skips it then, saying so.
GOVULNCHECK := golang.org/x/vuln/cmd/govulncheck@v1.1.4
vulncheck:
	$(GO) run $(GOVULNCHECK) ./...

vulncheck-if-reachable:
	@out=$$($(GO) run $(GOVULNCHECK) ./... 2>&1); rc=$$?; \
	if [ $$rc -ne 0 ] && echo "$$out" | grep -q 'fetching vulnerabilities'; then \
		echo "govulncheck SKIPPED: its vulnerability database (vuln.go.dev) cannot be reached from here; run 'make vulncheck' where it can."; \
		echo "$$out" | grep 'fetching vulnerabilities' | head -1; \
	else echo "$$out"; exit $$rc; fi

clean:
	rm -rf bin
