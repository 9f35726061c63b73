package isapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/peercam/peercam/internal/digest"
)

func TestRequestKeyFrame(t *testing.T) {
	var got []string
	h := Handler("admin", "pw", func(ch int, kind string) bool {
		got = append(got, kind)
		return ch == 1
	}, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct {
		method, path, pass string
		status             int
		says               string
	}{
		{"PUT", "/ISAPI/Streaming/channels/101/requestKeyFrame", "pw", 200, "<statusString>OK</statusString>"},
		{"PUT", "/ISAPI/Streaming/channels/102/requestKeyFrame", "pw", 200, "<subStatusCode>ok</subStatusCode>"},
		{"PUT", "/ISAPI/Streaming/channels/201/requestKeyFrame", "pw", 404, "invalidChannel"},
		{"PUT", "/ISAPI/Streaming/channels/103/requestKeyFrame", "pw", 404, "invalidChannel"},
		{"PUT", "/ISAPI/Streaming/channels/abc/requestKeyFrame", "pw", 404, "invalidChannel"},
		{"GET", "/ISAPI/Streaming/channels/101/requestKeyFrame", "pw", 405, "methodNotAllowed"},
		{"PUT", "/ISAPI/Streaming/channels/101/requestKeyFrame", "wrong", 401, "Unauthorized"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := digest.Do(srv.Client(), req, "admin", tc.pass)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.says) {
			t.Errorf("%s %s (%s): %d %s", tc.method, tc.path, tc.pass, resp.StatusCode, body)
		}
	}
	if strings.Join(got, ",") != "main,sub,main" {
		t.Errorf("keyframes asked for %v", got)
	}
}
