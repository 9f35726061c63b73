package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"
)

// SlotTTL is how long a viewer slot lives without renewal; its node renews
// it well before (RefreshViewerSlots).
const SlotTTL = 30 * time.Second

// TakeViewerSlot holds one of a share's max viewer slots for a session
// served by node, unless max are held already; a session that holds one
// (it moved to another node) keeps it. Concurrent takers of one share are
// serialised: PostgreSQL by an advisory lock on the share, SQLite by its
// write lock.
func (s *Store) TakeViewerSlot(ctx context.Context, tokenID, sessionID, node string, max int) (bool, error) {
	now := time.Now().Unix()
	ok := false
	err := s.tx(ctx, func(tx *txn) error {
		if s.db.pg {
			h := fnv.New64a()
			h.Write([]byte(tokenID))
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(h.Sum64())); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM viewer_slots WHERE token_id = ? AND expires < ?`, tokenID, now); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE viewer_slots SET node = ?, expires = ? WHERE session_id = ? AND token_id = ?`,
			node, now+int64(SlotTTL/time.Second), sessionID, tokenID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			ok = true
			return nil
		}
		var held int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM viewer_slots WHERE token_id = ?`, tokenID).Scan(&held); err != nil {
			return err
		}
		if held >= max {
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO viewer_slots(session_id, token_id, node, expires) VALUES(?,?,?,?)`,
			sessionID, tokenID, node, now+int64(SlotTTL/time.Second))
		ok = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: viewer slot: %w", err)
	}
	return ok, nil
}

// ReleaseViewerSlot frees a session's slot.
func (s *Store) ReleaseViewerSlot(ctx context.Context, sessionID string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM viewer_slots WHERE session_id = ?`, sessionID)
	return err
}

// RefreshViewerSlots renews the slots node holds for SlotTTL more.
func (s *Store) RefreshViewerSlots(ctx context.Context, node string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE viewer_slots SET expires = ? WHERE node = ?`, time.Now().Add(SlotTTL).Unix(), node)
	return err
}
