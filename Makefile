# coursestream: `make test` is the whole test suite. It installs what the
# tests need when it is missing (redis-server, Chromium, npm packages) and
# the tests start their own servers on free loopback ports.

GO       ?= go
# Fuzz targets run briefly on every test run: package:target:inputs. The
# budget is a count of inputs, not a duration: a -fuzztime duration races
# Go's fuzzing coordinator on a loaded machine ("context deadline exceeded"
# with no failing input). FUZZTIME overrides every count (e.g. 60s).
FUZZ     := observer:FuzzParseEnvelope:100000 observer:FuzzNormalize:100000 stream:FuzzEventFrame:100000 poller:FuzzMatchNoneMatch:100000 \
            poller:FuzzParse:100000 stream:FuzzParseRequest:100000 internal/auth:FuzzParse:60000 \
            cmd/coursestream:FuzzEndpoints:15000

.PHONY: test deps check unit benchcheck fuzz run bench

test: deps check unit benchcheck fuzz

deps:
	@bash .ci/deps

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 10m ./...

# Every benchmark once: they are not figures here (make bench makes those),
# only a check that each still runs.
benchcheck:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

fuzz:
	@set -e; for t in $(FUZZ); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${FUZZTIME:-$${rest#*:}x}; \
	  echo "fuzz $$pkg $$name $$budget"; \
	  $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $$budget ./$$pkg; \
	done

run:
	$(GO) run ./cmd/coursestream

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
