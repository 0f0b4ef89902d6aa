package core

import (
	"errors"

	"golang.org/x/crypto/bcrypt"
)

// StaticUsers is the built-in user table: user names with bcrypt password
// hashes, consulted when no connect gate answers.
type StaticUsers struct {
	hashes map[string][]byte
}

// NewStaticUsers returns a table from user name to bcrypt hash.
func NewStaticUsers(hashes map[string]string) *StaticUsers {
	u := &StaticUsers{hashes: make(map[string][]byte, len(hashes))}
	for name, h := range hashes {
		u.hashes[name] = []byte(h)
	}
	return u
}

// Len returns the number of users.
func (u *StaticUsers) Len() int { return len(u.hashes) }

var (
	errUnknownUser = errors.New("unknown user")
	errBadPassword = errors.New("bad password")
	// dummyHash keeps the time of a look-up of an unknown user close to
	// that of a known one.
	dummyHash = []byte("$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z3eT0y1qfnZbJ0tW7e8QJ6Ja")
)

// Check verifies a user's password.
func (u *StaticUsers) Check(username string, password []byte) error {
	h, ok := u.hashes[username]
	if !ok {
		_ = bcrypt.CompareHashAndPassword(dummyHash, password)
		return errUnknownUser
	}
	if bcrypt.CompareHashAndPassword(h, password) != nil {
		return errBadPassword
	}
	return nil
}
