// Package identity keeps the agent's Ed25519 key, made on first start, and
// the rendezvous token key the agent pins, in the state directory. The device
// ID is derived from the key, so it cannot be guessed or claimed by anyone who
// does not hold the key.
package identity

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/peercam/peercam/proto"
)

const (
	keyFile    = "device.key"
	pinnedFile = "rendezvous.pub"
)

// ErrPinMismatch means the rendezvous presented a token key other than the
// pinned one.
var ErrPinMismatch = errors.New("the rendezvous's token key differs from the pinned one")

// Identity is the agent's key pair.
type Identity struct {
	Key ed25519.PrivateKey
	ID  string
	dir string
}

// Load reads the key from dir, creating dir and the key on first use.
func Load(dir string) (*Identity, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("identity: state dir: %w", err)
	}
	path := filepath.Join(dir, keyFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		_, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, err
		}
		enc := base64.StdEncoding.EncodeToString(priv.Seed()) + "\n"
		if err := writeFileAtomic(path, []byte(enc), 0o600); err != nil {
			return nil, fmt.Errorf("identity: save key: %w", err)
		}
		return &Identity{Key: priv, ID: proto.DeviceID(priv.Public().(ed25519.PublicKey)), dir: dir}, nil
	case err != nil:
		return nil, fmt.Errorf("identity: %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("identity: %s is corrupt; move it away to make a new identity (the device must then be claimed again)", path)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return &Identity{Key: priv, ID: proto.DeviceID(priv.Public().(ed25519.PublicKey)), dir: dir}, nil
}

// Public returns the public key.
func (id *Identity) Public() ed25519.PublicKey { return id.Key.Public().(ed25519.PublicKey) }

// Pinned returns the pinned rendezvous token key, or nil if none yet.
func (id *Identity) Pinned() (ed25519.PublicKey, error) {
	b, err := os.ReadFile(filepath.Join(id.dir, pinnedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("identity: pinned rendezvous key is corrupt")
	}
	return k, nil
}

// Pin records the rendezvous token key on first contact and checks it after.
func (id *Identity) Pin(key ed25519.PublicKey) error {
	old, err := id.Pinned()
	if err != nil {
		return err
	}
	if old != nil {
		if !old.Equal(key) {
			return ErrPinMismatch
		}
		return nil
	}
	return writeFileAtomic(filepath.Join(id.dir, pinnedFile), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
}

// writeFileAtomic writes via a temporary file and rename, so a power cut on a
// recorder never leaves half a key.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
