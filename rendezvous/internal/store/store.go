// Package store keeps the rendezvous's state in one SQLite file (pure-Go
// modernc.org/sqlite): owners, devices and their public keys, one-time claim
// codes and setup tokens, and the token-signing key. Secrets that only need
// comparing (claim codes, setup tokens) are stored as SHA-256 hashes.
package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

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
	db *sql.DB
}

const schema = `
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
);
`

// Open opens (creating if needed) the database in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: data dir: %w", err)
	}
	path := filepath.Join(dir, "rendezvous.db")
	// Transactions take the write lock when they begin: a deferred one that
	// reads and then writes fails at once with SQLITE_BUSY in WAL mode when
	// another connection (the admin CLI, say) wrote in between, and
	// busy_timeout cannot help it.
	db, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate&_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	_ = os.Chmod(path, 0o600)
	return &Store{db: db}, nil
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

// AddUser creates an owner.
func (s *Store) AddUser(ctx context.Context, name, pwHash string) (User, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO users(name, pw_hash, created) VALUES(?,?,?) ON CONFLICT(name) DO NOTHING`,
		name, pwHash, time.Now().Unix())
	if err != nil {
		return User{}, fmt.Errorf("store: add user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return User{}, fmt.Errorf("store: add user %q: %w", name, ErrExists)
	}
	id, _ := res.LastInsertId()
	return User{ID: id, Name: name, PWHash: pwHash}, nil
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
	Name      string
	Cameras   []proto.Camera
	LastSeen  time.Time
}

// RegisterDevice records a device that proved its key, or checks the key of a
// known one, and refreshes its camera list. It returns the stored device.
func (s *Store) RegisterDevice(ctx context.Context, id string, pub []byte, cams []proto.Camera) (Device, error) {
	camsJSON, _ := json.Marshal(cams)
	now := time.Now().Unix()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Device{}, fmt.Errorf("store: register device: %w", err)
	}
	defer tx.Rollback()
	var known []byte
	err = tx.QueryRowContext(ctx, `SELECT public_key FROM devices WHERE id = ?`, id).Scan(&known)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, `INSERT INTO devices(id, public_key, cameras, created, last_seen) VALUES(?,?,?,?,?)`,
			id, pub, string(camsJSON), now, now)
	case err == nil && string(known) != string(pub):
		return Device{}, fmt.Errorf("store: device %s: %w", id, ErrKeyMismatch)
	case err == nil:
		_, err = tx.ExecContext(ctx, `UPDATE devices SET cameras = ?, last_seen = ? WHERE id = ?`, string(camsJSON), now, id)
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: register device: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Device{}, fmt.Errorf("store: register device: %w", err)
	}
	return s.Device(ctx, id)
}

// TouchDevice records that a device was seen now.
func (s *Store) TouchDevice(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE devices SET last_seen = ? WHERE id = ?`, time.Now().Unix(), id)
	return err
}

const deviceCols = `d.id, d.public_key, coalesce(d.owner_id, 0), coalesce(u.name, ''), d.name, d.cameras, d.last_seen`

func scanDevice(sc interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var cams string
	var seen int64
	if err := sc.Scan(&d.ID, &d.PublicKey, &d.OwnerID, &d.OwnerName, &d.Name, &cams, &seen); err != nil {
		return Device{}, err
	}
	_ = json.Unmarshal([]byte(cams), &d.Cameras)
	d.LastSeen = time.Unix(seen, 0)
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

// ClaimDevice binds an unclaimed device to an owner. A claimed device is never
// re-bound; the owner has to remove it first.
func (s *Store) ClaimDevice(ctx context.Context, deviceID string, ownerID int64, name string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE devices SET owner_id = ?, name = CASE WHEN ? = '' THEN name ELSE ? END
		WHERE id = ? AND owner_id IS NULL`, ownerID, name, name, deviceID)
	if err != nil {
		return fmt.Errorf("store: claim: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Device(ctx, deviceID); err != nil {
			return err
		}
		return fmt.Errorf("store: claim %s: %w", deviceID, ErrClaimed)
	}
	_, err = s.db.ExecContext(ctx, `DELETE FROM claim_codes WHERE device_id = ?`, deviceID)
	return err
}

// RemoveDevice unbinds a device from its owner, who may then claim it again or
// hand it on. The device keeps its key and ID.
func (s *Store) RemoveDevice(ctx context.Context, deviceID string, ownerID int64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE devices SET owner_id = NULL WHERE id = ? AND owner_id = ?`, deviceID, ownerID)
	if err != nil {
		return fmt.Errorf("store: remove device: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: remove device %s: %w", deviceID, ErrNotFound)
	}
	return nil
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

// Share is a guest link's record; the link itself is a signed token whose
// jti is ID.
type Share struct {
	ID         string
	OwnerID    int64
	DeviceID   string
	Cameras    []string
	Perms      []string
	Label      string
	MaxViewers int
	Created    time.Time
	Expires    time.Time
	Revoked    time.Time // zero while active
	LastUsed   time.Time // zero if never used
}

// AddShare records a share.
func (s *Store) AddShare(ctx context.Context, sh Share) error {
	cams, _ := json.Marshal(sh.Cameras)
	perms, _ := json.Marshal(sh.Perms)
	_, err := s.db.ExecContext(ctx, `INSERT INTO shares(id, owner_id, device_id, cameras, perms, label, max_viewers, created, expires)
		VALUES(?,?,?,?,?,?,?,?,?)`, sh.ID, sh.OwnerID, sh.DeviceID, string(cams), string(perms), sh.Label, sh.MaxViewers,
		sh.Created.Unix(), sh.Expires.Unix())
	if err != nil {
		return fmt.Errorf("store: add share: %w", err)
	}
	return nil
}

const shareCols = `id, owner_id, device_id, cameras, perms, label, max_viewers, created, expires, revoked, last_used`

func scanShare(sc interface{ Scan(...any) error }) (Share, error) {
	var sh Share
	var cams, perms string
	var created, expires, revoked, used int64
	if err := sc.Scan(&sh.ID, &sh.OwnerID, &sh.DeviceID, &cams, &perms, &sh.Label, &sh.MaxViewers, &created, &expires, &revoked, &used); err != nil {
		return Share{}, err
	}
	_ = json.Unmarshal([]byte(cams), &sh.Cameras)
	_ = json.Unmarshal([]byte(perms), &sh.Perms)
	sh.Created, sh.Expires = time.Unix(created, 0), time.Unix(expires, 0)
	if revoked != 0 {
		sh.Revoked = time.Unix(revoked, 0)
	}
	if used != 0 {
		sh.LastUsed = time.Unix(used, 0)
	}
	return sh, nil
}

// Share returns one share.
func (s *Store) Share(ctx context.Context, id string) (Share, error) {
	sh, err := scanShare(s.db.QueryRowContext(ctx, `SELECT `+shareCols+` FROM shares WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Share{}, fmt.Errorf("store: share: %w", ErrNotFound)
	}
	if err != nil {
		return Share{}, fmt.Errorf("store: share: %w", err)
	}
	return sh, nil
}

// Shares lists an owner's shares, newest first.
func (s *Store) Shares(ctx context.Context, ownerID int64) ([]Share, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+shareCols+` FROM shares WHERE owner_id = ? ORDER BY created DESC`, ownerID)
	if err != nil {
		return nil, fmt.Errorf("store: shares: %w", err)
	}
	defer rows.Close()
	var out []Share
	for rows.Next() {
		sh, err := scanShare(rows)
		if err != nil {
			return nil, fmt.Errorf("store: shares: %w", err)
		}
		out = append(out, sh)
	}
	return out, rows.Err()
}

// RevokeShare marks an owner's share revoked. Revoking twice is not an error.
func (s *Store) RevokeShare(ctx context.Context, id string, ownerID int64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE shares SET revoked = CASE WHEN revoked = 0 THEN ? ELSE revoked END
		WHERE id = ? AND owner_id = ?`, time.Now().Unix(), id, ownerID)
	if err != nil {
		return fmt.Errorf("store: revoke share: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: revoke share %s: %w", id, ErrNotFound)
	}
	return nil
}

// TouchShare records that a share was used now.
func (s *Store) TouchShare(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE shares SET last_used = ? WHERE id = ?`, time.Now().Unix(), id)
	return err
}

// Audit event kinds.
const (
	AuditLoginOK      = "login"
	AuditLoginFailed  = "login_failed"
	AuditClaim        = "claim"
	AuditShareCreated = "share_created"
	AuditShareRevoked = "share_revoked"
	AuditSessionOpen  = "session_opened"
	AuditSessionClose = "session_closed"
)

// AuditEvent is one line of an owner's audit log.
type AuditEvent struct {
	OwnerID  int64
	At       time.Time
	Kind     string
	Actor    string // who: a user name, "share:<label or id>", an address
	Device   string
	Camera   string
	Detail   string
	Duration time.Duration
}

// AddAudit appends an event. Audit failures are returned, never fatal to the
// action being audited.
func (s *Store) AddAudit(ctx context.Context, e AuditEvent) error {
	var owner any
	if e.OwnerID != 0 {
		owner = e.OwnerID
	}
	if e.At.IsZero() {
		e.At = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit(owner_id, at, kind, actor, device, camera, detail, duration) VALUES(?,?,?,?,?,?,?,?)`,
		owner, e.At.UnixMilli(), e.Kind, e.Actor, e.Device, e.Camera, e.Detail, e.Duration.Milliseconds())
	if err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	return nil
}

// Audit returns an owner's newest events, at most limit.
func (s *Store) Audit(ctx context.Context, ownerID int64, limit int) ([]AuditEvent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT owner_id, at, kind, actor, device, camera, detail, duration FROM audit
		WHERE owner_id = ? ORDER BY at DESC, id DESC LIMIT ?`, ownerID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: audit: %w", err)
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		var e AuditEvent
		var at, dur int64
		if err := rows.Scan(&e.OwnerID, &at, &e.Kind, &e.Actor, &e.Device, &e.Camera, &e.Detail, &dur); err != nil {
			return nil, fmt.Errorf("store: audit: %w", err)
		}
		e.At, e.Duration = time.UnixMilli(at), time.Duration(dur)*time.Millisecond
		out = append(out, e)
	}
	return out, rows.Err()
}
