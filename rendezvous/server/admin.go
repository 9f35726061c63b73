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
			return fmt.Errorf("user add: %q already exists", name)
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

// MintToken prints a viewer token for cameras of a device, signed with the
// server's key, owned by the device's owner.
func MintToken(ctx context.Context, dataDir, deviceID string, cameras []string, ttl time.Duration) (string, error) {
	if ttl <= 0 || ttl > api.MaxTokenTTL {
		return "", fmt.Errorf("token: -ttl must be between 1s and %s", api.MaxTokenTTL)
	}
	if len(cameras) == 0 {
		return "", errors.New("token: -camera is required")
	}
	st, err := store.Open(dataDir)
	if err != nil {
		return "", err
	}
	defer st.Close()
	d, err := st.Device(ctx, deviceID)
	if err != nil {
		return "", fmt.Errorf("token: no device %s", deviceID)
	}
	if d.OwnerID == 0 {
		return "", fmt.Errorf("token: device %s is not claimed yet", deviceID)
	}
	key, err := auth.LoadKey(ctx, st)
	if err != nil {
		return "", err
	}
	return api.MintViewerToken(key, d.OwnerID, deviceID, cameras, ttl)
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
		state := "active"
		switch {
		case !sh.Revoked.IsZero():
			state = "revoked"
		case sh.Expires.Before(time.Now()):
			state = "expired"
		}
		used := "never"
		if !sh.LastUsed.IsZero() {
			used = sh.LastUsed.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sh.ID, sh.Label, sh.DeviceID, strings.Join(sh.Cameras, ","),
			sh.Expires.UTC().Format(time.RFC3339), state, used)
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
