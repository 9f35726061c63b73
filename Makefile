# PeerCam. `make demo` runs it, `make test` tests it.
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell c=$$(git rev-parse --short=12 HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null && echo $$c || echo $$c+dirty; })
COMMIT_TIME ?= $(shell git log -1 --format=%cI 2>/dev/null)
AGENT   := github.com/peercam/peercam/device-agent/agent
LDFLAGS := -s -w -X $(AGENT).Version=$(VERSION) -X $(AGENT).Commit=$(COMMIT) -X $(AGENT).CommitTime=$(COMMIT_TIME)

# Agent targets for make cross: name GOOS GOARCH variant-variable=value.
# ARMv5/v6/v7 cover older and current 32-bit recorder SoCs (HiSilicon,
# Ingenic's ARM parts, Novatek); MIPS boxes rarely have an FPU, hence
# softfloat.
CROSS := \
	linux-armv5:linux:arm:GOARM=5 \
	linux-armv6:linux:arm:GOARM=6 \
	linux-armv7:linux:arm:GOARM=7 \
	linux-arm64:linux:arm64: \
	linux-mipsle:linux:mipsle:GOMIPS=softfloat \
	linux-mips:linux:mips:GOMIPS=softfloat \
	linux-amd64:linux:amd64:

.PHONY: build cross sizes soak demo test test-short lint deps bench bench-cluster fuzz lab clean

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./device-agent ./rendezvous ./firmware-sim

# The NAT lab: builds namespaces with none/cone/symmetric NAT, runs the
# real binaries in them and prints the connection matrix (needs root).
lab:
	$(GO) test -count=1 -run 'TestNATMatrix|TestMediaBypassesRendezvous|TestPortMapping|TestICERestart|TestNATBrowser' -v ./e2e 2>&1 | grep -v 'level=' | grep -E '^\s+(\||nat_test|restart_test)|^(---|ok|FAIL|PASS)'

# Static, stripped agents for recorder hardware: bin/device-agent-<os>-<arch>.
cross:
	@mkdir -p $(BIN)
	@for t in $(CROSS); do \
		name=$${t%%:*}; rest=$${t#*:}; os=$${rest%%:*}; rest=$${rest#*:}; arch=$${rest%%:*}; var=$${rest#*:}; \
		env CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $$var $(GO) build -trimpath -ldflags "$(LDFLAGS)" \
			-o $(BIN)/device-agent-$$name ./device-agent || exit 1; \
		stat -c %s $(BIN)/device-agent-$$name | awk -v f=$(BIN)/device-agent-$$name '{ printf "%-30s %5.1f MiB\n", f, $$1/1048576 }'; \
	done

# make cross, then write its sizes into the README's table, and print where
# the armv7 agent's bytes go (text and data per module, from the symbol
# table of an unstripped build).
sizes:
	./scripts/sizes.sh

# A simulated 4-channel NVR, a rendezvous and an agent, claimed by a demo owner.
demo: build
	./scripts/demo.sh

# Everything, including the browser and WHEP end-to-end tests. The fuzz
# targets run briefly on top of their seed corpora, for a number of inputs
# rather than a time: a -fuzztime duration can end in a spurious "context
# deadline exceeded" (a race in Go's fuzz coordinator, golang/go#75804,
# fixed after go1.26).
test: lint
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -race -count=1 -run '^TestStartWhileClientsRetry$$' ./firmware-sim/nvr
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 500000x ./proto
	$(GO) test -run '^$$' -fuzz '^FuzzEncodeDirect$$' -fuzztime 30000x ./proto
	$(GO) test -run '^$$' -fuzz '^FuzzEnvelopeEncode$$' -fuzztime 10000x ./rendezvous/internal/hub
	$(GO) test -run '^$$' -fuzz '^FuzzEnvelopeDecode$$' -fuzztime 10000x ./rendezvous/internal/hub
	$(GO) test -run '^$$' -fuzz '^FuzzSliceType$$' -fuzztime 300000x ./internal/media/h264
	$(GO) test -run '^$$' -fuzz '^FuzzSplitAccessUnits$$' -fuzztime 300000x ./internal/media/h264
	$(GO) test -run '^$$' -fuzz '^FuzzParsePCPMap$$' -fuzztime 100000x ./device-agent/internal/portmap
	$(GO) test -run '^$$' -fuzz '^FuzzSplitAccessUnits$$' -fuzztime 200000x ./internal/media/h265
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 50000x ./internal/onvif
	$(GO) test -run '^$$' -fuzz '^FuzzOffer$$' -fuzztime 100000x ./device-agent/internal/peer
	$(GO) test -run '^$$' -fuzz '^FuzzLoadConfig$$' -fuzztime 10000x ./device-agent/agent
	$(GO) test -run '^$$' -fuzz '^FuzzVideoPackets$$' -fuzztime 100000x ./device-agent/internal/rtspsource

# Every fuzz target for FUZZTIME each (default 1m); what they find lands in
# each package's testdata/fuzz and is replayed by every go test after.
FUZZTIME ?= 1m
fuzz:
	@for t in 'FuzzDecode ./proto' 'FuzzEncodeDirect ./proto' 'FuzzEnvelopeEncode ./rendezvous/internal/hub' 'FuzzEnvelopeDecode ./rendezvous/internal/hub' 'FuzzSliceType ./internal/media/h264' 'FuzzSplitAccessUnits ./internal/media/h264' \
		'FuzzSplitAccessUnits ./internal/media/h265' 'FuzzParsePCPMap ./device-agent/internal/portmap' 'FuzzParse ./internal/onvif' \
		'FuzzOffer ./device-agent/internal/peer' 'FuzzLoadConfig ./device-agent/agent' 'FuzzVideoPackets ./device-agent/internal/rtspsource'; do \
		set -- $$t; echo "== $$1 $$2"; $(GO) test -run '^$$' -fuzz "^$$1$$" -fuzztime $(FUZZTIME) $$2 || exit 1; \
	done

# 4 cameras × 4 viewers against the real binaries with a fault every minute
# in turn (camera restart, stall, agent restart, rendezvous restart, garbage);
# fails if memory, threads or open files have not come back. SOAK=10m.
SOAK ?= 10m
soak:
	PEERCAM_SOAK=$(SOAK) $(GO) test -tags soak -count=1 -timeout 0 -run '^TestSoak$$' -v ./e2e 2>&1 | grep -v 'level='

test-short:
	$(GO) test -short -count=1 ./...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Benchmarks, reported as numbers. The last one prints the README's
# Performance table: first frame warm and cold, lag to live, and 1 to 100
# viewers of one 2 Mbit/s camera (CPU, memory, delay from the camera), the
# agent beside mediamtx when mediamtx is on the PATH (or MEDIAMTX names
# it), measured in the same run.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v /e2e)
	$(GO) test -run '^$$' -bench 'FirstFrameWarm' -benchtime 20x ./e2e
	$(GO) test -run '^$$' -bench 'FirstFrameCold' -benchtime 10x ./e2e
	$(GO) test -run '^$$' -bench 'BenchmarkViewers$$' -benchtime 1x -timeout 30m ./e2e

# The rendezvous under a fleet: DEVICES idle agents on one node (default
# 18000: this machine allows 20000 open files a process), SETUPS session
# setups a second on it and through NATS from a second node, then a
# reconnect storm. PostgreSQL and nats-server run as processes.
bench-cluster:
	$(GO) test -run '^$$' -bench 'BenchmarkCluster$$' -benchtime 1x -timeout 30m ./e2e

# What tests need on a fresh Debian machine; a no-op when all is present.
deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v ffprobe  >/dev/null || missing="$$missing ffmpeg"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf ] || missing="$$missing fonts-dejavu-core"; \
	command -v qemu-arm-static >/dev/null || missing="$$missing qemu-user-static"; \
	command -v busybox  >/dev/null || missing="$$missing busybox"; \
	command -v ip       >/dev/null || missing="$$missing iproute2"; \
	command -v ping     >/dev/null || missing="$$missing iputils-ping"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	command -v nft      >/dev/null || missing="$$missing nftables"; \
	command -v turnserver >/dev/null || missing="$$missing coturn"; \
	command -v miniupnpd  >/dev/null || missing="$$missing miniupnpd"; \
	[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v nats-server >/dev/null || missing="$$missing nats-server"; \
	command -v haproxy  >/dev/null || missing="$$missing haproxy"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

clean:
	rm -rf $(BIN) demo-data e2e/artifacts
