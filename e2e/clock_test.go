package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peercam/peercam/device-agent/agent"
	"github.com/peercam/peercam/internal/testutil"
	"github.com/peercam/peercam/rendezvous/server"
)

// A recorder boots without NTP and its clock reads 2000-01-01, or runs three
// years ahead. Certificate and token checks must not lock it out: it reaches
// an HTTPS rendezvous, takes the time from it, and serves viewers whose
// tokens it checks at the rendezvous's time.
func TestAgentClockWrongAtBoot(t *testing.T) {
	certFile, keyFile, pool := testutil.SelfSigned(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if b, err := os.ReadFile(certFile); err != nil || os.WriteFile(caFile, b, 0o600) != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	tests := []struct {
		name   string
		tls    bool
		offset func(time.Time) time.Time
		// refused: the box's clock is ahead and the certificate looks
		// expired; the agent cannot tell the clock from the certificate and
		// must say so.
		refused bool
	}{
		{"reset to 2000 over https", true, func(time.Time) time.Time { return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) }, false},
		{"three years ahead over http", false, func(n time.Time) time.Time { return n.AddDate(3, 0, 0) }, false},
		{"three years ahead over https", true, func(n time.Time) time.Time { return n.AddDate(3, 0, 0) }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := startInfra(t, 1, func(c *server.Config) {
				if tc.tls {
					c.TLSCert, c.TLSKey = certFile, keyFile
				}
			})
			boot := time.Now()
			logs := &syncBuffer{}
			ag, _ := startAgentLog(t, in, 1, func(c *agent.Config) {
				c.RendezvousCA = caFile
				c.SystemClock = func() time.Time { return tc.offset(boot).Add(time.Since(boot)) }
			}, slog.New(slog.NewTextHandler(logs, nil)))
			if tc.refused {
				waitFor(t, 10*time.Second, "the agent to explain the certificate refusal", func() bool {
					return strings.Contains(logs.String(), "set it or enable NTP")
				})
				if in.rv.Hub().Online(ag.ID()) {
					t.Fatal("online with a certificate that looks expired to the box")
				}
				return
			}
			waitFor(t, 15*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
			if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "Recorder"); err != nil {
				t.Fatal(err)
			}
			token, err := mintToken(context.Background(), in.dataDir, ag.ID(), []string{"1"}, 10*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			res := watchWHEPWithin(t, client, fmt.Sprintf("%s/whep/%s/1", in.rv.URL(), ag.ID()), token, 10, 20*time.Second)
			if res.width != 1280 {
				t.Fatalf("decoded width %d", res.width)
			}
			if tc.tls && !strings.Contains(logs.String(), "before the agent was built") {
				t.Fatalf("the agent did not say why it accepted the certificate; log:\n%s", logs)
			}
			if !strings.Contains(logs.String(), "clock is wrong") {
				t.Fatalf("the agent did not report its wrong clock; log:\n%s", logs)
			}
		})
	}
}
