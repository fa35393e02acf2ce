package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// Limits of a users file, stated in the README.
const (
	MaxUsersFileSize = 1 << 20
	MaxUsers         = 1000
	// maxVerified bounds the cache of checked passwords.
	maxVerified = 1024
)

// Users are basic-auth users with bcrypt password hashes, read from an
// htpasswd file ("name:$2y$..." a line, as `htpasswd -B` writes it).
type Users struct {
	hashes map[string][]byte
	names  []string
	// dummy is checked for an unknown name, so that an unknown name takes
	// as long as a wrong password.
	dummy []byte

	// bcrypt costs tens of milliseconds by design, and every API call of
	// the console or a script carries the password: a checked user and
	// password pair is remembered as a salted SHA-256, never as itself.
	mu       sync.Mutex
	salt     [32]byte
	verified map[[32]byte]string

	// bcryptSlots bounds the bcrypt checks running at once: each wrong
	// password costs one, and a flood of them must not take every core
	// from the API (remembered pairs skip it and stay fast).
	bcryptSlots chan struct{}
}

// compareHash is bcrypt's check; a test counts the calls running at once.
var compareHash = bcrypt.CompareHashAndPassword

// bcryptConcurrency is how many bcrypt checks may run at once: half the
// cores, at least one.
func bcryptConcurrency() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// LoadUsersFile reads an htpasswd file of bcrypt hashes; every problem
// names the file and line.
func LoadUsersFile(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxUsersFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	if len(data) > MaxUsersFileSize {
		return nil, fmt.Errorf("users file %s: larger than %d bytes", path, MaxUsersFileSize)
	}
	return ParseUsers(path, data)
}

// ParseUsers reads htpasswd lines; name is the file's name in errors.
// Blank lines and lines starting with # are skipped. Only bcrypt hashes
// ($2a$, $2b$, $2y$) are taken: htpasswd's MD5, SHA-1 and crypt formats
// are too cheap to guess.
func ParseUsers(name string, data []byte) (*Users, error) {
	u := &Users{hashes: map[string][]byte{}, verified: map[[32]byte]string{}, bcryptSlots: make(chan struct{}, bcryptConcurrency())}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxUsersFileSize)
	cost := bcrypt.DefaultCost
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		errf := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, a...)))
		}
		user, hash, ok := strings.Cut(text, ":")
		switch {
		case !ok:
			errf("want name:bcrypt-hash (htpasswd -B)")
			continue
		case user == "" || strings.ContainsAny(user, " \t"):
			errf("user %q: a name is not empty and has no blanks", user)
			continue
		case u.hashes[user] != nil:
			errf("user %q: listed twice", user)
			continue
		}
		c, err := bcrypt.Cost([]byte(hash))
		if err != nil || !(strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")) {
			errf("user %q: not a bcrypt hash ($2y$...): make it with htpasswd -B", user)
			continue
		}
		if len(u.hashes) == MaxUsers {
			errf("more than %d users", MaxUsers)
			break
		}
		cost = c
		u.hashes[user] = []byte(hash)
		u.names = append(u.names, user)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(u.hashes) == 0 {
		return nil, fmt.Errorf("%s: no users", name)
	}
	var pw [16]byte
	rand.Read(pw[:])
	dummy, err := bcrypt.GenerateFromPassword(pw[:], cost)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	u.dummy = dummy
	rand.Read(u.salt[:])
	slices.Sort(u.names)
	return u, nil
}

// Names are the users' names, sorted.
func (u *Users) Names() []string { return slices.Clone(u.names) }

// Has reports whether name is a user.
func (u *Users) Has(name string) bool { return u != nil && u.hashes[name] != nil }

// Check reports whether password is user's.
func (u *Users) Check(user, password string) bool {
	if u == nil {
		return false
	}
	h := sha256.New()
	h.Write(u.salt[:])
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var key [32]byte
	h.Sum(key[:0])
	u.mu.Lock()
	who, ok := u.verified[key]
	u.mu.Unlock()
	if ok {
		return who == user
	}
	hash, known := u.hashes[user]
	if !known {
		hash = u.dummy
	}
	u.bcryptSlots <- struct{}{}
	err := compareHash(hash, []byte(password))
	<-u.bcryptSlots
	if err != nil || !known {
		return false
	}
	u.mu.Lock()
	if len(u.verified) >= maxVerified {
		clear(u.verified)
	}
	u.verified[key] = user
	u.mu.Unlock()
	return true
}
