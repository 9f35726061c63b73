package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

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
	sh.Revoked, sh.LastUsed = unixOrZero(revoked), unixOrZero(used)
	return sh, nil
}

func unixOrZero(t int64) time.Time {
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(t, 0)
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
	return s.revoke(ctx, "shares", id, ownerID)
}

func (s *Store) revoke(ctx context.Context, table, id string, ownerID int64) error {
	err := s.tx(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE `+table+` SET revoked = CASE WHEN revoked = 0 THEN ? ELSE revoked END
			WHERE id = ? AND owner_id = ?`, time.Now().Unix(), id, ownerID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return bumpEpoch(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("store: revoke %s %s: %w", table, id, err)
	}
	return nil
}

// TouchShare records that a share was used now.
func (s *Store) TouchShare(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE shares SET last_used = ? WHERE id = ?`, time.Now().Unix(), id)
	return err
}

// Token is a minted viewer token's record (for a WHEP player or a script);
// the token itself is signed and its jti is ID.
type Token struct {
	ID       string
	OwnerID  int64
	DeviceID string
	Cameras  []string
	// MintedBy says who minted it: "web app", "API", "admin CLI".
	MintedBy string
	Created  time.Time
	Expires  time.Time
	Revoked  time.Time
	LastUsed time.Time
}

// AddToken records a minted token.
func (s *Store) AddToken(ctx context.Context, t Token) error {
	cams, _ := json.Marshal(t.Cameras)
	_, err := s.db.ExecContext(ctx, `INSERT INTO tokens(id, owner_id, device_id, cameras, minted_by, created, expires) VALUES(?,?,?,?,?,?,?)`,
		t.ID, t.OwnerID, t.DeviceID, string(cams), t.MintedBy, t.Created.Unix(), t.Expires.Unix())
	if err != nil {
		return fmt.Errorf("store: add token: %w", err)
	}
	return nil
}

const tokenCols = `id, owner_id, device_id, cameras, minted_by, created, expires, revoked, last_used`

func scanToken(sc interface{ Scan(...any) error }) (Token, error) {
	var t Token
	var cams string
	var created, expires, revoked, used int64
	if err := sc.Scan(&t.ID, &t.OwnerID, &t.DeviceID, &cams, &t.MintedBy, &created, &expires, &revoked, &used); err != nil {
		return Token{}, err
	}
	_ = json.Unmarshal([]byte(cams), &t.Cameras)
	t.Created, t.Expires = time.Unix(created, 0), time.Unix(expires, 0)
	t.Revoked, t.LastUsed = unixOrZero(revoked), unixOrZero(used)
	return t, nil
}

// Token returns one minted token's record.
func (s *Store) Token(ctx context.Context, id string) (Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("store: token: %w", ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("store: token: %w", err)
	}
	return t, nil
}

// Tokens lists an owner's minted tokens, newest first.
func (s *Store) Tokens(ctx context.Context, ownerID int64) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE owner_id = ? ORDER BY created DESC, id`, ownerID)
	if err != nil {
		return nil, fmt.Errorf("store: tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("store: tokens: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken marks an owner's minted token revoked.
func (s *Store) RevokeToken(ctx context.Context, id string, ownerID int64) error {
	return s.revoke(ctx, "tokens", id, ownerID)
}

// TouchToken records that a minted token was used now.
func (s *Store) TouchToken(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE tokens SET last_used = ? WHERE id = ?`, time.Now().Unix(), id)
	return err
}

// Issued is what the rendezvous knows of a viewer token's ID: a share or a
// minted token, whose owner, and whether it is revoked.
type Issued struct {
	Share      bool
	OwnerID    int64
	DeviceID   string
	Label      string
	MaxViewers int
	Revoked    bool
}

// IssuedByID looks a viewer token's jti up among shares and minted tokens.
// An ID in neither was not issued by this server (or predates records):
// ErrNotFound, and the caller refuses it.
func (s *Store) IssuedByID(ctx context.Context, id string) (Issued, error) {
	if sh, err := s.Share(ctx, id); err == nil {
		return Issued{Share: true, OwnerID: sh.OwnerID, DeviceID: sh.DeviceID, Label: sh.Label, MaxViewers: sh.MaxViewers,
			Revoked: !sh.Revoked.IsZero()}, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Issued{}, err
	}
	t, err := s.Token(ctx, id)
	if err != nil {
		return Issued{}, err
	}
	return Issued{OwnerID: t.OwnerID, DeviceID: t.DeviceID, Revoked: !t.Revoked.IsZero()}, nil
}

// RevokedAmong returns which of ids are revoked shares or tokens, or no
// longer recorded at all.
func (s *Store) RevokedAmong(ctx context.Context, ids []string) ([]string, error) {
	var out []string
	for _, id := range ids {
		is, err := s.IssuedByID(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound), err == nil && is.Revoked:
			out = append(out, id)
		case err != nil:
			return out, err
		}
	}
	return out, nil
}
