package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ownerAPI is the owner's API client, signed in with a bearer token.
type ownerAPI struct {
	t     testing.TB
	base  string
	token string
}

func signInAPI(t testing.TB, sys *system) *ownerAPI {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	b, _ := json.Marshal(map[string]string{"name": ownerName, "password": ownerPass})
	req, _ := http.NewRequest("POST", sys.rv.URL()+"/api/login", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-PeerCam-CSRF", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		t.Fatalf("login: %v", err)
	}
	return &ownerAPI{t: t, base: sys.rv.URL(), token: out.Token}
}

func (o *ownerAPI) call(method, path string, body any, out any) int {
	o.t.Helper()
	var buf bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&buf).Encode(body)
	}
	req, _ := http.NewRequest(method, o.base+path, &buf)
	req.Header.Set("Authorization", "Bearer "+o.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

type createdShare struct {
	ID, Token, Link string
	Expires         time.Time
}

func (o *ownerAPI) share(device string, cameras []string, ttl time.Duration, maxViewers int) createdShare {
	o.t.Helper()
	var sh createdShare
	if st := o.call("POST", "/api/shares", map[string]any{"device": device, "cameras": cameras,
		"ttl_seconds": int(ttl.Seconds()), "max_viewers": maxViewers, "label": "plumber"}, &sh); st != http.StatusCreated {
		o.t.Fatalf("create share: %d", st)
	}
	return sh
}

// revokedShown is true once the page says its share was revoked, in a box
// with nothing else in it (no Retry, no stray "null").
const revokedShown = `(() => { const o = document.querySelector('.overlay.err');
	return document.body.textContent.includes('This share was revoked') && o && !o.textContent.includes('null') && !o.querySelector('button'); })()`

// A guest link opens on a phone and plays; when the owner revokes it, the
// video stops within 2 seconds and the page says why.
func TestBrowserGuestShareRevoked(t *testing.T) {
	sys := startSystem(t)
	owner := signInAPI(t, sys)
	sh := owner.share(sys.agent.ID(), []string{"2"}, time.Hour, 2)
	ctx := chromium(t)
	do(t, ctx, 30*time.Second, "guest link plays",
		evalJS(`location.href = '`+sh.Link+`'`),
		waitJS(`(() => { const s = window.peercam && window.peercam.sessions()[0]; return s && s.framesDecoded > 10 && s.width === 1280; })()`),
	)
	screenshot(t, ctx, "guest-live")

	var list []struct {
		ID         string `json:"id"`
		ViewersNow int    `json:"viewers_now"`
		Active     bool   `json:"active"`
		Label      string `json:"label"`
	}
	owner.call("GET", "/api/shares", nil, &list)
	if len(list) != 1 || list[0].ID != sh.ID || list[0].ViewersNow != 1 || !list[0].Active || list[0].Label != "plumber" {
		t.Fatalf("owner's share list %+v", list)
	}

	revoked := time.Now()
	if st := owner.call("DELETE", "/api/shares/"+sh.ID, nil, nil); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	do(t, ctx, 2*time.Second, "guest page says the share was revoked",
		waitJS(revokedShown))
	t.Logf("revoked share: guest page told after %v", time.Since(revoked).Round(time.Millisecond))
	waitFor(t, 2*time.Second-time.Since(revoked), "agent closed the guest's peer connection", func() bool {
		return sys.agent.Stream("2", "main").Stats().Viewers == 0
	})
	screenshot(t, ctx, "guest-revoked")

	// The owner's audit log tells the story.
	var page struct {
		Events []struct {
			Kind       string `json:"kind"`
			Actor      string `json:"actor"`
			Camera     string `json:"camera"`
			Detail     string `json:"detail"`
			DurationMS int64  `json:"duration_ms"`
		} `json:"events"`
	}
	waitFor(t, 5*time.Second, "audit log of the guest session", func() bool {
		owner.call("GET", "/api/audit", nil, &page)
		kinds := map[string]bool{}
		for _, e := range page.Events {
			if e.Kind == "session_closed" && (e.DurationMS <= 0 || e.Camera != "2" || e.Actor != "guest share “plumber”" ||
				!strings.HasPrefix(e.Detail, "direct (")) {
				t.Fatalf("closed session in the audit log: %+v", e)
			}
			kinds[e.Kind] = true
		}
		return kinds["login"] && kinds["share_created"] && kinds["session_opened"] && kinds["session_closed"] && kinds["share_revoked"]
	})

	// The link is dead for new sessions too.
	do(t, ctx, 10*time.Second, "revoked link refused on reload",
		chromedp.Reload(),
		waitJS(revokedShown))
}

// The owner creates, lists and revokes a share in the web app.
func TestBrowserOwnerManagesShares(t *testing.T) {
	sys := startSystem(t)
	ctx := chromium(t)
	signIn(t, ctx, sys)
	do(t, ctx, 20*time.Second, "create a share in the web app",
		evalJS(`location.hash = '#/d/`+sys.agent.ID()+`/share'`),
		chromedp.WaitVisible(`input[name=label]`),
		chromedp.SendKeys(`input[name=label]`, "neighbour"),
		chromedp.Click(`button[type=submit]`),
		waitJS(`(document.querySelector('input[aria-label="Share link"]') || {}).value?.includes('/s/#')`),
	)
	screenshot(t, ctx, "owner-share-created")
	do(t, ctx, 10*time.Second, "share listed",
		evalJS(`location.hash = '#/shares'`),
		waitJS(`document.body.textContent.includes('neighbour') && document.body.textContent.includes('0 watching now')`),
	)
	screenshot(t, ctx, "owner-shares")
	do(t, ctx, 10*time.Second, "revoke from the list",
		chromedp.Click(`.share button`),
		waitJS(`document.body.textContent.includes('revoked') && !document.querySelector('.share button')`),
	)
	do(t, ctx, 10*time.Second, "activity log page",
		evalJS(`location.hash = '#/audit'`),
		waitJS(`document.body.textContent.includes('Share revoked') && document.body.textContent.includes('Share created') && document.body.textContent.includes('Signed in')`),
	)
	screenshot(t, ctx, "owner-audit")
	owner := signInAPI(t, sys)
	var list []struct {
		Label  string `json:"label"`
		Active bool   `json:"active"`
	}
	owner.call("GET", "/api/shares", nil, &list)
	if len(list) != 1 || list[0].Label != "neighbour" || list[0].Active {
		t.Fatalf("after revoking in the web app the API lists %+v", list)
	}
}
