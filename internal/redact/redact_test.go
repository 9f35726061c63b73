package redact

import "testing"

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"rtsp://admin:hunter2@192.168.1.64/Streaming/Channels/101":  "rtsp://admin:xxxxx@192.168.1.64/Streaming/Channels/101",
		"postgres://peercam:s3cret@db:5432/peercam?sslmode=disable": "postgres://peercam:xxxxx@db:5432/peercam?sslmode=disable",
		"rtsp://admin@cam/live": "rtsp://admin@cam/live",
		"/var/lib/peercam":      "/var/lib/peercam",
		"::not a url":           "::not a url",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}
