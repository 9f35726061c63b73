package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/peercam/peercam/internal/lab"
	"github.com/peercam/peercam/rendezvous/server"
)

// labBinaries are the real binaries the NAT lab runs in its namespaces.
type labBinaries struct{ rendezvous, sim, agent string }

func buildLabBinaries(t testing.TB) labBinaries {
	t.Helper()
	return labBinaries{goBuild(t, "../rendezvous"), goBuild(t, "../firmware-sim"), agentBinary(t, runtime.GOARCH)}
}

// natCell is one cell of the NAT matrix.
type natCell struct {
	Agent, Viewer lab.NAT
	// TURN runs coturn on the public segment and configures the rendezvous
	// to hand out credentials for it.
	TURN bool
	// Router runs miniupnpd on the home router with these services, and
	// Mapping is the agent's port_mapping setting (default "off", so that
	// cells without a router measure hole punching alone).
	Router  lab.Router
	Mapping string
}

func (c natCell) String() string {
	s := fmt.Sprintf("agent %s, viewer %s", c.Agent, c.Viewer)
	if h := c.helpers(); h != "-" {
		s += ", " + h
	}
	return s
}

// helpers names the cell's TURN relay and router mapping, for the matrix.
func (c natCell) helpers() string {
	var h []string
	if c.TURN {
		h = append(h, "TURN")
	}
	if r := c.Router.String(); r != "" {
		h = append(h, r)
	}
	if len(h) == 0 {
		return "-"
	}
	return strings.Join(h, ", ")
}

// labRun is a whole PeerCam in a NAT lab: rendezvous on the public segment,
// firmware-sim and agent behind the home router.
type labRun struct {
	lab      *lab.Lab
	dataDir  string
	deviceID string
	token    string
	procs    []*exec.Cmd
	logs     []*syncBuffer
	names    []string
}

const labTURNSecret = "peercam-lab-secret"

func startLab(t testing.TB, cell natCell) *labRun {
	t.Helper()
	bins := buildLabBinaries(t)
	l, err := lab.New(lab.Config{AgentNAT: cell.Agent, ViewerNAT: cell.Viewer})
	if err != nil {
		t.Fatal(err)
	}
	r := &labRun{lab: l, dataDir: t.TempDir()}
	t.Cleanup(r.close)
	t.Cleanup(func() {
		if t.Failed() {
			for i, b := range r.logs {
				t.Logf("--- %s log:\n%s", r.names[i], b)
			}
		}
	})
	dir := t.TempDir()
	rvArgs := []string{"-data", r.dataDir, "-http", lab.RendezvousAddr + ":8080", "-stun", lab.RendezvousAddr + ":3478"}
	if cell.TURN {
		secretFile := filepath.Join(dir, "turn-secret")
		os.WriteFile(secretFile, []byte(labTURNSecret), 0o600)
		rvArgs = append(rvArgs, "-turn-url", "turn:"+lab.TURNAddr+":3478?transport=udp", "-turn-secret-file", secretFile)
		r.start(t, "coturn", l.TURN, "turnserver", "-n", "--listening-ip="+lab.TURNAddr, "--relay-ip="+lab.TURNAddr,
			"--use-auth-secret", "--static-auth-secret="+labTURNSecret, "--realm=peercam.lab", "--no-tls", "--no-dtls",
			"--no-cli", "--log-file=stdout", "--simple-log", "--pidfile="+filepath.Join(dir, "turn.pid"))
	}
	if err := server.AddUser(context.Background(), r.dataDir, ownerName, ownerPass); err != nil {
		t.Fatal(err)
	}
	r.start(t, "rendezvous", l.RV, bins.rendezvous, rvArgs...)
	if cell.Router != (lab.Router{}) {
		cmd, err := l.MiniUPnPd(cell.Router, dir)
		if err != nil {
			t.Fatal(err)
		}
		r.startCmd(t, "miniupnpd", cmd)
	}
	r.start(t, "firmware-sim", l.Home, bins.sim, "-listen", "127.0.0.1:8554", "-channels", "1", "-main-kbps", "3000")
	mapping := cell.Mapping
	if mapping == "" {
		mapping = "off"
	}
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`rendezvous: http://%s:8080
insecure_rendezvous: true
state_dir: %s
webrtc_listen: 0.0.0.0:8189
port_mapping: %s
port_mapping_lease: 4s
cameras:
  - url: rtsp://admin:admin@127.0.0.1:8554/Streaming/Channels/101
    always_on: true
`, lab.RendezvousAddr, filepath.Join(dir, "state"), mapping)), 0o600)
	out, err := exec.Command(bins.agent, "-config", cfg, "-print-id").Output()
	if err != nil {
		t.Fatal(err)
	}
	r.deviceID = strings.TrimSpace(string(out))
	r.start(t, "agent", l.Home, bins.agent, "-config", cfg)
	waitFor(t, 20*time.Second, "agent registered through its NAT", func() bool {
		var b bytes.Buffer
		_ = server.ListDevices(context.Background(), r.dataDir, &b)
		return strings.Contains(b.String(), r.deviceID)
	})
	if err := server.ClaimDevice(context.Background(), r.dataDir, ownerName, r.deviceID, "Lab NVR"); err != nil {
		t.Fatal(err)
	}
	r.token, err = mintToken(context.Background(), r.dataDir, r.deviceID, []string{"1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *labRun) start(t testing.TB, name, ns, bin string, args ...string) {
	t.Helper()
	r.startCmd(t, name, r.lab.Command(ns, bin, args...))
}

func (r *labRun) startCmd(t testing.TB, name string, cmd *exec.Cmd) {
	t.Helper()
	buf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	r.procs = append(r.procs, cmd)
	r.logs = append(r.logs, buf)
	r.names = append(r.names, name)
}

// log returns a process's output so far.
func (r *labRun) log(name string) string {
	for i, n := range r.names {
		if n == name {
			return r.logs[i].String()
		}
	}
	return ""
}

// stop stops one process (SIGINT, then SIGKILL after 5 s).
func (r *labRun) stop(name string) {
	for i, n := range r.names {
		if n == name {
			stopProcess(r.procs[i], 5*time.Second)
		}
	}
}

func (r *labRun) close() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		stopProcess(r.procs[i], 5*time.Second)
	}
	r.lab.Close()
}

// view runs the Go viewer in the viewer's namespace.
func (r *labRun) view(t testing.TB, frames int, hold time.Duration) labViewerResult {
	t.Helper()
	return r.viewStart(t, frames, hold)()
}

// viewBrowser watches in headless Chromium in the viewer's namespace, and
// saves a screenshot as e2e/artifacts/<name>.png.
func (r *labRun) viewBrowser(t testing.TB, name string) labViewerResult {
	t.Helper()
	if err := os.MkdirAll("artifacts", 0o755); err != nil {
		t.Fatal(err)
	}
	shot, _ := filepath.Abs(filepath.Join("artifacts", name+".png"))
	res := r.run(t, labViewerRequest{Rendezvous: fmt.Sprintf("http://%s:8080", lab.RendezvousAddr),
		Device: r.deviceID, Camera: "1", Token: r.token, Timeout: 40 * time.Second, Browser: true, Screenshot: shot})()
	t.Logf("screenshot: e2e/artifacts/%s.png", name)
	return res
}

// viewStart starts the Go viewer in the viewer's namespace; the function it
// returns waits for the viewer's result.
func (r *labRun) viewStart(t testing.TB, frames int, hold time.Duration) func() labViewerResult {
	t.Helper()
	return r.run(t, labViewerRequest{Rendezvous: fmt.Sprintf("http://%s:8080", lab.RendezvousAddr),
		Device: r.deviceID, Camera: "1", Token: r.token, Frames: frames, Hold: hold, Timeout: 25*time.Second + hold})
}

// run starts this test binary as a lab viewer in the viewer's namespace.
func (r *labRun) run(t testing.TB, req labViewerRequest) func() labViewerResult {
	t.Helper()
	spec, _ := json.Marshal(req)
	cmd := r.lab.Command(r.lab.Viewer, os.Args[0])
	cmd.Env = append(os.Environ(), labViewerEnv+"="+string(spec))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("lab viewer: %v", err)
	}
	return func() labViewerResult {
		t.Helper()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("lab viewer: %v\n%s", err, stderr.String())
		}
		var res labViewerResult
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("lab viewer said %q: %v", stdout.Bytes(), err)
		}
		return res
	}
}

// The NAT matrix: each (agent NAT × viewer NAT) cell connects directly
// unless both sides are symmetric; symmetric on both sides connects through
// the TURN relay when one is configured.
func TestNATMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces")
	}
	var cells []natCell
	for _, a := range lab.NATs {
		for _, v := range lab.NATs {
			cells = append(cells, natCell{Agent: a, Viewer: v})
		}
	}
	cells = append(cells,
		natCell{Agent: lab.NATSymmetric, Viewer: lab.NATSymmetric, TURN: true},
		natCell{Agent: lab.NATSymmetric, Viewer: lab.NATSymmetric, Router: lab.Router{UPnP: true, NATPMP: true}, Mapping: "auto"})
	var table []string
	for _, cell := range cells {
		t.Run(strings.ReplaceAll(cell.String(), " ", "_"), func(t *testing.T) {
			r := startLab(t, cell)
			res := r.view(t, 10, 0)
			row := fmt.Sprintf("| %-9s | %-9s | %-24s | %-9s | %-8s | %-13s | %9s |", cell.Agent, cell.Viewer, cell.helpers(),
				yesNo(res.Connected && res.Error == ""), pathKind(res), res.LocalType+"/"+res.RemoteType, res.FirstFrame.Round(time.Millisecond))
			table = append(table, row)
			t.Logf("%s: timeline %v", cell, res.Timeline)
			bothSymmetric := cell.Agent == lab.NATSymmetric && cell.Viewer == lab.NATSymmetric
			mapped := cell.Router != (lab.Router{})
			switch {
			case bothSymmetric && mapped:
				// The viewer reaches the router's forwarded port.
				if res.Error != "" || res.Relayed() || res.RemoteType != "srflx" {
					t.Fatalf("want direct video to the mapped port: %+v", res)
				}
			case bothSymmetric && !cell.TURN:
				// Signaling must work, so that the failure is ICE's.
				if !res.Answered || res.Connected || res.Frames > 0 {
					t.Fatalf("want an answered offer and no connection: %+v", res)
				}
			case bothSymmetric && cell.TURN:
				if res.Error != "" || !res.Relayed() {
					t.Fatalf("want relayed video: %+v", res)
				}
			default:
				if res.Error != "" || res.Relayed() {
					t.Fatalf("want direct video: %+v", res)
				}
			}
			if res.Error == "" && (res.Width != 1280 || res.Height != 720) {
				t.Fatalf("decoded %dx%d", res.Width, res.Height)
			}
		})
	}
	t.Log("\n| agent NAT | viewer NAT | helpers                  | connected | path     | local/remote  | 1st frame |\n" +
		"|---|---|---|---|---|---|---|\n" + strings.Join(table, "\n"))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func pathKind(r labViewerResult) string {
	switch {
	case !r.Connected || r.Error != "":
		return "-"
	case r.Relayed():
		return "relayed"
	}
	return "direct"
}

// No media passes through the rendezvous: while a viewer watches for 10 s,
// directly or through the relay, the rendezvous's network interface carries
// under 1% of the bytes of video the viewer receives (signaling and
// keepalives only).
func TestMediaBypassesRendezvous(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces")
	}
	for _, cell := range []natCell{
		{Agent: lab.NATCone, Viewer: lab.NATCone},
		{Agent: lab.NATSymmetric, Viewer: lab.NATSymmetric, TURN: true},
	} {
		t.Run(strings.ReplaceAll(cell.String(), " ", "_"), func(t *testing.T) {
			r := startLab(t, cell)
			rx0, tx0, err := r.lab.Bytes(r.lab.RV, "wan")
			if err != nil {
				t.Fatal(err)
			}
			res := r.view(t, 1, 10*time.Second)
			rx1, tx1, err := r.lab.Bytes(r.lab.RV, "wan")
			if err != nil {
				t.Fatal(err)
			}
			if res.Error != "" {
				t.Fatalf("viewer: %+v", res)
			}
			rv := (rx1 - rx0) + (tx1 - tx0)
			share := float64(rv) / float64(res.MediaBytes)
			t.Logf("%s: viewer received %d media bytes (%s path); the rendezvous's interface carried %d bytes (%.3f%%)",
				cell, res.MediaBytes, pathKind(res), rv, 100*share)
			if res.MediaBytes < 500_000 {
				t.Fatalf("only %d media bytes in 10 s: the measurement means nothing", res.MediaBytes)
			}
			if share >= 0.01 {
				t.Fatalf("the rendezvous carried %d bytes, %.2f%% of the %d media bytes: media is passing through it", rv, 100*share, res.MediaBytes)
			}
		})
	}
}

// Real Chromium, from the viewer's namespace, through the guest page:
// direct between cone NATs and to a phone behind a carrier's symmetric NAT,
// and relayed (and saying so on the page) when both sides are symmetric.
func TestNATBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces")
	}
	for _, cell := range []natCell{
		{Agent: lab.NATCone, Viewer: lab.NATCone},
		{Agent: lab.NATCone, Viewer: lab.NATSymmetric},
		{Agent: lab.NATSymmetric, Viewer: lab.NATSymmetric, TURN: true},
	} {
		name := strings.ReplaceAll(strings.ReplaceAll(cell.String(), ", ", "-"), " ", "_")
		t.Run(name, func(t *testing.T) {
			r := startLab(t, cell)
			res := r.viewBrowser(t, "lab-"+name)
			t.Logf("%s: %s %s/%s, first frame %s; page: %q", cell, pathKind(res), res.LocalType, res.RemoteType,
				res.FirstFrame.Round(time.Millisecond), res.PageStatus)
			if res.Error != "" || res.Width != 1280 {
				t.Fatalf("browser: %+v", res)
			}
			relayed := cell.TURN
			if res.Relayed() != relayed {
				t.Fatalf("relayed %v, want %v: %+v", res.Relayed(), relayed, res)
			}
			if word := map[bool]string{true: "Relayed", false: "Direct"}[relayed]; !strings.Contains(res.PageStatus, word) {
				t.Fatalf("the page does not say %q: %q", word, res.PageStatus)
			}
		})
	}
}
