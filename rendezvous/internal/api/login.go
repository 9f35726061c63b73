package api

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/peercam/peercam/rendezvous/internal/auth"
	"github.com/peercam/peercam/rendezvous/internal/store"
)

type credentials struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	Token    string `json:"token,omitempty"`
}

// errHashBusy means no password hash could start in time.
type errHashBusy struct{}

func (errHashBusy) Error() string { return "password checks are busy" }

// hash runs f (one argon2id hash, 64 MiB) once one of the few hash slots is
// free, waiting at most HashWait: however many sign-ins arrive at once,
// memory stays bounded.
func (a *API) hash(ctx context.Context, f func()) error {
	t := time.NewTimer(a.cfg.HashWait)
	defer t.Stop()
	select {
	case a.hashes <- struct{}{}:
	case <-t.C:
		return errHashBusy{}
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-a.hashes }()
	f()
	return nil
}

func (a *API) hashBusy(w http.ResponseWriter) {
	a.tooMany(w, 2*time.Second, "The server is busy checking passwords. Try again in a moment.")
}

// crossSite refuses a sign-in call that a page of another site could have
// made: it needs the CSRF header or this site's Origin.
func (a *API) crossSite(w http.ResponseWriter, r *http.Request) bool {
	if a.sameOrigin(r) {
		return false
	}
	writeErr(w, http.StatusForbidden, "csrf", "Missing "+CSRFHeader+" header (or an Origin of this site).")
	return true
}

func (a *API) startSession(w http.ResponseWriter, r *http.Request, u store.User) {
	now := time.Now()
	tok, id, err := auth.NewSession(a.cfg.Key, u, now)
	if err == nil {
		err = a.cfg.Store.AddLogin(r.Context(), store.Login{ID: id, UserID: u.ID, Created: now, Expires: now.Add(auth.SessionTTL), Remote: a.clientIP(r)})
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Could not start a session.")
		return
	}
	a.setCookie(w, tok, int(auth.SessionTTL/time.Second))
	writeJSON(w, http.StatusOK, map[string]any{"user": userJSON{u.Name}, "token": tok})
}

// login checks a password. Failures are charged to the address, to the
// (account, address) pair and to the account; the account's budget only
// stops addresses that have failed on it, so guessing from many addresses
// stays bounded while the owner, from an address that has not failed, still
// gets in.
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	if a.crossSite(w, r) {
		return
	}
	ip := addrKey(a.clientIP(r))
	// One at a time per address: budgets are read, the password checked
	// and a failure counted before the next guess from there is looked at.
	done, ok := a.signins.take(r.Context(), ip, a.cfg.HashWait)
	if !ok {
		a.tooMany(w, time.Second, "A sign-in from your network is still being checked. Try again in a moment.")
		return
	}
	defer done()
	a.cfg.Hub.HearShared() // what another node just counted, before the budgets are read
	if d := a.limiter.wait("login:" + ip); d > 0 {
		a.tooMany(w, d, "Too many failed sign-ins from your network. Wait a little and try again.")
		return
	}
	var c credentials
	if !readJSON(w, r, &c) {
		return
	}
	acct := strings.ToLower(strings.TrimSpace(c.Name))
	pair := acct + "|" + ip
	if d := a.pairFail.wait(pair); d > 0 {
		a.tooMany(w, d, "Too many wrong passwords for this account from your network. Wait a little and try again.")
		return
	}
	if a.pairFail.spent(pair) {
		if d := a.accountFail.wait(acct); d > 0 {
			a.tooMany(w, d, "Too many wrong passwords for this account. Wait a little and try again.")
			return
		}
	}
	u, err := a.cfg.Store.UserByName(r.Context(), c.Name)
	found := err == nil
	herr := a.hash(r.Context(), func() {
		if found {
			err = auth.CheckPassword(u.PWHash, c.Password)
		} else {
			// Spend the same time as a real check so names cannot be probed.
			_ = auth.CheckPassword(dummyHash(), c.Password)
		}
	})
	if herr != nil {
		a.hashBusy(w)
		return
	}
	if err != nil {
		a.limiter.take("login:" + ip)
		a.pairFail.take(pair)
		a.accountFail.take(acct)
		a.cfg.Hub.FlushShared() // the other nodes count this failure before the next guess
		a.cfg.Metrics.Logins.WithLabelValues("failed").Inc()
		a.log.Info("login failed", "user", c.Name, "remote", ip)
		if found {
			a.audit(r.Context(), store.AuditEvent{OwnerID: u.ID, Kind: store.AuditLoginFailed, Actor: ip, Detail: "wrong password"})
		}
		writeErr(w, http.StatusUnauthorized, "bad_credentials", "Wrong user name or password.")
		return
	}
	a.pairFail.forget(pair)
	a.cfg.Metrics.Logins.WithLabelValues("ok").Inc()
	a.log.Info("login", "user", u.Name, "remote", ip)
	a.audit(r.Context(), store.AuditEvent{OwnerID: u.ID, Kind: store.AuditLoginOK, Actor: u.Name, Detail: "from " + ip})
	a.startSession(w, r, u)
}

// dummyHash is checked for names that do not exist; made on first use, not
// at start, so an idle server does not hold a hash's 64 MiB.
var dummyHash = sync.OnceValue(func() string {
	h, _ := auth.HashPassword("not-a-real-password")
	return h
})

// logout ends the caller's sign-in session on the server and clears the
// cookie. Without a valid session it only clears the cookie.
func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	if a.crossSite(w, r) {
		return
	}
	if si, err := a.ownerFrom(r); err == nil {
		if err := a.cfg.Store.EndLogin(r.Context(), si.loginID, si.user.ID); err != nil {
			writeErr(w, http.StatusInternalServerError, "internal", "Could not end the session.")
			return
		}
		a.cfg.Hub.EndLogin(si.loginID)
		a.audit(r.Context(), store.AuditEvent{OwnerID: si.user.ID, Kind: store.AuditLogout, Actor: si.user.Name, Detail: "from " + a.clientIP(r)})
	}
	a.setCookie(w, "", -1)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// logoutAll ends every sign-in session of the owner, this one included.
func (a *API) logoutAll(w http.ResponseWriter, r *http.Request, si *signedIn) {
	n, err := a.cfg.Store.EndLogins(r.Context(), si.user.ID)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Could not end the sessions.")
		return
	}
	a.audit(r.Context(), store.AuditEvent{OwnerID: si.user.ID, Kind: store.AuditLogoutAll, Actor: si.user.Name,
		Detail: "from " + a.clientIP(r)})
	a.setCookie(w, "", -1)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "sessions_ended": n})
}

func (a *API) setupNeeded(w http.ResponseWriter, r *http.Request) {
	n, err := a.cfg.Store.UserCount(r.Context())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Store unavailable.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"needed": n == 0})
}

// setup creates the first owner with the one-time link the server printed
// on its first start; whoever visits first without that link gets nothing,
// and once an owner exists nobody does. Cheap checks come before the
// expensive hash.
func (a *API) setup(w http.ResponseWriter, r *http.Request) {
	if a.crossSite(w, r) {
		return
	}
	if !a.limiter.allow(w, "setup:"+addrKey(a.clientIP(r))) {
		return
	}
	if n, err := a.cfg.Store.UserCount(r.Context()); err != nil || n > 0 {
		writeErr(w, http.StatusForbidden, "setup_done", "This server already has an owner; setup links no longer work. Sign in, or ask the operator to run 'rendezvous user add'.")
		return
	}
	var c credentials
	if !readJSON(w, r, &c) {
		return
	}
	if strings.TrimSpace(c.Name) == "" {
		writeErr(w, http.StatusBadRequest, "bad_request", "Choose a user name.")
		return
	}
	if len(c.Password) < 8 {
		writeErr(w, http.StatusBadRequest, "weak_password", "The password must be at least 8 characters.")
		return
	}
	if ok, err := a.cfg.Store.SetupTokenValid(r.Context(), c.Token); err != nil || !ok {
		writeErr(w, http.StatusForbidden, "bad_setup_token", "This setup link is wrong, used or expired. Run 'rendezvous user add' on the server instead.")
		return
	}
	var hash string
	var err error
	if herr := a.hash(r.Context(), func() { hash, err = auth.HashPassword(c.Password) }); herr != nil {
		a.hashBusy(w)
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Could not hash the password.")
		return
	}
	if err := a.cfg.Store.TakeSetupToken(r.Context(), c.Token); err != nil {
		writeErr(w, http.StatusForbidden, "bad_setup_token", "This setup link is wrong, used or expired. Run 'rendezvous user add' on the server instead.")
		return
	}
	u, err := a.cfg.Store.AddUser(r.Context(), strings.TrimSpace(c.Name), hash)
	if err != nil {
		writeErr(w, http.StatusConflict, "exists", "That user name is taken.")
		return
	}
	a.log.Info("owner created through the setup link", "user", u.Name)
	a.startSession(w, r, u)
}
