package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestPionCloseWarningsAreDebug(t *testing.T) {
	var buf bytes.Buffer
	l := PionFactory{Log: slog.New(slog.NewTextHandler(&buf, nil))}.NewLogger("ice")
	l.Warnf("Failed to accept RTP %v", "stream is already closed")
	l.Warn("Failed to ping without candidate pairs. Connection is not possible yet.")
	l.Errorf("Failed to read from candidate udp4 host: %s", "io: read/write on closed pipe")
	if buf.Len() != 0 {
		t.Fatalf("normal-close messages logged at info or above:\n%s", buf.String())
	}
	l.Warnf("DTLS handshake failed: %s", "bad certificate")
	l.Errorf("something broke")
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "level=ERROR") {
		t.Fatalf("real warnings lost:\n%s", out)
	}
}
