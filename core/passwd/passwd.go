// Package passwd owns the password hashes of Tide's built-in users: bcrypt
// (`tide passwd`, `htpasswd -B`) and the two formats of Mosquitto's
// mosquitto_passwd, so that a Mosquitto password file works unchanged:
//
//	$7$<iterations>$<salt>$<hash>  PBKDF2-SHA512 (mosquitto_passwd 2.x, the default)
//	$6$<salt>$<hash>               SHA-512 of the password and the salt (Mosquitto 1.6 and earlier)
//
// with salt and hash in standard base64.
package passwd

import (
	"bufio"
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/tidemq/tide/core/textfile"
)

// maxIterations and maxBcryptCost bound the work one CONNECT can cost
// (Mosquitto writes 101 iterations, `tide passwd` cost 10): a huge one
// would make every check, and the start, a denial of service.
const (
	maxIterations = 1_000_000
	maxBcryptCost = 16
)

// maxFileSize bounds a password file (a million users take about 150 MB).
const maxFileSize = 256 << 20

// parsed is a hash taken apart.
type parsed struct {
	bcrypt     []byte // whole bcrypt hash, or nil
	iterations int    // $7$; 0 for $6$
	salt, sum  []byte
}

func parse(hash string) (parsed, error) {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return parsed{}, fmt.Errorf("not a valid bcrypt hash: %s", strings.TrimPrefix(err.Error(), "crypto/bcrypt: "))
		}
		if cost > maxBcryptCost {
			return parsed{}, fmt.Errorf("bcrypt cost %d: at most %d (each step doubles the time of every CONNECT's check; 10 takes about 50 ms)", cost, maxBcryptCost)
		}
		return parsed{bcrypt: []byte(hash)}, nil
	case strings.HasPrefix(hash, "$6$"):
		f := strings.Split(hash[3:], "$")
		if len(f) != 2 {
			return parsed{}, errors.New(`not a valid Mosquitto sha512 hash: want "$6$salt$hash"`)
		}
		return decode(0, f[0], f[1], "sha512")
	case strings.HasPrefix(hash, "$7$"):
		f := strings.Split(hash[3:], "$")
		if len(f) != 3 {
			return parsed{}, errors.New(`not a valid Mosquitto sha512-pbkdf2 hash: want "$7$iterations$salt$hash"`)
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 1 || n > maxIterations {
			return parsed{}, fmt.Errorf("not a valid Mosquitto sha512-pbkdf2 hash: iterations %q, want 1 to %d", f[0], maxIterations)
		}
		return decode(n, f[1], f[2], "sha512-pbkdf2")
	}
	return parsed{}, errors.New(`unknown hash format: want bcrypt ("$2a$", "$2b$", "$2y$") or mosquitto_passwd ("$7$", "$6$")`)
}

func decode(iterations int, salt, sum, kind string) (parsed, error) {
	p := parsed{iterations: iterations}
	var err error
	if p.salt, err = base64.StdEncoding.DecodeString(salt); err != nil || len(p.salt) == 0 {
		return parsed{}, fmt.Errorf("not a valid Mosquitto %s hash: the salt is not base64", kind)
	}
	if p.sum, err = base64.StdEncoding.DecodeString(sum); err != nil || len(p.sum) != sha512.Size {
		return parsed{}, fmt.Errorf("not a valid Mosquitto %s hash: the hash is not 64 bytes in base64", kind)
	}
	return p, nil
}

// Check reports whether hash is a well-formed hash of a known format.
func Check(hash string) error {
	_, err := parse(hash)
	return err
}

// Verify reports whether password matches hash. A malformed hash matches
// nothing.
func Verify(hash string, password []byte) bool {
	p, err := parse(hash)
	if err != nil {
		return false
	}
	return p.verify(password)
}

func (p parsed) verify(password []byte) bool {
	if p.bcrypt != nil {
		return bcrypt.CompareHashAndPassword(p.bcrypt, password) == nil
	}
	var sum []byte
	if p.iterations > 0 {
		var err error
		if sum, err = pbkdf2.Key(sha512.New, string(password), p.salt, p.iterations, sha512.Size); err != nil {
			return false
		}
	} else {
		h := sha512.New()
		h.Write(password)
		h.Write(p.salt)
		sum = h.Sum(nil)
	}
	return subtle.ConstantTimeCompare(sum, p.sum) == 1
}

// Kind is what makes two hashes cost the same to check: the format and
// its cost, "$2a$10$" or "$7$101$" (up to the third "$"), or "$6$".
func Kind(hash string) string {
	if strings.HasPrefix(hash, "$6$") {
		return "$6$"
	}
	n := 0
	for i := range len(hash) {
		if hash[i] == '$' {
			if n++; n == 3 {
				return hash[:i+1]
			}
		}
	}
	return hash
}

// Decoy returns a hash of the same format and cost as hash that no password
// matches, for checking the password of an unknown user in the time a known
// one takes (so that the time does not tell which users exist).
func Decoy(hash string) string {
	p, err := parse(hash)
	switch {
	case err != nil:
		return ""
	case p.bcrypt != nil:
		cost, _ := bcrypt.Cost(p.bcrypt)
		// A random password nobody knows; a hash costs what any of that
		// cost does.
		h, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
		if err != nil {
			return ""
		}
		return string(h)
	case p.iterations > 0:
		return fmt.Sprintf("$7$%d$%s$%s", p.iterations, base64.StdEncoding.EncodeToString(make([]byte, 12)), base64.StdEncoding.EncodeToString(make([]byte, sha512.Size)))
	default:
		return "$6$" + base64.StdEncoding.EncodeToString(make([]byte, 12)) + "$" + base64.StdEncoding.EncodeToString(make([]byte, sha512.Size))
	}
}

// Entry is one user of a password file.
type Entry struct {
	Line     int
	Username string
	Hash     string
}

// LineError is a problem on one line of a password file.
type LineError = textfile.LineError

// ReadFile reads a password file in mosquitto_passwd's format, one
// "username:hash" a line; blank lines and lines starting with # are
// skipped. It returns every user, and every problem (a *LineError each, or
// the file's read error) joined.
func ReadFile(path string) ([]Entry, error) {
	data, err := textfile.Read(path, maxFileSize)
	if err != nil {
		return nil, err
	}
	var (
		entries []Entry
		errs    []error
		seen    = map[string]int{}
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, &LineError{File: path, Line: n, Msg: fmt.Sprintf(format, args...)})
		}
		// A user name cannot hold a colon here (mosquitto_passwd refuses
		// one); the hash never holds one.
		user, hash, ok := strings.Cut(line, ":")
		// Blanks around either are not part of it (as in Mosquitto).
		user, hash = strings.TrimSpace(user), strings.TrimSpace(hash)
		switch {
		case !ok:
			bad(`want "username:hash"`)
			continue
		case user == "":
			bad("empty user name")
			continue
		case !strings.HasPrefix(hash, "$"):
			bad("user %q: the password is not hashed (mosquitto_passwd -U hashes a file of plain passwords)", user)
			continue
		}
		if err := Check(hash); err != nil {
			bad("user %q: %v", user, err)
			continue
		}
		if prev, dup := seen[user]; dup {
			bad("user %q again (also on line %d)", user, prev)
			continue
		}
		seen[user] = n
		entries = append(entries, Entry{Line: n, Username: user, Hash: hash})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", path, err))
	}
	return entries, errors.Join(errs...)
}
