# PeerCam. `make demo` runs it, `make test` tests it.
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/peercam/peercam/device-agent/agent.Version=$(VERSION)

.PHONY: build demo test test-short lint deps bench fuzz clean

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./device-agent ./rendezvous ./firmware-sim

# A simulated 4-channel NVR, a rendezvous and an agent, claimed by a demo owner.
demo: build
	./scripts/demo.sh

# Everything, including the browser and WHEP end-to-end tests. The fuzz
# targets run briefly on top of their seed corpora.
test: lint
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 10s ./proto
	$(GO) test -run '^$$' -fuzz '^FuzzSliceType$$' -fuzztime 5s ./internal/media/h264
	$(GO) test -run '^$$' -fuzz '^FuzzSplitAccessUnits$$' -fuzztime 5s ./internal/media/h264

test-short:
	$(GO) test -short -count=1 ./...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v /e2e)
	$(GO) test -run '^$$' -bench . -benchtime 20x ./e2e

# What tests need on a fresh Debian machine; a no-op when all is present.
deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v ffprobe  >/dev/null || missing="$$missing ffmpeg"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf ] || missing="$$missing fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

clean:
	rm -rf $(BIN) demo-data e2e/artifacts
