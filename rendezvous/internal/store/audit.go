package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Audit event kinds.
const (
	AuditLoginOK      = "login"
	AuditLoginFailed  = "login_failed"
	AuditLogout       = "logout"
	AuditLogoutAll    = "logout_all"
	AuditPassword     = "password_changed"
	AuditClaim        = "claim"
	AuditRemove       = "device_removed"
	AuditShareCreated = "share_created"
	AuditShareRevoked = "share_revoked"
	AuditTokenMinted  = "token_minted"
	AuditTokenRevoked = "token_revoked"
	AuditSessionOpen  = "session_opened"
	AuditSessionClose = "session_closed"
	// AuditSessionsUnused aggregates sessions opened and closed without an
	// offer: one line per actor per minute, however many there were, so a
	// guest cannot flood the log.
	AuditSessionsUnused = "sessions_without_offer"
)

// Audit categories: security events (sign-ins, claims, shares, tokens,
// revocations) are kept apart from viewing sessions, so no amount of viewing
// pushes them out of reach.
const (
	CategorySecurity = "security"
	CategorySessions = "sessions"
)

// CategoryOf returns the category of an event kind.
func CategoryOf(kind string) string {
	switch kind {
	case AuditSessionOpen, AuditSessionClose, AuditSessionsUnused:
		return CategorySessions
	}
	return CategorySecurity
}

// AuditEvent is one line of an owner's audit log.
type AuditEvent struct {
	// ID orders events; pages continue from the last ID seen.
	ID       int64
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
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit(owner_id, at, kind, category, actor, device, camera, detail, duration) VALUES(?,?,?,?,?,?,?,?,?)`,
		owner, e.At.UnixMilli(), e.Kind, CategoryOf(e.Kind), e.Actor, e.Device, e.Camera, e.Detail, e.Duration.Milliseconds())
	if err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	return nil
}

// AddAudits appends events in one statement (a busy server's session
// lines, batched).
func (s *Store) AddAudits(ctx context.Context, events []AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO audit(owner_id, at, kind, category, actor, device, camera, detail, duration) VALUES `)
	args := make([]any, 0, 9*len(events))
	for i, e := range events {
		if i > 0 {
			q.WriteString(",")
		}
		q.WriteString("(?,?,?,?,?,?,?,?,?)")
		var owner any
		if e.OwnerID != 0 {
			owner = e.OwnerID
		}
		if e.At.IsZero() {
			e.At = time.Now()
		}
		args = append(args, owner, e.At.UnixMilli(), e.Kind, CategoryOf(e.Kind), e.Actor, e.Device, e.Camera, e.Detail, e.Duration.Milliseconds())
	}
	if _, err := s.db.ExecContext(ctx, q.String(), args...); err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	return nil
}

// Audit returns a page of an owner's events, newest first: at most limit
// events older than the event with ID before (0: from the newest), of one
// category ("" for all). Every event is reachable by paging.
func (s *Store) Audit(ctx context.Context, ownerID int64, category string, before int64, limit int) ([]AuditEvent, error) {
	q := `SELECT id, owner_id, at, kind, actor, device, camera, detail, duration FROM audit WHERE owner_id = ?`
	args := []any{ownerID}
	if category != "" {
		q += ` AND category = ?`
		args = append(args, category)
	}
	if before > 0 {
		q += ` AND id < ?`
		args = append(args, before)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: audit: %w", err)
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		var e AuditEvent
		var at, dur int64
		if err := rows.Scan(&e.ID, &e.OwnerID, &at, &e.Kind, &e.Actor, &e.Device, &e.Camera, &e.Detail, &dur); err != nil {
			return nil, fmt.Errorf("store: audit: %w", err)
		}
		e.At, e.Duration = time.UnixMilli(at), time.Duration(dur)*time.Millisecond
		out = append(out, e)
	}
	return out, rows.Err()
}
