package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Login is one owner sign-in session: the session token's jti, so that
// signing out ends it on the server, not only in the browser.
type Login struct {
	ID      string
	UserID  int64
	Created time.Time
	Expires time.Time
	Revoked time.Time
	Remote  string
}

// AddLogin records a new sign-in session and drops the user's expired ones.
func (s *Store) AddLogin(ctx context.Context, l Login) error {
	return s.tx(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM logins WHERE user_id = ? AND expires < ?`, l.UserID, time.Now().Unix()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO logins(id, user_id, created, expires, remote) VALUES(?,?,?,?,?)`,
			l.ID, l.UserID, l.Created.Unix(), l.Expires.Unix(), l.Remote)
		return err
	})
}

// LoginActive tells whether a sign-in session exists, belongs to userID and
// was not ended.
func (s *Store) LoginActive(ctx context.Context, id string, userID int64) (bool, error) {
	var uid, revoked int64
	err := s.db.QueryRowContext(ctx, `SELECT user_id, revoked FROM logins WHERE id = ?`, id).Scan(&uid, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: login: %w", err)
	}
	return uid == userID && revoked == 0, nil
}

// EndLogin ends one sign-in session of userID.
func (s *Store) EndLogin(ctx context.Context, id string, userID int64) error {
	return s.tx(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `UPDATE logins SET revoked = ? WHERE id = ? AND user_id = ? AND revoked = 0`,
			time.Now().Unix(), id, userID); err != nil {
			return err
		}
		return bumpEpoch(ctx, tx)
	})
}

// EndLogins ends every sign-in session of userID ("sign out everywhere")
// and returns how many were live.
func (s *Store) EndLogins(ctx context.Context, userID int64) (n int, err error) {
	err = s.tx(ctx, func(tx *txn) error {
		n, err = revokeLogins(ctx, tx, userID)
		return err
	})
	return n, err
}

func revokeLogins(ctx context.Context, tx *txn, userID int64) (int, error) {
	res, err := tx.ExecContext(ctx, `UPDATE logins SET revoked = ? WHERE user_id = ? AND revoked = 0`, time.Now().Unix(), userID)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), bumpEpoch(ctx, tx)
}

// EndedLogins returns which of ids are ended (or unknown) sign-in sessions.
func (s *Store) EndedLogins(ctx context.Context, ids []string) ([]string, error) {
	var out []string
	for _, id := range ids {
		var revoked int64
		err := s.db.QueryRowContext(ctx, `SELECT revoked FROM logins WHERE id = ?`, id).Scan(&revoked)
		switch {
		case errors.Is(err, sql.ErrNoRows), err == nil && revoked != 0:
			out = append(out, id)
		case err != nil:
			return out, err
		}
	}
	return out, nil
}
