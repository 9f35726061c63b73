package portmap

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseProtocols(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Protocol
		err      bool
	}{
		{"empty is auto", "", Protocols, false},
		{"auto", "auto", Protocols, false},
		{"off", "off", nil, false},
		{"list", "upnp, NAT-PMP", []Protocol{UPnP, NATPMP}, false},
		{"unknown", "upnp,igd", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProtocols(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err %v", err)
			}
			if strings.Join(protoStrings(got), ",") != strings.Join(protoStrings(tt.want), ",") {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func protoStrings(ps []Protocol) []string {
	var out []string
	for _, p := range ps {
		out = append(out, string(p))
	}
	return out
}

func TestParseRoutes(t *testing.T) {
	const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	tests := []struct {
		name, table string
		want        string
	}{
		{"default via 192.168.1.1", header +
			"eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
			"eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", "192.168.1.1"},
		{"down default route skipped", header +
			"eth1\t00000000\t0100000A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"eth0\t00000000\t FE01A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", "192.168.1.254"},
		{"no default route", header + "eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", ""},
		{"garbage", "not a routing table\n\x00\x01", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRoutes(strings.NewReader(tt.table))
			if tt.want == "" {
				if !errors.Is(err, ErrNoGateway) {
					t.Fatalf("got %v, %v; want ErrNoGateway", got, err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("got %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

var testNonce = [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

func TestPCPMapRequest(t *testing.T) {
	got := marshalPCPMap(pcpMap{lifetime: 7200, client: netip.MustParseAddr("192.168.1.10"), nonce: testNonce,
		internalPort: 8189, externalPort: 8189})
	want, _ := hex.DecodeString("" +
		"02010000" + "00001c20" + "00000000000000000000ffffc0a8010a" + // version, MAP; lifetime; client IP
		"0102030405060708090a0b0c" + "11000000" + "1ffd" + "1ffd" + // nonce; UDP; ports
		"00000000000000000000ffff00000000") // no suggested external IP
	if !bytes.Equal(got, want) {
		t.Fatalf("request\n got %x\nwant %x", got, want)
	}
}

func TestParsePCPMap(t *testing.T) {
	ok := func(result byte) []byte {
		b, _ := hex.DecodeString("0281" + "00" + hex.EncodeToString([]byte{result}) + "00000e10" + "0000002a" +
			"000000000000000000000000" + "0102030405060708090a0b0c" + "11000000" + "1ffd" + "4e20" +
			"00000000000000000000ffff0b00000b")
		return b
	}
	tests := []struct {
		name string
		in   []byte
		err  error
		want string // external address
	}{
		{"success", ok(0), nil, "11.0.0.11:20000"},
		{"not authorized", ok(2), ErrPCPResult, ""},
		{"NAT-PMP router", []byte{0, 0x81, 0, 1, 0, 0, 0, 0}, ErrOnlyNATPMP, ""},
		{"short", []byte{2, 0x81}, ErrPCPBadResponse, ""},
		{"wrong opcode", append([]byte{2, 0x82}, ok(0)[2:]...), ErrPCPBadResponse, ""},
		{"truncated success", ok(0)[:40], ErrPCPBadResponse, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parsePCPMap(tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := netip.AddrPortFrom(m.externalIP, m.externalPort).String(); got != tt.want || m.lifetime != 3600 || m.nonce != testNonce {
				t.Fatalf("got %s lifetime %d nonce %x", got, m.lifetime, m.nonce)
			}
		})
	}
	// One byte at a time: every prefix is an error, never a panic.
	full := ok(0)
	for i := range full {
		if _, err := parsePCPMap(full[:i]); err == nil {
			t.Fatalf("prefix of %d bytes parsed", i)
		}
	}
}

func FuzzParsePCPMap(f *testing.F) {
	f.Add(marshalPCPMap(pcpMap{client: netip.MustParseAddr("10.0.0.1"), nonce: testNonce, internalPort: 1}))
	f.Add([]byte{0, 0x81, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parsePCPMap(b)
		if err == nil && len(b) < pcpMapLen {
			t.Fatalf("%d bytes parsed as %+v", len(b), m)
		}
	})
}

// fakeRouter is one protocol's client as a struct of funcs.
type fakeRouter struct {
	mu      sync.Mutex // guards the counters
	adds    int
	removes int
	addFn   func(n int, want uint16) (Mapping, error)
}

func (f *fakeRouter) add(_ context.Context, internal netip.AddrPort, want uint16, lease time.Duration) (Mapping, error) {
	f.mu.Lock()
	f.adds++
	n := f.adds
	f.mu.Unlock()
	return f.addFn(n, want)
}

func (f *fakeRouter) remove(context.Context, Mapping) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removes++
	return nil
}

func (f *fakeRouter) counts() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.adds, f.removes
}

func testMapper(routers map[Protocol]*fakeRouter, protos ...Protocol) *Mapper {
	m := New(Config{Port: 8189, Gateway: netip.MustParseAddr("192.168.1.1"), LocalIP: netip.MustParseAddr("192.168.1.10"),
		Protocols: protos, Retry: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	m.newClient = func(p Protocol, _ netip.Addr) client {
		if r := routers[p]; r != nil {
			return r
		}
		return &fakeRouter{addFn: func(int, uint16) (Mapping, error) { return Mapping{}, errors.New("no answer") }}
	}
	return m
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for " + what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The mapper falls through to the protocol the router speaks, renews the
// lease before it ends, and removes the mapping when it stops.
func TestMapperFallsBackRenewsAndRemoves(t *testing.T) {
	upnp := &fakeRouter{addFn: func(n int, want uint16) (Mapping, error) {
		return Mapping{External: netip.AddrPortFrom(netip.MustParseAddr("11.0.0.11"), want), Lifetime: 100 * time.Millisecond}, nil
	}}
	m := testMapper(map[Protocol]*fakeRouter{UPnP: upnp}, PCP, NATPMP, UPnP)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	waitUntil(t, "a mapping", func() bool { _, ok := m.Current(); return ok })
	got, _ := m.Current()
	if got.Protocol != UPnP || got.External.String() != "11.0.0.11:8189" || got.Internal.String() != "192.168.1.10:8189" {
		t.Fatalf("mapping %+v", got)
	}
	waitUntil(t, "two renewals", func() bool { return m.Renewals() >= 2 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if _, removes := upnp.counts(); removes != 1 {
		t.Fatalf("%d removals, want 1", removes)
	}
	if _, ok := m.Current(); ok {
		t.Fatal("a mapping is still advertised after Run returned")
	}
}

// A router whose own WAN address is private sits behind another NAT: its
// mapping is useless, so it is removed and not advertised.
func TestMapperRefusesPrivateWAN(t *testing.T) {
	r := &fakeRouter{addFn: func(int, uint16) (Mapping, error) {
		return Mapping{External: netip.MustParseAddrPort("100.64.3.4:8189"), Lifetime: time.Hour}, nil
	}}
	m := testMapper(map[Protocol]*fakeRouter{PCP: r}, PCP)
	_, _, err := m.mapOnce(context.Background(), nil, nil)
	if !errors.Is(err, ErrPrivateWAN) || !errors.Is(err, ErrNoRouter) {
		t.Fatalf("err %v, want ErrPrivateWAN", err)
	}
	if adds, removes := r.counts(); adds != 1 || removes != 1 {
		t.Fatalf("adds %d removes %d, want the mapping made and removed", adds, removes)
	}
}

// When the router stops answering, the mapping is kept until its lease
// lapses, then withdrawn; when the router comes back it is mapped again.
func TestMapperLapsesAndRecovers(t *testing.T) {
	var down sync.Mutex // held while the router is "down"
	r := &fakeRouter{addFn: func(int, uint16) (Mapping, error) {
		if !down.TryLock() {
			return Mapping{}, errors.New("timeout")
		}
		defer down.Unlock()
		return Mapping{External: netip.MustParseAddrPort("11.0.0.11:8189"), Lifetime: 200 * time.Millisecond}, nil
	}}
	m := testMapper(map[Protocol]*fakeRouter{NATPMP: r}, NATPMP)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	waitUntil(t, "a mapping", func() bool { _, ok := m.Current(); return ok })
	down.Lock()
	waitUntil(t, "the mapping to lapse", func() bool { _, ok := m.Current(); return !ok })
	down.Unlock()
	waitUntil(t, "a new mapping", func() bool { _, ok := m.Current(); return ok })
}
