// Package store keeps the rendezvous's state: owners, devices and their
// public keys, one-time claim codes and setup tokens, shares, sign-ins,
// the audit log and the token-signing key. By default it is one SQLite
// file (pure-Go modernc.org/sqlite); given a postgres:// URL it is a
// PostgreSQL database (pgx) that several rendezvous nodes share. Secrets
// that only need comparing (claim codes, setup tokens) are stored as
// SHA-256 hashes.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
	_ "modernc.org/sqlite"             // the database/sql driver "sqlite"

	"github.com/peercam/peercam/internal/redact"
	"github.com/peercam/peercam/proto"
)

var (
	// ErrNotFound means no row matched.
	ErrNotFound = errors.New("not found")
	// ErrExists means a unique name is taken.
	ErrExists = errors.New("already exists")
	// ErrClaimed means the device already has an owner.
	ErrClaimed = errors.New("device already claimed")
	// ErrKeyMismatch means a device ID is known with another public key.
	ErrKeyMismatch = errors.New("device ID is registered with a different key")
)

// Store is the rendezvous database.
type Store struct {
	db *db
}

// migrations is the schema, one step per entry; the database's
// user_version says how many have run. Steps are only ever appended: a
// released step is never edited. Step 1 is the schema before versioning
// (IF NOT EXISTS, so databases made then take it without harm).
var migrations = []string{
	`
CREATE TABLE IF NOT EXISTS users (
	id       INTEGER PRIMARY KEY,
	name     TEXT NOT NULL UNIQUE,
	pw_hash  TEXT NOT NULL,
	created  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
	id         TEXT PRIMARY KEY,
	public_key BLOB NOT NULL,
	owner_id   INTEGER REFERENCES users(id),
	name       TEXT NOT NULL DEFAULT '',
	cameras    TEXT NOT NULL DEFAULT '[]',
	created    INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claim_codes (
	code_hash BLOB PRIMARY KEY,
	device_id TEXT NOT NULL,
	expires   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS setup_tokens (
	token_hash BLOB PRIMARY KEY,
	expires    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shares (
	id          TEXT PRIMARY KEY,  -- the token's jti
	owner_id    INTEGER NOT NULL REFERENCES users(id),
	device_id   TEXT NOT NULL,
	cameras     TEXT NOT NULL,
	perms       TEXT NOT NULL,
	label       TEXT NOT NULL DEFAULT '',
	max_viewers INTEGER NOT NULL DEFAULT 0,
	created     INTEGER NOT NULL,
	expires     INTEGER NOT NULL,
	revoked     INTEGER NOT NULL DEFAULT 0,
	last_used   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
	id       INTEGER PRIMARY KEY,
	owner_id INTEGER,            -- whose log it belongs to; NULL for unknown users
	at       INTEGER NOT NULL,   -- unix milliseconds
	kind     TEXT NOT NULL,
	actor    TEXT NOT NULL DEFAULT '',
	device   TEXT NOT NULL DEFAULT '',
	camera   TEXT NOT NULL DEFAULT '',
	detail   TEXT NOT NULL DEFAULT '',
	duration INTEGER NOT NULL DEFAULT 0  -- milliseconds, for closed sessions
);
CREATE INDEX IF NOT EXISTS audit_owner ON audit(owner_id, at);
CREATE TABLE IF NOT EXISTS kv (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
);`,
	// 2: ownership is the boundary. A claim has an ID that every share and
	// token names; minted tokens and owner sign-ins are recorded so they can
	// be listed and ended; the audit log keeps security events apart from
	// viewing sessions; epoch counts changes other processes must notice.
	`
ALTER TABLE devices ADD COLUMN claim_id TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN claimed_at INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET claim_id = lower(hex(randomblob(12))), claimed_at = created WHERE owner_id IS NOT NULL;
UPDATE shares SET revoked = CAST(strftime('%s','now') AS INTEGER) WHERE revoked = 0;
CREATE TABLE tokens (
	id         TEXT PRIMARY KEY,  -- the token's jti
	owner_id   INTEGER NOT NULL REFERENCES users(id),
	device_id  TEXT NOT NULL,
	cameras    TEXT NOT NULL,
	minted_by  TEXT NOT NULL DEFAULT '',
	created    INTEGER NOT NULL,
	expires    INTEGER NOT NULL,
	revoked    INTEGER NOT NULL DEFAULT 0,
	last_used  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_device ON tokens(device_id);
CREATE INDEX shares_device ON shares(device_id);
CREATE TABLE logins (
	id       TEXT PRIMARY KEY,   -- the session token's jti
	user_id  INTEGER NOT NULL REFERENCES users(id),
	created  INTEGER NOT NULL,
	expires  INTEGER NOT NULL,
	revoked  INTEGER NOT NULL DEFAULT 0,
	remote   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX logins_user ON logins(user_id);
ALTER TABLE audit ADD COLUMN category TEXT NOT NULL DEFAULT 'security';
UPDATE audit SET category = 'sessions' WHERE kind IN ('session_opened', 'session_closed');
CREATE INDEX audit_owner_category ON audit(owner_id, category, id);
CREATE TABLE epoch (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	n  INTEGER NOT NULL
);
INSERT INTO epoch(id, n) VALUES(1, 0);`,
	// 3: several nodes. A capped share's viewers are counted in the store,
	// one row per session, renewed by the node serving it and void when
	// that node stops renewing (it died).
	`
CREATE TABLE viewer_slots (
	session_id TEXT PRIMARY KEY,
	token_id   TEXT NOT NULL,
	node       TEXT NOT NULL,
	expires    INTEGER NOT NULL
);
CREATE INDEX viewer_slots_token ON viewer_slots(token_id);
CREATE INDEX viewer_slots_node ON viewer_slots(node);`,
}

// SchemaVersion is the number of migrations this build knows.
var SchemaVersion = len(migrations)

// IsURL tells whether where names a PostgreSQL database
// (postgres://… or postgresql://…) rather than a data directory.
func IsURL(where string) bool {
	return strings.HasPrefix(where, "postgres://") || strings.HasPrefix(where, "postgresql://")
}

// Open opens the store at where: a PostgreSQL URL, or a directory that
// holds (or will hold) the SQLite file.
func Open(where string) (*Store, error) {
	if IsURL(where) {
		return openPostgres(where)
	}
	return openSQLite(where)
}

func openPostgres(dsn string) (*Store, error) {
	sdb, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", redact.URL(dsn), err)
	}
	// A node's queries are short; a few connections serve thousands of
	// devices, and several nodes share the server's max_connections.
	sdb.SetMaxOpenConns(16)
	sdb.SetMaxIdleConns(16)
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	st := &Store{db: &db{DB: sdb, pg: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: cannot reach PostgreSQL at %s: %w", redact.URL(dsn), err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: %s: %w", redact.URL(dsn), err)
	}
	return st, nil
}

func openSQLite(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: data dir: %w", err)
	}
	path := filepath.Join(dir, "rendezvous.db")
	// Transactions take the write lock when they begin: a deferred one that
	// reads and then writes fails at once with SQLITE_BUSY in WAL mode when
	// another connection (the admin CLI, say) wrote in between, and
	// busy_timeout cannot help it.
	sdb, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate&_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	st := &Store{db: &db{DB: sdb}}
	if _, err := st.Migrate(context.Background()); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	_ = os.Chmod(path, 0o600)
	return st, nil
}

// Migrate applies the migrations the database has not had yet and returns
// how many it applied. A database newer than this build is refused, so an
// old binary cannot write into a schema it does not know. Both dialects
// run the same steps: SQLite counts them in PRAGMA user_version,
// PostgreSQL in a schema_migrations table, under an advisory lock so that
// nodes starting together migrate once.
func (s *Store) Migrate(ctx context.Context) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	have, err := s.schemaVersion(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	if have > len(migrations) {
		return 0, fmt.Errorf("migrate: the database is at schema version %d, newer than this build's %d; run a newer rendezvous", have, len(migrations))
	}
	for i := have; i < len(migrations); i++ {
		step := migrations[i]
		if s.db.pg {
			step = pgSchema(step)
		}
		if _, err := tx.ExecContext(ctx, step); err != nil {
			return 0, fmt.Errorf("migrate: step %d: %w", i+1, err)
		}
		if s.db.pg {
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied) VALUES(?, ?)`, i+1, time.Now().Unix()); err != nil {
				return 0, fmt.Errorf("migrate: step %d: %w", i+1, err)
			}
		}
	}
	if !s.db.pg {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
			return 0, fmt.Errorf("migrate: %w", err)
		}
	}
	return len(migrations) - have, tx.Commit()
}

// schemaVersion is how many migrations the database has had.
func (s *Store) schemaVersion(ctx context.Context, tx *txn) (int, error) {
	var have int
	if !s.db.pg {
		err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&have)
		return have, err
	}
	// Held to the transaction's end: a second node waits here, then sees
	// the steps the first applied.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7312001)`); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)`); err != nil {
		return 0, err
	}
	err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&have)
	return have, err
}

// SchemaVersion reports how many migrations the database has had.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	return s.schemaVersion(ctx, tx)
}

// Postgres tells whether the store is PostgreSQL.
func (s *Store) Postgres() bool { return s.db.pg }

// bumpEpoch records, inside tx, that something other processes must notice
// changed: a claim, a removal, a revocation, a sign-out.
func bumpEpoch(ctx context.Context, tx *txn) error {
	_, err := tx.ExecContext(ctx, `UPDATE epoch SET n = n + 1 WHERE id = 1`)
	return err
}

// Epoch is a counter that grows with every change bumpEpoch records; a
// server polls it (one row) to learn of changes the admin CLI made.
func (s *Store) Epoch(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT n FROM epoch WHERE id = 1`).Scan(&n)
	return n, err
}

// tx runs f in a transaction and commits it.
func (s *Store) tx(ctx context.Context, f func(*txn) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Hash is how one-time secrets are kept.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// User is an owner account.
type User struct {
	ID     int64
	Name   string
	PWHash string
}

// AddUser creates an owner. Setup links exist only to create the first
// owner, so every one left is deleted in the same transaction.
func (s *Store) AddUser(ctx context.Context, name, pwHash string) (User, error) {
	var id int64
	err := s.tx(ctx, func(tx *txn) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO users(name, pw_hash, created) VALUES(?,?,?) ON CONFLICT(name) DO NOTHING RETURNING id`,
			name, pwHash, time.Now().Unix()).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrExists
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM setup_tokens`)
		return err
	})
	if errors.Is(err, ErrExists) {
		return User{}, fmt.Errorf("store: add user %q: %w", name, ErrExists)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: add user: %w", err)
	}
	return User{ID: id, Name: name, PWHash: pwHash}, nil
}

// SetPassword replaces an owner's password hash and ends every sign-in
// session of theirs: whoever knew the old password is out.
func (s *Store) SetPassword(ctx context.Context, userID int64, pwHash string) (ended int, err error) {
	err = s.tx(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET pw_hash = ? WHERE id = ?`, pwHash, userID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		ended, err = revokeLogins(ctx, tx, userID)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: set password: %w", err)
	}
	return ended, nil
}

// UserByName looks an owner up by name.
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	return s.user(ctx, `SELECT id, name, pw_hash FROM users WHERE name = ?`, name)
}

// UserByID looks an owner up by ID.
func (s *Store) UserByID(ctx context.Context, id int64) (User, error) {
	return s.user(ctx, `SELECT id, name, pw_hash FROM users WHERE id = ?`, id)
}

func (s *Store) user(ctx context.Context, q string, arg any) (User, error) {
	var u User
	err := s.db.QueryRowContext(ctx, q, arg).Scan(&u.ID, &u.Name, &u.PWHash)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("store: user: %w", ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: user: %w", err)
	}
	return u, nil
}

// UserCount returns how many owners exist.
func (s *Store) UserCount(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n)
	return n, err
}

// Device is a registered agent.
type Device struct {
	ID        string
	PublicKey []byte
	OwnerID   int64 // 0 while unclaimed
	OwnerName string
	// ClaimID names the current claim: a new random ID each time the device
	// gets an owner, empty while unclaimed. Every share and viewer token
	// carries the claim it was issued under and is void under any other.
	ClaimID   string
	ClaimedAt time.Time
	Name      string
	Cameras   []proto.Camera
	Created   time.Time
	LastSeen  time.Time
}

// RegisterDevice records a device that proved its key, or checks the key of a
// known one, and refreshes its camera list. It returns the stored device.
// It is one statement (an upsert that updates only under the same key), so
// a fleet reconnecting at once costs the database one round trip each.
func (s *Store) RegisterDevice(ctx context.Context, id string, pub []byte, cams []proto.Camera) (Device, error) {
	camsJSON, _ := json.Marshal(cams)
	now := time.Now().Unix()
	d, err := scanDevice(s.db.QueryRowContext(ctx, `INSERT INTO devices(id, public_key, cameras, created, last_seen) VALUES(?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET cameras = excluded.cameras, last_seen = excluded.last_seen
		WHERE devices.public_key = excluded.public_key
		RETURNING id, public_key, coalesce(owner_id, 0), coalesce((SELECT name FROM users WHERE users.id = devices.owner_id), ''),
			claim_id, claimed_at, name, cameras, created, last_seen`,
		id, pub, string(camsJSON), now, now))
	if errors.Is(err, sql.ErrNoRows) {
		// The ID is taken under another key.
		return Device{}, fmt.Errorf("store: device %s: %w", id, ErrKeyMismatch)
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: register device: %w", err)
	}
	return d, nil
}

// TouchDevice records that a device was seen now.
func (s *Store) TouchDevice(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE devices SET last_seen = ? WHERE id = ?`, time.Now().Unix(), id)
	return err
}

const deviceCols = `d.id, d.public_key, coalesce(d.owner_id, 0), coalesce(u.name, ''), d.claim_id, d.claimed_at, d.name, d.cameras, d.created, d.last_seen`

func scanDevice(sc interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var cams string
	var claimed, created, seen int64
	if err := sc.Scan(&d.ID, &d.PublicKey, &d.OwnerID, &d.OwnerName, &d.ClaimID, &claimed, &d.Name, &cams, &created, &seen); err != nil {
		return Device{}, err
	}
	_ = json.Unmarshal([]byte(cams), &d.Cameras)
	if claimed != 0 {
		d.ClaimedAt = time.Unix(claimed, 0)
	}
	d.Created, d.LastSeen = time.Unix(created, 0), time.Unix(seen, 0)
	return d, nil
}

// Device returns one device.
func (s *Store) Device(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx,
		`SELECT `+deviceCols+` FROM devices d LEFT JOIN users u ON u.id = d.owner_id WHERE d.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, fmt.Errorf("store: device %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: device %s: %w", id, err)
	}
	return d, nil
}

// Devices lists the devices of an owner, or all devices when ownerID is -1.
func (s *Store) Devices(ctx context.Context, ownerID int64) ([]Device, error) {
	q := `SELECT ` + deviceCols + ` FROM devices d LEFT JOIN users u ON u.id = d.owner_id`
	var args []any
	if ownerID >= 0 {
		q += ` WHERE d.owner_id = ?`
		args = append(args, ownerID)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY d.created`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("store: devices: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ClaimDevice binds an unclaimed device to an owner under a new claim ID.
// A claimed device is never re-bound; the owner has to remove it first.
// Anything still issued for the device under an earlier claim is revoked in
// the same transaction, so nothing a former owner handed out survives.
func (s *Store) ClaimDevice(ctx context.Context, deviceID string, ownerID int64, name string) error {
	claimID := newClaimID()
	now := time.Now().Unix()
	err := s.tx(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET owner_id = ?, claim_id = ?, claimed_at = ?,
			name = CASE WHEN ? = '' THEN name ELSE ? END
			WHERE id = ? AND owner_id IS NULL`, ownerID, claimID, now, name, name, deviceID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var one int
			if err := tx.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE id = ?`, deviceID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return ErrClaimed
		}
		if _, err := revokeIssued(ctx, tx, deviceID, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM claim_codes WHERE device_id = ?`, deviceID); err != nil {
			return err
		}
		return bumpEpoch(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("store: claim %s: %w", deviceID, err)
	}
	return nil
}

// RemoveDevice unbinds a device from its owner, who may then claim it again
// or hand it on, and revokes every share and viewer token issued for it. The
// device keeps its key and ID. It returns how many were revoked.
func (s *Store) RemoveDevice(ctx context.Context, deviceID string, ownerID int64) (revoked int, err error) {
	now := time.Now().Unix()
	err = s.tx(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET owner_id = NULL, claim_id = '', claimed_at = 0
			WHERE id = ? AND owner_id = ?`, deviceID, ownerID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if revoked, err = revokeIssued(ctx, tx, deviceID, now); err != nil {
			return err
		}
		return bumpEpoch(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("store: remove device %s: %w", deviceID, err)
	}
	return revoked, nil
}

// revokeIssued revokes every live share and token of a device.
func revokeIssued(ctx context.Context, tx *txn, deviceID string, now int64) (int, error) {
	n := 0
	for _, table := range []string{"shares", "tokens"} {
		res, err := tx.ExecContext(ctx, `UPDATE `+table+` SET revoked = ? WHERE device_id = ? AND revoked = 0`, now, deviceID)
		if err != nil {
			return 0, err
		}
		k, _ := res.RowsAffected()
		n += int(k)
	}
	return n, nil
}

func newClaimID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ExpireUnclaimed deletes devices that registered before cutoff and were
// never claimed, except those in keep (connected now): a source that
// registers throwaway keys leaves nothing behind for long.
func (s *Store) ExpireUnclaimed(ctx context.Context, cutoff time.Time, keep func(id string) bool) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM devices WHERE owner_id IS NULL AND created < ?
		AND NOT EXISTS (SELECT 1 FROM shares WHERE device_id = devices.id)
		AND NOT EXISTS (SELECT 1 FROM tokens WHERE device_id = devices.id)`, cutoff.Unix())
	if err != nil {
		return 0, fmt.Errorf("store: expire unclaimed: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if rows.Scan(&id) == nil && !keep(id) {
			ids = append(ids, id)
		}
	}
	rows.Close()
	n := 0
	for _, id := range ids {
		res, err := s.db.ExecContext(ctx, `DELETE FROM devices WHERE id = ? AND owner_id IS NULL`, id)
		if err != nil {
			return n, fmt.Errorf("store: expire unclaimed: %w", err)
		}
		k, _ := res.RowsAffected()
		n += int(k)
		_, _ = s.db.ExecContext(ctx, `DELETE FROM claim_codes WHERE device_id = ?`, id)
	}
	return n, nil
}

// Owners returns the stored record of each of ids that exists, so a server
// can compare what its connected devices believe with the truth. It reads
// only those rows, 500 at a time: a node of a cluster holds a share of a
// fleet, not all of it.
func (s *Store) Owners(ctx context.Context, ids []string) (map[string]Device, error) {
	out := make(map[string]Device, len(ids))
	for lo := 0; lo < len(ids); lo += 500 {
		chunk := ids[lo:min(lo+500, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		q := `SELECT ` + deviceCols + ` FROM devices d LEFT JOIN users u ON u.id = d.owner_id WHERE d.id IN (?` +
			strings.Repeat(",?", len(chunk)-1) + `)`
		rows, err := s.db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("store: owners: %w", err)
		}
		for rows.Next() {
			d, err := scanDevice(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: owners: %w", err)
			}
			out[d.ID] = d
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("store: owners: %w", err)
		}
	}
	return out, nil
}

// PutClaimCode stores a claim code for a device, replacing its older ones.
func (s *Store) PutClaimCode(ctx context.Context, deviceID, code string, expires time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM claim_codes WHERE device_id = ? OR expires < ?`, deviceID, time.Now().Unix()); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO claim_codes(code_hash, device_id, expires) VALUES(?,?,?)`,
		Hash(code), deviceID, expires.Unix()); err != nil {
		return err
	}
	return tx.Commit()
}

// TakeClaimCode consumes a claim code and returns its device. A code works
// once; an expired or unknown code is ErrNotFound.
func (s *Store) TakeClaimCode(ctx context.Context, code string) (string, error) {
	var dev string
	var exp int64
	err := s.db.QueryRowContext(ctx, `DELETE FROM claim_codes WHERE code_hash = ? RETURNING device_id, expires`, Hash(code)).Scan(&dev, &exp)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && exp < time.Now().Unix()) {
		return "", fmt.Errorf("store: claim code: %w", ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("store: claim code: %w", err)
	}
	return dev, nil
}

// PutSetupToken stores a one-time token for creating the first owner.
func (s *Store) PutSetupToken(ctx context.Context, token string, expires time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO setup_tokens(token_hash, expires) VALUES(?,?)`, Hash(token), expires.Unix())
	return err
}

// TakeSetupToken consumes a setup token.
func (s *Store) TakeSetupToken(ctx context.Context, token string) error {
	var exp int64
	err := s.db.QueryRowContext(ctx, `DELETE FROM setup_tokens WHERE token_hash = ? RETURNING expires`, Hash(token)).Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && exp < time.Now().Unix()) {
		return fmt.Errorf("store: setup token: %w", ErrNotFound)
	}
	return err
}

// Get reads a value from the key-value table.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.db.QueryRowContext(ctx, `SELECT value FROM kv WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: %s: %w", key, ErrNotFound)
	}
	return v, err
}

// PutIfAbsent writes a value unless the key exists, and returns the stored one.
func (s *Store) PutIfAbsent(ctx context.Context, key string, value []byte) ([]byte, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO kv(key, value) VALUES(?,?) ON CONFLICT(key) DO NOTHING`, key, value); err != nil {
		return nil, fmt.Errorf("store: %s: %w", key, err)
	}
	return s.Get(ctx, key)
}

// SetupTokenValid tells whether a setup token exists and has not expired,
// without using it.
func (s *Store) SetupTokenValid(ctx context.Context, token string) (bool, error) {
	var exp int64
	err := s.db.QueryRowContext(ctx, `SELECT expires FROM setup_tokens WHERE token_hash = ?`, Hash(token)).Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil && exp >= time.Now().Unix(), err
}
