# coursestream: `make test` is the whole test suite. It installs what the
# tests need when it is missing (redis-server, Chromium, npm packages) and
# the tests start their own servers on free loopback ports.

GO       ?= go
# Fuzz targets run briefly on every test run: package:target:inputs. The
# budget is a count of inputs, not a duration: a -fuzztime duration races
# Go's fuzzing coordinator on a loaded machine ("context deadline exceeded"
# with no failing input). FUZZTIME overrides every count (e.g. 60s).
FUZZ     := observer:FuzzParseEnvelope:100000 observer:FuzzNormalize:100000 stream:FuzzEventFrame:100000 poller:FuzzMatchNoneMatch:100000 \
            poller:FuzzParse:100000 poller:FuzzParseCourses:100000 stream:FuzzParseRequest:100000 stream:FuzzParseCoursesRequest:100000 \
            internal/auth:FuzzParse:60000 internal/cursor:FuzzParse:100000 \
            cmd/coursestream:FuzzEndpoints:15000

# The version a build reports (coursestream --version, /metrics, the
# startup log): the nearest tag, or the commit alone in a clone with no
# tags, with -dirty for uncommitted changes. VERSION=v1.2.3 overrides it.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION := $(shell git rev-parse HEAD 2>/dev/null)
MODIFIED := $(shell git status --porcelain 2>/dev/null | grep -q . && echo true)
LDFLAGS  := -s -w -X main.releaseVersion=$(VERSION) -X main.releaseRevision=$(REVISION) -X main.releaseModified=$(MODIFIED)

.PHONY: test deps check unit benchcheck fuzz run bench build

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

# build makes ./coursestream, a release build: the version from git
# describe; the VCS revision and modified flag as the toolchain stamps them
# (-buildvcs=auto wins over a GOFLAGS=-buildvcs=false), or from git where
# it stamps nothing (a worktree).
build:
	$(GO) build -buildvcs=auto -trimpath -ldflags "$(LDFLAGS)" -o coursestream ./cmd/coursestream

run:
	$(GO) run ./cmd/coursestream

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
