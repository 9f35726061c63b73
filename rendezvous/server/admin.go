package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peercam/peercam/rendezvous/internal/api"
	"github.com/peercam/peercam/rendezvous/internal/auth"
	"github.com/peercam/peercam/rendezvous/internal/store"
)

// The admin commands work on the data directory directly, so they run beside a
// live server (SQLite serialises the writes) or with none.

// AddUser creates an owner account.
func AddUser(ctx context.Context, dataDir, name, password string) error {
	name = strings.TrimSpace(name)
	if name == "" {
		return errors.New("user add: NAME is required")
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	st, err := store.Open(dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.AddUser(ctx, name, hash); err != nil {
		if errors.Is(err, store.ErrExists) {
			return fmt.Errorf("user add: %q: %w", name, store.ErrExists)
		}
		return err
	}
	return nil
}

// ListDevices prints every device with its owner.
func ListDevices(ctx context.Context, dataDir string, w io.Writer) error {
	st, err := store.Open(dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	devs, err := st.Devices(ctx, -1)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tNAME\tOWNER\tCAMERAS\tLAST SEEN")
	for _, d := range devs {
		owner := d.OwnerName
		if owner == "" {
			owner = "(unclaimed)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", d.ID, d.Name, owner, len(d.Cameras), d.LastSeen.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// ClaimDevice binds a device that has connected at least once to an owner,
// without its claim code: the operator of the server vouches for it.
func ClaimDevice(ctx context.Context, dataDir, user, deviceID, name string) error {
	st, u, err := openAsOwner(ctx, dataDir, user, "device claim")
	if err != nil {
		return err
	}
	defer st.Close()
	err = st.ClaimDevice(ctx, deviceID, u.ID, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("device claim: device %s has never connected; start its agent first", deviceID)
	case errors.Is(err, store.ErrClaimed):
		return fmt.Errorf("device claim: device %s already has an owner", deviceID)
	case err != nil:
		return err
	}
	return st.AddAudit(ctx, store.AuditEvent{OwnerID: u.ID, Kind: store.AuditClaim, Actor: "admin CLI", Device: deviceID, Detail: name})
}

// MintToken makes a viewer token for cameras of a device, signed with the
// server's key, under the device's current owner and claim, and records it
// (rendezvous token list / revoke).
func MintToken(ctx context.Context, dataDir, deviceID string, cameras []string, ttl time.Duration) (api.MintedToken, error) {
	if ttl <= 0 || ttl > api.MaxTokenTTL {
		return api.MintedToken{}, fmt.Errorf("token: -ttl must be between 1s and %s", api.MaxTokenTTL)
	}
	if len(cameras) == 0 {
		return api.MintedToken{}, errors.New("token: -camera is required")
	}
	st, err := store.Open(dataDir)
	if err != nil {
		return api.MintedToken{}, err
	}
	defer st.Close()
	d, err := st.Device(ctx, deviceID)
	if err != nil {
		return api.MintedToken{}, fmt.Errorf("token: no device %s", deviceID)
	}
	if d.OwnerID == 0 {
		return api.MintedToken{}, fmt.Errorf("token: device %s is not claimed yet", deviceID)
	}
	key, err := auth.LoadKey(ctx, st)
	if err != nil {
		return api.MintedToken{}, err
	}
	t, err := api.MintViewerToken(ctx, st, key, d, cameras, ttl, "admin CLI")
	if err != nil {
		return t, fmt.Errorf("token: %w", err)
	}
	return t, st.AddAudit(ctx, store.AuditEvent{OwnerID: d.OwnerID, Kind: store.AuditTokenMinted, Actor: "admin CLI", Device: deviceID,
		Camera: strings.Join(cameras, ","), Detail: "token " + t.ID[:8] + " until " + t.Expires.UTC().Format(time.RFC3339)})
}

// ListTokens prints an owner's minted tokens.
func ListTokens(ctx context.Context, dataDir, user string, w io.Writer) error {
	st, u, err := openAsOwner(ctx, dataDir, user, "token list")
	if err != nil {
		return err
	}
	defer st.Close()
	toks, err := st.Tokens(ctx, u.ID)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOKEN\tDEVICE\tCAMERAS\tMINTED BY\tEXPIRES\tSTATE\tLAST USED")
	for _, t := range toks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.DeviceID, strings.Join(t.Cameras, ","), t.MintedBy,
			t.Expires.UTC().Format(time.RFC3339), state(t.Revoked, t.Expires), lastUsed(t.LastUsed))
	}
	return tw.Flush()
}

// RevokeToken revokes an owner's minted token; a running server ends its
// live sessions within a second.
func RevokeToken(ctx context.Context, dataDir, user, id string) error {
	st, u, err := openAsOwner(ctx, dataDir, user, "token revoke")
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeToken(ctx, id, u.ID); err != nil {
		return fmt.Errorf("token revoke: %s has no token %s", user, id)
	}
	return st.AddAudit(ctx, store.AuditEvent{OwnerID: u.ID, Kind: store.AuditTokenRevoked, Actor: "admin CLI", Detail: "token " + id})
}

// SetPassword changes an owner's password and ends all their sign-in
// sessions; it returns how many were live.
func SetPassword(ctx context.Context, dataDir, user, password string) (int, error) {
	hash, err := auth.HashPassword(password)
	if err != nil {
		return 0, fmt.Errorf("user passwd: %w", err)
	}
	st, u, err := openAsOwner(ctx, dataDir, user, "user passwd")
	if err != nil {
		return 0, err
	}
	defer st.Close()
	n, err := st.SetPassword(ctx, u.ID, hash)
	if err != nil {
		return 0, err
	}
	return n, st.AddAudit(ctx, store.AuditEvent{OwnerID: u.ID, Kind: store.AuditPassword, Actor: "admin CLI",
		Detail: fmt.Sprintf("%d sign-in session(s) ended", n)})
}

// RemoveDevice unbinds an owner's device and revokes everything issued for
// it; a running server ends its live sessions within a second.
func RemoveDevice(ctx context.Context, dataDir, user, deviceID string) (int, error) {
	st, u, err := openAsOwner(ctx, dataDir, user, "device remove")
	if err != nil {
		return 0, err
	}
	defer st.Close()
	n, err := st.RemoveDevice(ctx, deviceID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("device remove: %s has no device %s", user, deviceID)
	}
	if err != nil {
		return 0, err
	}
	return n, st.AddAudit(ctx, store.AuditEvent{OwnerID: u.ID, Kind: store.AuditRemove, Actor: "admin CLI", Device: deviceID,
		Detail: fmt.Sprintf("%d share(s) and token(s) revoked", n)})
}

// Migrate applies the schema migrations to the data directory's database
// and returns how many it applied.
func Migrate(ctx context.Context, dataDir string) (applied, version int, err error) {
	st, err := store.Open(dataDir)
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	// Open has migrated already; a second run applies nothing.
	n, err := st.Migrate(ctx)
	return n, store.SchemaVersion, err
}

func state(revoked, expires time.Time) string {
	switch {
	case !revoked.IsZero():
		return "revoked"
	case expires.Before(time.Now()):
		return "expired"
	}
	return "active"
}

func lastUsed(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// CreateShare makes a guest link for an owner's cameras.
func CreateShare(ctx context.Context, dataDir, publicURL, user string, req api.ShareRequest) (api.NewShare, error) {
	st, u, err := openAsOwner(ctx, dataDir, user, "share create")
	if err != nil {
		return api.NewShare{}, err
	}
	defer st.Close()
	key, err := auth.LoadKey(ctx, st)
	if err != nil {
		return api.NewShare{}, err
	}
	sh, err := api.CreateShare(ctx, st, key, strings.TrimRight(publicURL, "/"), u.ID, req, time.Now())
	if err != nil {
		return sh, err
	}
	return sh, st.AddAudit(ctx, store.AuditEvent{OwnerID: u.ID, Kind: store.AuditShareCreated, Actor: "admin CLI",
		Device: req.Device, Camera: strings.Join(req.Cameras, ","), Detail: "share " + sh.ID[:8]})
}

// ListShares prints an owner's shares.
func ListShares(ctx context.Context, dataDir, user string, w io.Writer) error {
	st, u, err := openAsOwner(ctx, dataDir, user, "share list")
	if err != nil {
		return err
	}
	defer st.Close()
	shares, err := st.Shares(ctx, u.ID)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARE\tLABEL\tDEVICE\tCAMERAS\tEXPIRES\tSTATE\tLAST USED")
	for _, sh := range shares {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sh.ID, sh.Label, sh.DeviceID, strings.Join(sh.Cameras, ","),
			sh.Expires.UTC().Format(time.RFC3339), state(sh.Revoked, sh.Expires), lastUsed(sh.LastUsed))
	}
	return tw.Flush()
}

// RevokeShare revokes an owner's share; a running server ends its live
// sessions within a second.
func RevokeShare(ctx context.Context, dataDir, user, id string) error {
	st, u, err := openAsOwner(ctx, dataDir, user, "share revoke")
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeShare(ctx, id, u.ID); err != nil {
		return fmt.Errorf("share revoke: %s has no share %s", user, id)
	}
	return st.AddAudit(ctx, store.AuditEvent{OwnerID: u.ID, Kind: store.AuditShareRevoked, Actor: "admin CLI", Detail: "share " + id})
}

// openAsOwner opens the store and looks up the owner an admin command acts
// for; op names the command in the error.
func openAsOwner(ctx context.Context, dataDir, user, op string) (*store.Store, store.User, error) {
	st, err := store.Open(dataDir)
	if err != nil {
		return nil, store.User{}, err
	}
	u, err := st.UserByName(ctx, user)
	if err != nil {
		st.Close()
		return nil, store.User{}, fmt.Errorf("%s: no user %q", op, user)
	}
	return st, u, nil
}
