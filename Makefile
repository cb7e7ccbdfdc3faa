# coursestream: `make test` is the whole test suite. It installs what the
# tests need when it is missing (redis-server, Chromium, npm packages) and
# the tests start their own servers on free loopback ports.

GO       ?= go
FUZZTIME ?= 8s
# Fuzz targets run briefly on every test run: package:target.
FUZZ     := observer:FuzzParseEnvelope observer:FuzzNormalize poller:FuzzMatchNoneMatch poller:FuzzParse stream:FuzzParseRequest internal/auth:FuzzParse cmd/coursestream:FuzzEndpoints

.PHONY: test deps check unit fuzz run bench

test: deps check unit fuzz

deps:
	@bash .ci/deps

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 10m ./...

fuzz:
	@set -e; for t in $(FUZZ); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) ./$$pkg; \
	done

run:
	$(GO) run ./cmd/coursestream

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
