package api

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/peercam/peercam/internal/viewertoken"
	"github.com/peercam/peercam/proto"
	"github.com/peercam/peercam/rendezvous/internal/store"
)

// MaxShareTTL bounds how long a guest link lives.
const MaxShareTTL = 30 * 24 * time.Hour

// SharePerms are the permissions a share may grant today; the model has room
// for playback, talk and ptz.
var SharePerms = []string{viewertoken.PermLive}

// ShareRequest describes a new share.
type ShareRequest struct {
	Device     string   `json:"device"`
	Cameras    []string `json:"cameras"`
	Perms      []string `json:"perms"`
	TTLSeconds int      `json:"ttl_seconds"`
	// Expires is an alternative to TTLSeconds: an RFC 3339 date.
	Expires string `json:"expires"`
	// MaxViewers caps concurrent viewers: 1 when left out, 0 for no cap
	// (the agent's own limit still applies, and it keeps a slot for the
	// owner).
	MaxViewers *int   `json:"max_viewers"`
	Label      string `json:"label"`
}

// DefaultShareViewers is a share's viewer cap when the request names none.
const DefaultShareViewers = 1

// NewShare is a created share and its link.
type NewShare struct {
	ID      string    `json:"id"`
	Token   string    `json:"token"`
	Link    string    `json:"link"`
	Expires time.Time `json:"expires"`
}

// ErrShare is a share request a person must fix; its text says how.
var ErrShare = errors.New("share")

// CreateShare checks a request against the owner's device, records the share
// and signs its token. The API and the admin CLI both use it.
func CreateShare(ctx context.Context, st *store.Store, key ed25519.PrivateKey, publicURL string, owner int64, r ShareRequest, now time.Time) (NewShare, error) {
	d, err := st.Device(ctx, r.Device)
	if err != nil || d.OwnerID != owner || d.ClaimID == "" {
		return NewShare{}, fmt.Errorf("%w: no device %q on this account", ErrShare, r.Device)
	}
	if len(r.Cameras) == 0 {
		return NewShare{}, fmt.Errorf("%w: choose at least one camera", ErrShare)
	}
	for _, c := range r.Cameras {
		if !slices.ContainsFunc(d.Cameras, func(dc proto.Camera) bool { return dc.ID == c }) {
			return NewShare{}, fmt.Errorf("%w: device has no camera %q", ErrShare, c)
		}
	}
	if len(r.Perms) == 0 {
		r.Perms = []string{viewertoken.PermLive}
	}
	for _, p := range r.Perms {
		if !slices.Contains(SharePerms, p) {
			return NewShare{}, fmt.Errorf("%w: permission %q is not available yet (only %s)", ErrShare, p, strings.Join(SharePerms, ", "))
		}
	}
	var expires time.Time
	switch {
	case r.Expires != "":
		if expires, err = time.Parse(time.RFC3339, r.Expires); err != nil {
			return NewShare{}, fmt.Errorf("%w: expires must be an RFC 3339 date such as 2026-12-24T18:00:00Z", ErrShare)
		}
	case r.TTLSeconds > 0:
		expires = now.Add(time.Duration(r.TTLSeconds) * time.Second)
	default:
		return NewShare{}, fmt.Errorf("%w: give ttl_seconds or expires", ErrShare)
	}
	if !expires.After(now) || expires.Sub(now) > MaxShareTTL {
		return NewShare{}, fmt.Errorf("%w: the expiry must be in the future and at most %d days away", ErrShare, int(MaxShareTTL.Hours()/24))
	}
	maxViewers := DefaultShareViewers
	if r.MaxViewers != nil {
		maxViewers = *r.MaxViewers
	}
	if maxViewers < 0 || maxViewers > 100 {
		return NewShare{}, fmt.Errorf("%w: max_viewers must be between 0 (no cap) and 100", ErrShare)
	}
	if len(r.Label) > 80 {
		return NewShare{}, fmt.Errorf("%w: the label is longer than 80 characters", ErrShare)
	}
	sh := store.Share{ID: viewertoken.NewID(), OwnerID: owner, DeviceID: r.Device, Cameras: r.Cameras, Perms: r.Perms,
		Label: strings.TrimSpace(r.Label), MaxViewers: maxViewers, Created: now, Expires: expires.Truncate(time.Second)}
	c := viewertoken.Claims{Device: sh.DeviceID, Cameras: sh.Cameras, Perms: sh.Perms, MaxViewers: sh.MaxViewers,
		Owner: d.OwnerID, Claim: d.ClaimID}
	c.ID = sh.ID
	c.Subject = "share:" + sh.ID
	tok, err := viewertoken.Sign(key, c, now, sh.Expires.Sub(now))
	if err != nil {
		return NewShare{}, err
	}
	if err := st.AddShare(ctx, sh); err != nil {
		return NewShare{}, err
	}
	// The fragment keeps the token out of server logs and Referer headers.
	return NewShare{ID: sh.ID, Token: tok, Link: publicURL + "/s/#" + tok, Expires: sh.Expires.UTC()}, nil
}

type shareJSON struct {
	ID         string     `json:"id"`
	Device     string     `json:"device"`
	Cameras    []string   `json:"cameras"`
	Perms      []string   `json:"perms"`
	Label      string     `json:"label"`
	MaxViewers int        `json:"max_viewers"`
	Created    time.Time  `json:"created"`
	Expires    time.Time  `json:"expires"`
	Revoked    *time.Time `json:"revoked,omitempty"`
	LastUsed   *time.Time `json:"last_used,omitempty"`
	ViewersNow int        `json:"viewers_now"`
	Active     bool       `json:"active"`
}

func (a *API) createShare(w http.ResponseWriter, r *http.Request, si *signedIn) {
	u := &si.user
	var req ShareRequest
	if !readJSON(w, r, &req) {
		return
	}
	sh, err := CreateShare(r.Context(), a.cfg.Store, a.cfg.Key, a.cfg.PublicURL, u.ID, req, time.Now())
	if errors.Is(err, ErrShare) {
		writeErr(w, http.StatusBadRequest, "bad_share", strings.TrimPrefix(err.Error(), "share: "))
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Could not create the share.")
		return
	}
	a.log.Info("share created", "owner", u.Name, "share", sh.ID, "device", req.Device, "expires", sh.Expires)
	a.audit(r.Context(), store.AuditEvent{OwnerID: u.ID, Kind: store.AuditShareCreated, Actor: u.Name, Device: req.Device,
		Camera: strings.Join(req.Cameras, ","), Detail: shareDetail(req.Label, sh.ID, sh.Expires)})
	writeJSON(w, http.StatusCreated, sh)
}

func (a *API) listShares(w http.ResponseWriter, r *http.Request, si *signedIn) {
	u := &si.user
	shares, err := a.cfg.Store.Shares(r.Context(), u.ID)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Store unavailable.")
		return
	}
	now := time.Now()
	out := []shareJSON{}
	for _, sh := range shares {
		j := shareJSON{ID: sh.ID, Device: sh.DeviceID, Cameras: sh.Cameras, Perms: sh.Perms, Label: sh.Label,
			MaxViewers: sh.MaxViewers, Created: sh.Created.UTC(), Expires: sh.Expires.UTC(),
			ViewersNow: a.cfg.Hub.ViewersOf(sh.ID), Active: sh.Revoked.IsZero() && sh.Expires.After(now)}
		if !sh.Revoked.IsZero() {
			t := sh.Revoked.UTC()
			j.Revoked = &t
		}
		if !sh.LastUsed.IsZero() {
			t := sh.LastUsed.UTC()
			j.LastUsed = &t
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) revokeShare(w http.ResponseWriter, r *http.Request, si *signedIn) {
	u := &si.user
	id := r.PathValue("id")
	if err := a.cfg.Store.RevokeShare(r.Context(), id, u.ID); err != nil {
		writeErr(w, http.StatusNotFound, "not_found", "No such share on this account.")
		return
	}
	ended := a.cfg.Hub.RevokeToken(id)
	a.audit(r.Context(), store.AuditEvent{OwnerID: u.ID, Kind: store.AuditShareRevoked, Actor: u.Name,
		Detail: fmt.Sprintf("share %s, %d live session(s) ended", short(id), ended)})
	a.log.Info("share revoked", "owner", u.Name, "share", id, "sessions_ended", ended)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "sessions_ended": ended})
}

func shareDetail(label, id string, expires time.Time) string {
	d := "share " + short(id)
	if label != "" {
		d = "share “" + label + "”"
	}
	return d + " until " + expires.UTC().Format(time.RFC3339)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
