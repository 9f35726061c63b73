package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// The attack suite against the real binaries: firmware-sim, rendezvous and
// device-agent each run as a process on 127.0.0.1, and every attack an
// outside review found is a named case that must be refused. (The same
// rules are also tested in-process, faster, in rendezvous/server.)

type binSystem struct {
	base     string // the rendezvous's URL
	dataDir  string
	rv       *exec.Cmd
	agentID  string
	rvBin    string
	agentLog *syncBuffer
	// agent is the agent's process; agentBin and agentCfg start it again,
	// rvArgs the rendezvous (soak).
	agent              *exec.Cmd
	agentBin, agentCfg string
	rvArgs             []string
	// control is the simulator's fault endpoint, when asked for.
	control string
}

// binOptions says what startBinaries runs.
type binOptions struct {
	channels, maxViewers int
	simArgs, rvArgs      []string
	// agentYAML is added to the agent's config.
	agentYAML string
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startProc(t testing.TB, name string, out io.Writer, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { stopProcess(cmd, 5*time.Second) })
	return cmd
}

// startBinaries runs a 2-channel simulated NVR, a rendezvous with owners
// alice and bob, and an agent with maxViewers slots claimed by alice.
func startBinaries(t *testing.T, maxViewers int) *binSystem {
	t.Helper()
	return startBinariesWith(t, binOptions{channels: 2, maxViewers: maxViewers})
}

func startBinariesWith(t *testing.T, o binOptions) *binSystem {
	t.Helper()
	simBin, rvBin := goBuild(t, "../firmware-sim"), goBuild(t, "../rendezvous")
	agentBin := agentBinary(t, "amd64")
	dir := t.TempDir()
	logs := func(name string) io.Writer {
		if os.Getenv("PEERCAM_TEST_LOG") != "" {
			return os.Stderr
		}
		return io.Discard
	}
	simPort, httpPort := freePort(t), freePort(t)
	s := &binSystem{base: fmt.Sprintf("http://127.0.0.1:%d", httpPort), dataDir: filepath.Join(dir, "rv"), rvBin: rvBin, agentLog: &syncBuffer{}}
	simArgs := append([]string{"-listen", fmt.Sprintf("127.0.0.1:%d", simPort), "-channels", fmt.Sprint(o.channels)}, o.simArgs...)
	if slices.Contains(o.simArgs, "-control") {
		s.control = "http://" + o.simArgs[slices.Index(o.simArgs, "-control")+1]
	}
	startProc(t, "firmware-sim", logs("sim"), simBin, simArgs...)
	for _, u := range []string{"alice", "bob"} {
		cmd := exec.Command(rvBin, "user", "add", u, "-data", s.dataDir, "-password", u+"-password")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("user add %s: %v\n%s", u, err, out)
		}
	}
	s.rvArgs = append([]string{"-data", s.dataDir, "-http", fmt.Sprintf("127.0.0.1:%d", httpPort), "-stun", "off"}, o.rvArgs...)
	s.rv = startProc(t, "rendezvous", logs("rv"), rvBin, s.rvArgs...)
	waitFor(t, 10*time.Second, "rendezvous up", func() bool {
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	cfg := filepath.Join(dir, "agent.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf(`rendezvous: %s
state_dir: %s
webrtc_listen: 127.0.0.1:0
max_viewers: %d
nvr:
  url: rtsp://admin:admin@127.0.0.1:%d/Streaming/Channels/{channel}01
  channels: %d
  always_on: true
%s`, s.base, filepath.Join(dir, "state"), o.maxViewers, simPort, o.channels, o.agentYAML)), 0o600)
	s.agentBin, s.agentCfg = agentBin, cfg
	out, err := exec.Command(agentBin, "-config", cfg, "-print-id").Output()
	if err != nil {
		t.Fatalf("agent -print-id: %v", err)
	}
	s.agentID = strings.TrimSpace(string(out))
	var agentOut io.Writer = s.agentLog
	if os.Getenv("PEERCAM_TEST_LOG") != "" {
		agentOut = io.MultiWriter(s.agentLog, os.Stderr)
	}
	s.agent = startProc(t, "device-agent", agentOut, agentBin, "-config", cfg)
	waitFor(t, 15*time.Second, "agent registered and claimed", func() bool {
		return exec.Command(rvBin, "device", "claim", "-data", s.dataDir, "-user", "alice", s.agentID).Run() == nil
	})
	tok := s.login(t, "alice", "alice-password", "")
	waitFor(t, 10*time.Second, "agent online", func() bool {
		var devs []struct{ Online bool }
		s.api(t, tok, "GET", "/api/devices", nil, &devs)
		return len(devs) == 1 && devs[0].Online
	})
	return s
}

// login signs in from the address from (empty: 127.0.0.1) and returns the
// bearer token.
func (s *binSystem) login(t testing.TB, name, pw, from string) string {
	t.Helper()
	st, body := s.loginFrom(t, name, pw, from)
	if st != 200 {
		t.Fatalf("login %s: %d %v", name, st, body)
	}
	return body["token"].(string)
}

func (s *binSystem) loginFrom(t testing.TB, name, pw, from string) (int, map[string]any) {
	t.Helper()
	c := http.DefaultClient
	if from != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	b, _ := json.Marshal(map[string]string{"name": name, "password": pw})
	req, _ := http.NewRequest("POST", s.base+"/api/login", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-PeerCam-CSRF", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// api calls the owner API with a bearer token and decodes the answer.
func (s *binSystem) api(t testing.TB, token, method, path string, body, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, r)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// liveWHEP is a WHEP viewer that stays connected and counts video packets.
type liveWHEP struct {
	pc       *webrtc.PeerConnection
	loc      string
	packets  atomic.Int64
	lastRTP  atomic.Int64 // unix nanoseconds
	status   int
	errorRaw string
}

// openWHEP posts an offer with token; connect false leaves the answer
// unused, as a client that never connects.
func openWHEP(t *testing.T, s *binSystem, camera, token string, connect bool) *liveWHEP {
	t.Helper()
	pc := newLoopbackPC(t)
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	w := &liveWHEP{pc: pc}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			w.packets.Add(1)
			w.lastRTP.Store(time.Now().UnixNano())
		}
	})
	st, loc, answer := whepPost(t, s.base+"/whep/"+s.agentID+"/"+camera, token, pc)
	for i := 0; st == http.StatusTooManyRequests && i < 10; i++ {
		// The rendezvous limits session opens per address (one a second
		// past a burst), and every viewer here is 127.0.0.1.
		time.Sleep(time.Second)
		st, loc, answer = whepPostSDP(t, s.base+"/whep/"+s.agentID+"/"+camera, token, pc.LocalDescription().SDP)
	}
	w.status, w.loc = st, loc
	if st != http.StatusCreated {
		w.errorRaw = answer
		return w
	}
	if connect {
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *liveWHEP) code(t *testing.T) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(w.errorRaw), &e); err != nil {
		t.Fatalf("WHEP %d with a body that is not JSON: %q", w.status, w.errorRaw)
	}
	return e.Error
}

func (w *liveWHEP) waitVideo(t *testing.T) {
	t.Helper()
	waitFor(t, 15*time.Second, "video over WHEP", func() bool { return w.packets.Load() > 50 })
}

// whepPostSDP posts an offer already made.
func whepPostSDP(t *testing.T, url, token, sdp string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(sdp))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

// procHWM is a process's peak resident memory in MiB (VmHWM).
func procHWM(t *testing.T, pid int) float64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

func TestAttackSuiteBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binaries")
	}
	s := startBinaries(t, 4)
	alice := s.login(t, "alice", "alice-password", "")

	t.Run("login CSRF: a cross-site form cannot sign the victim in", func(t *testing.T) {
		req, _ := http.NewRequest("POST", s.base+"/api/login", strings.NewReader(`{"name":"alice","password":"alice-password"}`))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Origin", "https://evil.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("forged form: %d, cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
		}
	})

	t.Run("concurrent sign-ins keep memory bounded", func(t *testing.T) {
		before := procHWM(t, s.rv.Process.Pid)
		var wg sync.WaitGroup
		var busy atomic.Int32
		for i := 0; i < 32; i++ {
			wg.Go(func() {
				st, _ := s.loginFrom(t, fmt.Sprintf("nobody%d", i), "some-password", fmt.Sprintf("127.0.1.%d", i+1))
				if st == 429 {
					busy.Add(1)
				}
			})
		}
		wg.Wait()
		after := procHWM(t, s.rv.Process.Pid)
		t.Logf("rendezvous peak RSS %.0f MiB before, %.0f MiB after 32 concurrent sign-ins (%d got 429)", before, after, busy.Load())
		if after-before > 300 {
			t.Fatalf("32 concurrent sign-ins grew the peak RSS by %.0f MiB, want under 300", after-before)
		}
	})

	t.Run("owner not locked out by guesses from many addresses", func(t *testing.T) {
		for i := 2; i <= 12; i++ {
			if st, _ := s.loginFrom(t, "bob", "guess", fmt.Sprintf("127.0.2.%d", i)); st != 401 {
				t.Fatalf("guess %d: %d", i, st)
			}
		}
		if st, body := s.loginFrom(t, "bob", "bob-password", "127.0.2.50"); st != 200 {
			t.Fatalf("owner after 11 guesses from 11 addresses: %d %v", st, body)
		}
	})

	// Guesses sent all at once must not all pass the budget check before
	// the first of them is counted: no more are checked than one at a time
	// would get (five per account and address).
	t.Run("parallel guesses from one address get no more than sequential ones", func(t *testing.T) {
		var wg sync.WaitGroup
		var checked, refused atomic.Int32
		for range 20 {
			wg.Go(func() {
				switch st, _ := s.loginFrom(t, "bob", "guess", "127.0.3.1"); st {
				case 401:
					checked.Add(1)
				case 429:
					refused.Add(1)
				default:
					t.Errorf("a guess: %d", st)
				}
			})
		}
		wg.Wait()
		t.Logf("20 parallel guesses: %d checked, %d refused", checked.Load(), refused.Load())
		if checked.Load() > 5 {
			t.Fatalf("20 parallel guesses from one address: %d passwords checked, want at most 5", checked.Load())
		}
		if st, body := s.loginFrom(t, "bob", "bob-password", "127.0.3.2"); st != 200 {
			t.Fatalf("owner from another address after the parallel guesses: %d %v", st, body)
		}
	})

	t.Run("logout ends the session on the server", func(t *testing.T) {
		tok := s.login(t, "bob", "bob-password", "127.0.2.51")
		req, _ := http.NewRequest("POST", s.base+"/api/logout", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-PeerCam-CSRF", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if st := s.api(t, tok, "GET", "/api/me", nil, nil); st != 401 {
			t.Fatalf("token after logout: %d, want 401", st)
		}
	})

	var share, minted struct{ ID, Token string }
	if st := s.api(t, alice, "POST", "/api/shares", map[string]any{"device": s.agentID, "cameras": []string{"1"}, "ttl_seconds": 30 * 86400, "max_viewers": 0}, &share); st != 201 {
		t.Fatalf("share: %d", st)
	}
	if st := s.api(t, alice, "POST", "/api/devices/"+s.agentID+"/tokens", map[string]any{"cameras": []string{"1"}, "ttl_seconds": 30 * 86400}, &minted); st != 200 {
		t.Fatalf("mint: %d", st)
	}

	t.Run("WHEP DELETE with another identity is refused", func(t *testing.T) {
		w := openWHEP(t, s, "1", share.Token, true)
		if w.status != 201 {
			t.Fatalf("WHEP: %d %s", w.status, w.errorRaw)
		}
		w.waitVideo(t)
		for name, cred := range map[string]string{"another token": minted.Token, "the owner's login": alice} {
			req, _ := http.NewRequest("DELETE", s.base+w.loc, nil)
			req.Header.Set("Authorization", "Bearer "+cred)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Fatalf("DELETE with %s: %d, want 404", name, resp.StatusCode)
			}
		}
		n := w.packets.Load()
		time.Sleep(500 * time.Millisecond)
		if w.packets.Load() <= n {
			t.Fatal("video stopped after a foreign DELETE")
		}
		req, _ := http.NewRequest("DELETE", s.base+w.loc, nil)
		req.Header.Set("Authorization", "Bearer "+share.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("DELETE with the opener's token: %d", resp.StatusCode)
		}
	})

	t.Run("guests that never connect cannot take the owner's slot", func(t *testing.T) {
		// max_viewers 4: three guest slots, one kept for the owner.
		for i := 0; i < 3; i++ {
			if w := openWHEP(t, s, "1", minted.Token, false); w.status != 201 {
				t.Fatalf("guest offer %d: %d %s", i, w.status, w.errorRaw)
			}
		}
		w := openWHEP(t, s, "1", minted.Token, false)
		if w.status != 503 || w.code(t) != "rate_limited" {
			t.Fatalf("4th guest: %d %s, want 503 rate_limited", w.status, w.errorRaw)
		}
		own := openWHEP(t, s, "1", alice, true)
		if own.status != 201 {
			t.Fatalf("owner's WHEP with guests holding every other slot: %d %s", own.status, own.errorRaw)
		}
		own.waitVideo(t)
		// Offers that never connect give their slots back after 10 s.
		waitFor(t, 20*time.Second, "a guest slot freed by the connect timeout", func() bool {
			time.Sleep(time.Second)
			g := openWHEP(t, s, "1", minted.Token, false)
			return g.status == 201
		})
	})

	t.Run("old owner's share and token open nothing after removal and a new claim", func(t *testing.T) {
		w := openWHEP(t, s, "1", share.Token, true)
		if w.status != 201 {
			t.Fatalf("WHEP with the share before removal: %d %s", w.status, w.errorRaw)
		}
		w.waitVideo(t)
		removed := time.Now()
		var rm map[string]any
		if st := s.api(t, alice, "DELETE", "/api/devices/"+s.agentID, nil, &rm); st != 200 {
			t.Fatalf("remove: %d %v", st, rm)
		}
		waitFor(t, 5*time.Second, "video to stop", func() bool {
			return time.Since(time.Unix(0, w.lastRTP.Load())) > 500*time.Millisecond
		})
		if stopped := time.Unix(0, w.lastRTP.Load()).Sub(removed); stopped > 2*time.Second {
			t.Fatalf("video went on for %v after the removal, want under 2 s", stopped)
		}
		if out, err := exec.Command(s.rvBin, "device", "claim", "-data", s.dataDir, "-user", "bob", s.agentID).CombinedOutput(); err != nil {
			t.Fatalf("bob claims: %v\n%s", err, out)
		}
		waitFor(t, 5*time.Second, "agent told of its new owner", func() bool { return strings.Contains(s.agentLog.String(), "now belongs to bob") })
		for name, tok := range map[string]string{"old share": share.Token, "old minted token": minted.Token} {
			w := openWHEP(t, s, "1", tok, true)
			if w.status != 403 || w.code(t) != "revoked" {
				t.Fatalf("%s on bob's device: %d %s, want 403 revoked", name, w.status, w.errorRaw)
			}
		}
		bob := s.login(t, "bob", "bob-password", "127.0.2.52")
		var fresh struct{ Token string }
		if st := s.api(t, bob, "POST", "/api/devices/"+s.agentID+"/tokens", map[string]any{"cameras": []string{"1"}, "ttl_seconds": 600}, &fresh); st != 200 {
			t.Fatalf("bob mints: %d", st)
		}
		if w := openWHEP(t, s, "1", fresh.Token, true); w.status != 201 {
			t.Fatalf("bob's own token: %d %s", w.status, w.errorRaw)
		} else {
			w.waitVideo(t)
		}
	})
}
