package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A database made before migrations were versioned (user_version 0, the
// first schema) is brought up to date at open: claimed devices get a claim
// ID, shares issued without one are revoked (their tokens name no claim and
// would be refused anyway, so the owner's list says so), and opening again
// applies nothing.
func TestMigrateFromUnversioned(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "rendezvous.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(migrations[0]); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	for _, q := range []string{
		`INSERT INTO users(id, name, pw_hash, created) VALUES(1, 'alice', 'x', 0)`,
		`INSERT INTO devices(id, public_key, owner_id, created, last_seen) VALUES('dev', x'00', 1, 0, 0)`,
		`INSERT INTO shares(id, owner_id, device_id, cameras, perms, created, expires) VALUES('sh', 1, 'dev', '["1"]', '["live"]', 0, ` + strconv.FormatInt(now+3600, 10) + `)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	d, err := st.Device(ctx, "dev")
	if err != nil || d.ClaimID == "" || d.OwnerID != 1 {
		t.Fatalf("claimed device after migration: %+v %v", d, err)
	}
	sh, err := st.Share(ctx, "sh")
	if err != nil || sh.Revoked.IsZero() {
		t.Fatalf("share issued without a claim is not revoked: %+v %v", sh, err)
	}
	if n, err := st.Migrate(ctx); err != nil || n != 0 {
		t.Fatalf("second migrate applied %d (%v), want 0", n, err)
	}
	var v int
	_ = st.db.QueryRow(`PRAGMA user_version`).Scan(&v)
	if v != SchemaVersion {
		t.Fatalf("user_version %d, want %d", v, SchemaVersion)
	}
}

// A database newer than the binary is refused rather than written to.
func TestMigrateRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.db.Exec(`PRAGMA user_version = 999`)
	st.Close()
	if _, err := Open(dir); err == nil {
		t.Fatal("opened a database with a newer schema")
	}
}

// Claim, remove, claim again: each claim has its own ID, and removal
// revokes what was issued under the last one.
func TestClaimRemoveRevokes(t *testing.T) {
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
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
}
