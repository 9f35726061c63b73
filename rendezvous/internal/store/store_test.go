package store

import (
	"context"
	"database/sql"
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
