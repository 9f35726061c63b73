package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peercam/peercam/internal/testutil/pgtest"
	"github.com/peercam/peercam/proto"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// backends opens a fresh, empty store of each kind: SQLite in a temporary
// directory and PostgreSQL in a new database on the test cluster.
var backends = []struct {
	name string
	open func(t *testing.T) string
}{
	{"sqlite", func(t *testing.T) string { return t.TempDir() }},
	{"postgres", func(t *testing.T) string { return pgtest.Database(t) }},
}

// TestStore is the store's behaviour, the same on both databases.
func TestStore(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, st *Store, where string)
	}{
		{"users", testUsers},
		{"devices", testDevices},
		{"claim-remove-revokes", testClaimRemoveRevokes},
		{"claim-codes-and-setup-tokens", testOneTimeSecrets},
		{"shares-and-tokens", testSharesAndTokens},
		{"logins", testLogins},
		{"audit", testAudit},
		{"kv", testKV},
		{"expire-unclaimed", testExpireUnclaimed},
		{"migrate", testMigrate},
		{"concurrent-claims", testConcurrentClaims},
		{"viewer-slots", testViewerSlots},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					where := b.open(t)
					st, err := Open(where)
					if err != nil {
						t.Fatal(err)
					}
					defer st.Close()
					if st.Postgres() != (b.name == "postgres") {
						t.Fatalf("opened %q as the wrong database", where)
					}
					c.run(t, st, where)
				})
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testUsers(t *testing.T, st *Store, _ string) {
	ctx := context.Background()
	must(t, st.PutSetupToken(ctx, "setup", time.Now().Add(time.Hour)))
	a, err := st.AddUser(ctx, "alice", "h1")
	must(t, err)
	b, err := st.AddUser(ctx, "bob", "h2")
	must(t, err)
	if a.ID == 0 || b.ID == a.ID {
		t.Fatalf("user ids %d, %d", a.ID, b.ID)
	}
	if ok, _ := st.SetupTokenValid(ctx, "setup"); ok {
		t.Fatal("a setup token outlived the first owner")
	}
	if _, err := st.AddUser(ctx, "alice", "x"); !errors.Is(err, ErrExists) {
		t.Fatalf("second alice: %v", err)
	}
	if u, err := st.UserByName(ctx, "bob"); err != nil || u.ID != b.ID || u.PWHash != "h2" {
		t.Fatalf("bob by name: %+v %v", u, err)
	}
	if u, err := st.UserByID(ctx, a.ID); err != nil || u.Name != "alice" {
		t.Fatalf("alice by id: %+v %v", u, err)
	}
	if _, err := st.UserByName(ctx, "carol"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("carol: %v", err)
	}
	if n, err := st.UserCount(ctx); err != nil || n != 2 {
		t.Fatalf("count %d %v", n, err)
	}
	must(t, st.AddLogin(ctx, Login{ID: "l1", UserID: a.ID, Created: time.Now(), Expires: time.Now().Add(time.Hour)}))
	if n, err := st.SetPassword(ctx, a.ID, "h3"); err != nil || n != 1 {
		t.Fatalf("set password ended %d sign-ins (%v), want 1", n, err)
	}
	if u, _ := st.UserByID(ctx, a.ID); u.PWHash != "h3" {
		t.Fatalf("password not changed: %+v", u)
	}
	if _, err := st.SetPassword(ctx, 9999, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("password of nobody: %v", err)
	}
}

func testDevices(t *testing.T, st *Store, _ string) {
	ctx := context.Background()
	cams := []proto.Camera{{ID: "1", Name: "Door", HasSub: true}}
	d, err := st.RegisterDevice(ctx, "dev1", []byte{1, 2, 3}, cams)
	must(t, err)
	if d.ID != "dev1" || string(d.PublicKey) != "\x01\x02\x03" || len(d.Cameras) != 1 || d.Cameras[0].Name != "Door" || d.OwnerID != 0 {
		t.Fatalf("registered: %+v", d)
	}
	if _, err := st.RegisterDevice(ctx, "dev1", []byte{9}, nil); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("another key: %v", err)
	}
	d, err = st.RegisterDevice(ctx, "dev1", []byte{1, 2, 3}, []proto.Camera{{ID: "1"}, {ID: "2"}})
	if err != nil || len(d.Cameras) != 2 {
		t.Fatalf("re-register with new cameras: %+v %v", d, err)
	}
	must(t, st.TouchDevice(ctx, "dev1"))
	if _, err := st.Device(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
	u, _ := st.AddUser(ctx, "alice", "x")
	_, _ = st.RegisterDevice(ctx, "dev2", []byte{4}, nil)
	must(t, st.ClaimDevice(ctx, "dev2", u.ID, "Shop"))
	mine, err := st.Devices(ctx, u.ID)
	if err != nil || len(mine) != 1 || mine[0].ID != "dev2" || mine[0].Name != "Shop" || mine[0].OwnerName != "alice" || mine[0].ClaimedAt.IsZero() {
		t.Fatalf("alice's devices: %+v %v", mine, err)
	}
	all, _ := st.Devices(ctx, -1)
	if len(all) != 2 {
		t.Fatalf("all devices: %d", len(all))
	}
	owners, err := st.Owners(ctx, []string{"dev1", "dev2", "ghost"})
	if err != nil || len(owners) != 2 || owners["dev2"].OwnerID != u.ID || owners["dev1"].OwnerID != 0 {
		t.Fatalf("owners: %+v %v", owners, err)
	}
	if err := st.ClaimDevice(ctx, "ghost", u.ID, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim unknown: %v", err)
	}
}

// Claim, remove, claim again: each claim has its own ID, and removal
// revokes what was issued under the last one.
func testClaimRemoveRevokes(t *testing.T, st *Store, _ string) {
	ctx := context.Background()
	u, _ := st.AddUser(ctx, "alice", "x")
	if _, err := st.RegisterDevice(ctx, "dev", []byte{1}, nil); err != nil {
		t.Fatal(err)
	}
	e0, _ := st.Epoch(ctx)
	if err := st.ClaimDevice(ctx, "dev", u.ID, ""); err != nil {
		t.Fatal(err)
	}
	first, _ := st.Device(ctx, "dev")
	_ = st.AddShare(ctx, Share{ID: "s1", OwnerID: u.ID, DeviceID: "dev", Created: time.Now(), Expires: time.Now().Add(time.Hour)})
	_ = st.AddToken(ctx, Token{ID: "t1", OwnerID: u.ID, DeviceID: "dev", Created: time.Now(), Expires: time.Now().Add(time.Hour)})
	if err := st.ClaimDevice(ctx, "dev", u.ID, ""); !errors.Is(err, ErrClaimed) {
		t.Fatalf("claiming a claimed device: %v", err)
	}
	n, err := st.RemoveDevice(ctx, "dev", u.ID)
	if err != nil || n != 2 {
		t.Fatalf("remove revoked %d (%v), want 2", n, err)
	}
	if e1, _ := st.Epoch(ctx); e1 < e0+2 {
		t.Fatalf("epoch %d → %d: claim and removal must bump it", e0, e1)
	}
	revoked, _ := st.RevokedAmong(ctx, []string{"s1", "t1", "unknown"})
	if len(revoked) != 3 {
		t.Fatalf("revoked among: %v, want all three", revoked)
	}
	_ = st.ClaimDevice(ctx, "dev", u.ID, "")
	second, _ := st.Device(ctx, "dev")
	if second.ClaimID == "" || second.ClaimID == first.ClaimID {
		t.Fatalf("claim IDs %q then %q: each claim needs its own", first.ClaimID, second.ClaimID)
	}
	if _, err := st.RemoveDevice(ctx, "dev", u.ID+1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removal by another owner: %v", err)
	}
}

func testOneTimeSecrets(t *testing.T, st *Store, _ string) {
	ctx := context.Background()
	_, _ = st.RegisterDevice(ctx, "dev", []byte{1}, nil)
	must(t, st.PutClaimCode(ctx, "dev", "OLD-CODE", time.Now().Add(time.Hour)))
	must(t, st.PutClaimCode(ctx, "dev", "NEW-CODE", time.Now().Add(time.Hour)))
	if _, err := st.TakeClaimCode(ctx, "OLD-CODE"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a replaced code still works: %v", err)
	}
	if dev, err := st.TakeClaimCode(ctx, "NEW-CODE"); err != nil || dev != "dev" {
		t.Fatalf("take: %q %v", dev, err)
	}
	if _, err := st.TakeClaimCode(ctx, "NEW-CODE"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a code worked twice: %v", err)
	}
	must(t, st.PutClaimCode(ctx, "dev", "STALE", time.Now().Add(-time.Second)))
	if _, err := st.TakeClaimCode(ctx, "STALE"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an expired code works: %v", err)
	}
	must(t, st.PutSetupToken(ctx, "tok", time.Now().Add(time.Hour)))
	if ok, err := st.SetupTokenValid(ctx, "tok"); !ok || err != nil {
		t.Fatalf("valid: %v %v", ok, err)
	}
	must(t, st.TakeSetupToken(ctx, "tok"))
	if err := st.TakeSetupToken(ctx, "tok"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("setup token twice: %v", err)
	}
}

func testSharesAndTokens(t *testing.T, st *Store, _ string) {
	ctx := context.Background()
	u, _ := st.AddUser(ctx, "alice", "x")
	other, _ := st.AddUser(ctx, "mallory", "x")
	now := time.Now().Truncate(time.Second)
	must(t, st.AddShare(ctx, Share{ID: "sh1", OwnerID: u.ID, DeviceID: "dev", Cameras: []string{"1", "2"}, Perms: []string{"live"},
		Label: "Nanny", MaxViewers: 2, Created: now, Expires: now.Add(time.Hour)}))
	sh, err := st.Share(ctx, "sh1")
	if err != nil || sh.Label != "Nanny" || sh.MaxViewers != 2 || len(sh.Cameras) != 2 || !sh.Expires.Equal(now.Add(time.Hour)) || !sh.Revoked.IsZero() {
		t.Fatalf("share: %+v %v", sh, err)
	}
	must(t, st.AddToken(ctx, Token{ID: "tk1", OwnerID: u.ID, DeviceID: "dev", Cameras: []string{"1"}, MintedBy: "API",
		Created: now, Expires: now.Add(time.Hour)}))
	if tk, err := st.Token(ctx, "tk1"); err != nil || tk.MintedBy != "API" {
		t.Fatalf("token: %+v %v", tk, err)
	}
	if list, _ := st.Shares(ctx, u.ID); len(list) != 1 {
		t.Fatalf("shares: %+v", list)
	}
	if list, _ := st.Tokens(ctx, u.ID); len(list) != 1 {
		t.Fatalf("tokens: %+v", list)
	}
	is, err := st.IssuedByID(ctx, "sh1")
	if err != nil || !is.Share || is.MaxViewers != 2 || is.Revoked {
		t.Fatalf("issued sh1: %+v %v", is, err)
	}
	if _, err := st.IssuedByID(ctx, "forged"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("issued forged: %v", err)
	}
	if err := st.RevokeShare(ctx, "sh1", other.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked by another owner: %v", err)
	}
	e0, _ := st.Epoch(ctx)
	must(t, st.RevokeShare(ctx, "sh1", u.ID))
	must(t, st.RevokeToken(ctx, "tk1", u.ID))
	if e1, _ := st.Epoch(ctx); e1 < e0+2 {
		t.Fatalf("epoch %d → %d: revocations must bump it", e0, e1)
	}
	must(t, st.TouchShare(ctx, "sh1"))
	must(t, st.TouchToken(ctx, "tk1"))
	if is, _ := st.IssuedByID(ctx, "tk1"); is.Share || !is.Revoked {
		t.Fatalf("issued tk1 after revoke: %+v", is)
	}
	revoked, _ := st.RevokedAmong(ctx, []string{"sh1", "tk1"})
	sort.Strings(revoked)
	if strings.Join(revoked, ",") != "sh1,tk1" {
		t.Fatalf("revoked among: %v", revoked)
	}
}

func testLogins(t *testing.T, st *Store, _ string) {
	ctx := context.Background()
	u, _ := st.AddUser(ctx, "alice", "x")
	for _, id := range []string{"a", "b", "c"} {
		must(t, st.AddLogin(ctx, Login{ID: id, UserID: u.ID, Created: time.Now(), Expires: time.Now().Add(time.Hour), Remote: "127.0.0.1"}))
	}
	if ok, err := st.LoginActive(ctx, "a", u.ID); !ok || err != nil {
		t.Fatalf("active: %v %v", ok, err)
	}
	if ok, _ := st.LoginActive(ctx, "a", u.ID+1); ok {
		t.Fatal("active for another user")
	}
	must(t, st.EndLogin(ctx, "a", u.ID))
	if ok, _ := st.LoginActive(ctx, "a", u.ID); ok {
		t.Fatal("ended sign-in still active")
	}
	if n, err := st.EndLogins(ctx, u.ID); err != nil || n != 2 {
		t.Fatalf("end all: %d %v", n, err)
	}
	ended, _ := st.EndedLogins(ctx, []string{"a", "b", "c", "unknown"})
	if len(ended) != 4 {
		t.Fatalf("ended: %v", ended)
	}
}

func testAudit(t *testing.T, st *Store, _ string) {
	ctx := context.Background()
	u, _ := st.AddUser(ctx, "alice", "x")
	for i := 0; i < 5; i++ {
		kind := AuditLoginOK
		if i%2 == 1 {
			kind = AuditSessionClose
		}
		must(t, st.AddAudit(ctx, AuditEvent{OwnerID: u.ID, At: time.Now(), Kind: kind, Actor: fmt.Sprint("n", i), Duration: 1500 * time.Millisecond}))
	}
	all, err := st.Audit(ctx, u.ID, "", 0, 3)
	if err != nil || len(all) != 3 || all[0].Actor != "n4" || all[0].Duration != 1500*time.Millisecond {
		t.Fatalf("first page: %+v %v", all, err)
	}
	rest, _ := st.Audit(ctx, u.ID, "", all[2].ID, 10)
	if len(rest) != 2 || rest[1].Actor != "n0" {
		t.Fatalf("second page: %+v", rest)
	}
	sessions, _ := st.Audit(ctx, u.ID, CategorySessions, 0, 10)
	if len(sessions) != 2 {
		t.Fatalf("sessions: %+v", sessions)
	}
}

func testKV(t *testing.T, st *Store, _ string) {
	ctx := context.Background()
	if _, err := st.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	v, err := st.PutIfAbsent(ctx, "k", []byte{0, 1, 2, 255})
	must(t, err)
	v2, _ := st.PutIfAbsent(ctx, "k", []byte("other"))
	if string(v) != "\x00\x01\x02\xff" || string(v2) != string(v) {
		t.Fatalf("kv: %x then %x", v, v2)
	}
}

func testExpireUnclaimed(t *testing.T, st *Store, _ string) {
	ctx := context.Background()
	for _, id := range []string{"old", "online"} {
		_, _ = st.RegisterDevice(ctx, id, []byte(id), nil)
	}
	n, err := st.ExpireUnclaimed(ctx, time.Now().Add(time.Minute), func(id string) bool { return id == "online" })
	if err != nil || n != 1 {
		t.Fatalf("expired %d (%v), want 1", n, err)
	}
	if _, err := st.Device(ctx, "online"); err != nil {
		t.Fatalf("a connected device was expired: %v", err)
	}
}

// Opening again applies nothing; two opens at once migrate once; a
// database newer than the build is refused.
func testMigrate(t *testing.T, st *Store, where string) {
	ctx := context.Background()
	if n, err := st.Migrate(ctx); err != nil || n != 0 {
		t.Fatalf("second migrate applied %d (%v)", n, err)
	}
	if v, err := st.SchemaVersion(ctx); err != nil || v != SchemaVersion {
		t.Fatalf("schema version %d (%v), want %d", v, err, SchemaVersion)
	}
	if st.Postgres() {
		fresh := pgtest.Database(t)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := Open(fresh)
				if err == nil {
					s.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("nodes opening a new database at once: %v", err)
			}
		}
		_, err := st.db.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied) VALUES(999, 0)`)
		must(t, err)
	} else {
		_, err := st.db.ExecContext(ctx, `PRAGMA user_version = 999`)
		must(t, err)
	}
	if s, err := Open(where); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer schema")
	} else if !strings.Contains(err.Error(), "newer than this build") {
		t.Fatalf("refusal says %v", err)
	}
}

// Many claims of one device at once: exactly one wins.
func testConcurrentClaims(t *testing.T, st *Store, _ string) {
	ctx := context.Background()
	_, _ = st.RegisterDevice(ctx, "dev", []byte{1}, nil)
	var ids []int64
	for i := 0; i < 8; i++ {
		u, err := st.AddUser(ctx, fmt.Sprint("u", i), "x")
		must(t, err)
		ids = append(ids, u.ID)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := st.ClaimDevice(ctx, "dev", id, "")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrClaimed):
				t.Errorf("claim: %v", err)
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d claims won", won)
	}
}

// A share's viewer slots across nodes: at most max held, a session that
// moves keeps its own, a released or expired one is free again, and many
// takers at once get exactly max.
func testViewerSlots(t *testing.T, st *Store, _ string) {
	ctx := context.Background()
	take := func(session, node string) bool {
		t.Helper()
		ok, err := st.TakeViewerSlot(ctx, "share", session, node, 2)
		must(t, err)
		return ok
	}
	if !take("s1", "A") || !take("s2", "B") {
		t.Fatal("two slots of a share capped at 2 refused")
	}
	if take("s3", "C") {
		t.Fatal("a third viewer got a slot")
	}
	if !take("s1", "C") {
		t.Fatal("a session that moved to another node lost its slot")
	}
	if ok, _ := st.TakeViewerSlot(ctx, "other-share", "s9", "A", 1); !ok {
		t.Fatal("another share's slot counted against this one")
	}
	must(t, st.ReleaseViewerSlot(ctx, "s2"))
	if !take("s3", "C") {
		t.Fatal("a released slot was not free")
	}
	// Node C stops renewing (it died): its slots lapse; B's renewed one stays.
	_, err := st.db.ExecContext(ctx, `UPDATE viewer_slots SET expires = ? WHERE node = ?`, time.Now().Add(-time.Second).Unix(), "C")
	must(t, err)
	must(t, st.RefreshViewerSlots(ctx, "A"))
	if !take("s4", "A") || !take("s5", "A") || take("s6", "A") {
		t.Fatal("lapsed slots were not freed, or too many were")
	}
	var wg sync.WaitGroup
	var won atomic.Int32
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := st.TakeViewerSlot(ctx, "busy", fmt.Sprint("b", i), "A", 3); err == nil && ok {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 3 {
		t.Fatalf("%d of 8 concurrent takers got a slot of 3", won.Load())
	}
}
