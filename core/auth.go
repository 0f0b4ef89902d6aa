package core

import (
	"errors"

	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/passwd"
)

// StaticUsers is the built-in user table: user names with password hashes
// (bcrypt, or Mosquitto's formats: see core/passwd), consulted when no
// connect gate answers.
type StaticUsers struct {
	hashes map[string]string
	// decoy is checked for an unknown user: a hash of the format most
	// users have, so that the time of the answer does not tell who exists.
	decoy string
}

// NewStaticUsers returns a table from user name to password hash.
func NewStaticUsers(hashes map[string]string) *StaticUsers {
	u := &StaticUsers{hashes: make(map[string]string, len(hashes))}
	kinds := map[string]int{}
	var common string
	for name, h := range hashes {
		u.hashes[name] = h
		k := passwd.Kind(h)
		kinds[k]++
		if common == "" || kinds[k] > kinds[passwd.Kind(common)] {
			common = h
		}
	}
	u.decoy = passwd.Decoy(common)
	return u
}

// Hash returns a user's password hash, or "" for an unknown user.
func (u *StaticUsers) Hash(username string) string { return u.hashes[username] }

// Len returns the number of users.
func (u *StaticUsers) Len() int { return len(u.hashes) }

var (
	errUnknownUser = errors.New("unknown user")
	errBadPassword = errors.New("bad password")
	// errNoTable: there is no built-in user table to ask.
	errNoTable = errors.New("no built-in users")
)

// Check verifies a user's password.
func (u *StaticUsers) Check(username string, password []byte) error {
	h, ok := u.hashes[username]
	if !ok {
		_ = passwd.Verify(u.decoy, password)
		return errUnknownUser
	}
	if !passwd.Verify(h, password) {
		return errBadPassword
	}
	return nil
}

// builtinLogin is what the built-in table accepted a client with.
type builtinLogin struct {
	username, hash string
}

// checkBuiltin checks a CONNECT's user name and password against the
// built-in table, and remembers the hash that matched for SetUsers. A table
// swapped in during the check is asked again, so that no client slips
// through with credentials a reload has just revoked.
func (s *Server) checkBuiltin(c *client, username string, password []byte) error {
	for {
		users := s.authDefault.Load()
		if users == nil || users.Len() == 0 {
			return errNoTable
		}
		if err := users.Check(username, password); err != nil {
			return err
		}
		c.builtin.Store(&builtinLogin{username: username, hash: users.Hash(username)})
		if s.authDefault.Load() == users {
			return nil
		}
	}
}

// revoke disconnects the clients that the built-in table accepted with a
// hash that users no longer holds (a user removed, or given a new password,
// by a reload), as Mosquitto does on reload: MQTT 5 clients get DISCONNECT
// 0x98. Without a table, they stay where the listener allows anonymous
// clients, as a new CONNECT would.
func (s *Server) revoke(users *StaticUsers) {
	s.clientsMu.Lock()
	var gone []*client
	for c := range s.clients {
		b := c.builtin.Load()
		if b == nil {
			continue
		}
		if users == nil || users.Len() == 0 {
			if !c.ln.opts.AllowAnonymous {
				gone = append(gone, c)
			}
			continue
		}
		if users.Hash(b.username) != b.hash {
			gone = append(gone, c)
		}
	}
	s.clientsMu.Unlock()
	for _, c := range gone {
		c.log.Info("disconnecting: the reloaded user table no longer accepts its credentials", "username", c.builtin.Load().username)
		c.kick(packet.AdministrativeAction, "credentials revoked by a reload")
	}
}
