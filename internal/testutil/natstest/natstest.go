// Package natstest runs Debian's nats-server for tests, on a free loopback
// port, as a process the test starts and stops.
package natstest

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Server is a running nats-server.
type Server struct {
	URL string
	cmd *exec.Cmd
}

// Start runs nats-server until the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		tb.Fatal("natstest: nats-server is not installed (Debian: apt-get install nats-server, or make deps)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "--no_advertise")
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	s := &Server{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), cmd: cmd}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			tb.Fatalf("natstest: nats-server did not listen on %d: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
