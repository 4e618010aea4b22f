# etcd-chaos: see README.md. Every target works on a fresh clone with only Go
# installed; modules come from the Go module proxy.

GO        ?= go
ARTIFACTS ?= $(CURDIR)/artifacts
ETCD_VERSION ?= v3.6.4
# SEED replays a fault schedule and workload: SEED=1234 make e2e
SEED      ?=
# E2E_FOCUS narrows the suites to matching specs: E2E_FOCUS=kill-leader make e2e
E2E_FOCUS ?=
E2E_LABELS ?=
E2E_TIMEOUT ?= 90m

# Every etcd version a test starts: `make test` builds them into the cache
# before any test runs, so no test's timeout includes a cold build (minutes
# on a busy machine). The unit tests use etcdbin.DefaultVersion (and v3.5.8,
# the release the watch drain test reproduces; pkg/workload/drain_test.go);
# smoke uses ETCD_VERSION.
TEST_ETCD_VERSIONS = v3.6.4 $(ETCD_VERSION) v3.5.8
# `make e2e` adds the old releases its known-bug specs pin (suites/knownbugs_test.go).
E2E_ETCD_VERSIONS = $(TEST_ETCD_VERSIONS) v3.5.2 v3.5.15 v3.5.22
# The failpoint builds the known-bugs-slow specs pin (built by `make known-bugs-slow`).
KNOWN_BUGS_FAILPOINT_VERSIONS = v3.5.4 v3.5.6

export ARTIFACTS SEED ETCD_VERSION E2E_ETCD_VERSIONS

.PHONY: all build test test-etcd unit smoke test-kube-host soak e2e e2e-local e2e-kind e2e-kube-host kube-host-deps chart-upgrade etcd bench bench-history lint fmt vet clean help known-bugs known-bugs-slow

all: build test

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/etcd-chaos
	$(GO) build -o bin/etcd-chaos ./cmd/etcd-chaos

etcd: ## build and cache the etcd server binary for ETCD_VERSION
	$(GO) run ./cmd/etcd-chaos etcd --version $(ETCD_VERSION)

test: lint test-etcd unit smoke test-kube-host ## everything CI runs: lint, unit and integration tests, a short local e2e, every Kubernetes spec on a real single-node Kubernetes

test-etcd: ## build and cache every etcd version the tests start, before any test runs
	@for v in $(sort $(TEST_ETCD_VERSIONS)); do $(GO) run ./cmd/etcd-chaos etcd --version $$v >/dev/null || exit 1; done

unit: test-etcd ## unit and integration tests of every package (real local etcd, no Docker)
	$(GO) test -count=1 -timeout 45m ./...

# Colour only on a terminal (tested in the recipe, whose stdout is make's):
# escape codes make a log file or a pipe hard to read. go test's -timeout is
# longer than -ginkgo.timeout so that Ginkgo's timer fires first and cleanup,
# AfterSuite and the JUnit report still run.
smoke: test-etcd ## the short local e2e specs (label "smoke")
	@nocolor=; [ -t 1 ] || nocolor=-ginkgo.no-color; set -x; \
	$(GO) test -v -count=1 -tags e2e -timeout 30m ./suites/ -args \
		-ginkgo.label-filter=smoke -ginkgo.v -ginkgo.timeout=20m $$nocolor \
		-ginkgo.junit-report=$(ARTIFACTS)/junit-smoke.xml

# The kube-host backend needs root (it runs containerd and a kubelet); as
# another user the specs are skipped, saying so. kube-host-deps builds the
# Kubernetes binaries first, so no test's timeout includes that build. The
# kubehost package's boot, sandbox and interrupted-start tests (teardown
# leaves nothing) run here too, where the runtime is known to be installed.
# Then every Kubernetes spec (label kube: pod deletes, kills and pauses,
# partitions, deleting every pod with and without persistence, a chart
# upgrade, the smoke spec) and the backend-neutral specs whose fault or
# check goes through the Kubernetes code (the partition sensitivity spec,
# the snapshot round trip) run on the real cluster.
KUBE_HOST_LABELS = kube || sensitivity || snapshot
test-kube-host: kube-host-deps ## every Kubernetes spec (labels kube, sensitivity, snapshot) on a real single-node Kubernetes on this host
	@if [ "$$(id -u)" != 0 ]; then echo "test-kube-host: skipped: the kube-host backend needs root"; exit 0; fi; \
	nocolor=; [ -t 1 ] || nocolor=-ginkgo.no-color; set -x; \
	ETCD_CHAOS_KUBE_HOST_TESTS=1 $(GO) test -count=1 -timeout 15m ./pkg/cluster/kubehost/ && \
	ETCD_CHAOS_BACKEND=kube-host $(GO) test -v -count=1 -tags e2e -timeout 80m ./suites/ -args \
		-ginkgo.label-filter='$(KUBE_HOST_LABELS)' -ginkgo.v -ginkgo.timeout=70m $$nocolor \
		-ginkgo.junit-report=$(ARTIFACTS)/junit-kube-host.xml

soak: ## SOAK_RUNS (50) seeded faulted runs across etcd v3.5 and v3.6, 1-5 members, every nemesis; a table of verdicts (docs/PRECISION.md)
	@bash scripts/soak.sh

e2e: ## the main job: every suite, on kind if a Docker daemon answers, else local
	@bash scripts/e2e.sh

known-bugs: ## the known-bug specs that need only plain etcd builds (label known-bugs)
	@ETCD_CHAOS_BACKEND=local E2E_LABELS=known-bugs bash scripts/e2e.sh

known-bugs-slow: ## the known-bug specs on failpoint builds or with long faults (label known-bugs-slow, which make e2e skips; builds them first)
	@for v in $(KNOWN_BUGS_FAILPOINT_VERSIONS); do $(GO) run ./cmd/etcd-chaos failpoints --etcd-version $$v >/dev/null || exit 1; done
	@ETCD_CHAOS_BACKEND=local E2E_LABELS=known-bugs-slow E2E_TIMEOUT=180m bash scripts/e2e.sh

e2e-local: ## every suite on the local backend
	@ETCD_CHAOS_BACKEND=local bash scripts/e2e.sh

e2e-kind: ## every suite on a kind cluster with the Bitnami chart (needs Docker)
	@ETCD_CHAOS_BACKEND=kind bash scripts/e2e.sh

e2e-kube-host: kube-host-deps ## every Kubernetes-labelled suite on a single-node Kubernetes on this host (root; docs/KUBERNETES.md)
	@ETCD_CHAOS_BACKEND=kube-host bash scripts/e2e.sh

kube-host-deps: ## install the kube-host backend's Debian packages (as root) and build its Kubernetes binaries (once)
	@bash scripts/kube-host-deps.sh

chart-upgrade: ## validate a chart upgrade: make chart-upgrade FROM=12.0.17 TO=12.0.18 VALUES=3-replicas-persistent.yaml
	@ETCD_CHAOS_BACKEND=$${ETCD_CHAOS_BACKEND:-kind} CHART_FROM=$(FROM) CHART_TO=$(TO) CHART_VALUES=$(VALUES) \
		E2E_LABELS=chart-upgrade bash scripts/e2e.sh

bench: ## benchmarks that state the performance figures (docs/PERFORMANCE.md)
	@bash scripts/bench.sh

vet: ## gofmt and go vet, including the e2e-tagged suites
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./suites/

GOLANGCI_LINT ?= $(shell command -v golangci-lint || ls $$(go env GOPATH)/bin/golangci-lint 2>/dev/null)

lint: vet ## gofmt, go vet and golangci-lint (.golangci.yml) when installed
	@if [ -n "$(GOLANGCI_LINT)" ]; then $(GOLANGCI_LINT) run ./... && $(GOLANGCI_LINT) run --build-tags e2e ./suites/; \
		else echo "golangci-lint not installed (go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0); ran gofmt and go vet only"; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output and artifacts (the etcd binary cache stays)
	rm -rf bin $(ARTIFACTS)

bench-history: ## record real histories for the checker benchmarks (about 100k and 1M operations; ~15 min)
	$(GO) run ./cmd/etcd-chaos run --nemesis mix --duration 100s --clients 12 --watch=false --out $(ARTIFACTS)/bench-100k
	$(GO) run ./cmd/etcd-chaos run --nemesis mix --duration 13m --clients 12 --watch=false --out $(ARTIFACTS)/bench-1m
	@echo "now: ETCD_CHAOS_REAL_HISTORY=$(ARTIFACTS)/bench-100k/history.jsonl,$(ARTIFACTS)/bench-1m/history.jsonl make bench"
