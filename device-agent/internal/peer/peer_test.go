package peer

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

func offerWith(t *testing.T, fmtps ...string) *sdp.SessionDescription {
	t.Helper()
	var b strings.Builder
	b.WriteString("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF")
	for i := range fmtps {
		b.WriteString(" " + strconv.Itoa(96+i))
	}
	b.WriteString("\r\nc=IN IP4 0.0.0.0\r\n")
	for i, f := range fmtps {
		pt := strconv.Itoa(96 + i)
		b.WriteString("a=rtpmap:" + pt + " H264/90000\r\na=fmtp:" + pt + " " + f + "\r\n")
	}
	var s sdp.SessionDescription
	if err := s.Unmarshal([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestChooseH264(t *testing.T) {
	chromium := []string{
		"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
		"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
	}
	withHigh := append(chromium[:3:3], "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f")
	tests := []struct {
		name     string
		offer    []string
		sps      []byte
		want     string
		fallback bool
		err      bool
	}{
		{"main with constraint flags the browser does not list", chromium, []byte{0x67, 0x4d, 0x40, 0x1e}, "4d001e", false, false},
		{"constrained baseline", chromium, []byte{0x67, 0x42, 0xe0, 0x1f}, "42e01f", false, false},
		{"high offered", withHigh, []byte{0x67, 0x64, 0x00, 0x28}, "640028", false, false},
		{"high not offered: main stands in", chromium, []byte{0x67, 0x64, 0x00, 0x1f}, "4d001f", true, false},
		{"only packetization-mode 0", []string{"packetization-mode=0;profile-level-id=42e01f"}, []byte{0x67, 0x42, 0xe0, 0x1f}, "", false, true},
		{"no parameter sets", chromium, nil, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fmtp, note, err := chooseH264(offerWith(t, tt.offer...), tt.sps)
			if tt.err {
				if !errors.Is(err, ErrCodec) {
					t.Fatalf("err %v, want ErrCodec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(fmtp, "profile-level-id="+tt.want) || !strings.Contains(fmtp, "packetization-mode=1") {
				t.Fatalf("fmtp %q, want profile-level-id=%s", fmtp, tt.want)
			}
			if (note != "") != tt.fallback {
				t.Fatalf("note %q, want fallback=%v", note, tt.fallback)
			}
		})
	}
}
