// Package auth is the one credential check every garrison HTTP route goes
// through: HTTP basic with a user and password (one from flags, more from
// an htpasswd file of bcrypt hashes), and/or a static bearer token. The Marathon API, garrison's own /api/v1, /metrics and the event
// stream all use it, so turning auth on covers every route at once.
package auth

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

// Credentials are what a request must present. Username and Password go
// together (HTTP basic); Token is accepted as "Authorization: Bearer
// <token>" or, as DC/OS clients (go-marathon's DCOSToken) send it,
// "Authorization: token=<token>". Users are more basic-auth users (an
// htpasswd file). The zero value turns auth off.
type Credentials struct {
	Username string
	Password string
	Token    string
	Users    *Users
}

// Enabled reports whether any credential is set.
func (c Credentials) Enabled() bool {
	return c.Username != "" || c.Password != "" || c.Token != "" || c.Users != nil
}

// Validate refuses half a basic-auth pair: a user without a password would
// accept an empty password, and a password without a user an empty user.
func (c Credentials) Validate() error {
	switch {
	case c.Username != "" && c.Password == "":
		return errors.New("--auth-user is set without --auth-password: set both, or use --auth-token")
	case c.Password != "" && c.Username == "":
		return errors.New("--auth-password is set without --auth-user: set both, or use --auth-token")
	case c.Username != "" && c.Users.Has(c.Username):
		return fmt.Errorf("--auth-user %q is also in --auth-users-file: one password per user", c.Username)
	}
	return nil
}

// userKey holds the authenticated basic-auth user in a gin context.
const userKey = "garrison.auth.user"

// User is the basic-auth user the middleware authenticated the request
// as; "" for a bearer token, or when auth is off.
func User(c *gin.Context) string { return c.GetString(userKey) }

// Middleware answers 401 with a WWW-Authenticate challenge unless the
// request carries the credentials. Routes whose pattern (gin's FullPath) is
// in open pass without them; every other route, including unknown ones,
// needs them. With auth off it passes everything.
func Middleware(cred Credentials, open ...string) gin.HandlerFunc {
	if !cred.Enabled() {
		return func(c *gin.Context) { c.Next() }
	}
	challenge := `Basic realm="garrison"`
	if cred.Username == "" && cred.Users == nil {
		challenge = `Bearer realm="garrison"`
	}
	return func(c *gin.Context) {
		if slices.Contains(open, c.FullPath()) {
			c.Next()
			return
		}
		if user, ok := cred.Check(c.Request); ok {
			if user != "" {
				c.Set(userKey, user)
			}
			c.Next()
			return
		}
		// A browser answers a Basic challenge to a script's request with its
		// own password prompt, which the console's sign-in form replaces:
		// scripts that say so get the 401 without the challenge.
		if c.GetHeader("X-Requested-With") != "XMLHttpRequest" {
			c.Header("WWW-Authenticate", challenge)
		}
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"message": "Unauthorized: missing or invalid credentials"})
	}
}

// Allows reports whether r carries the credentials.
func (c Credentials) Allows(r *http.Request) bool {
	_, ok := c.Check(r)
	return ok
}

// Check reports whether r carries the credentials, and the basic-auth
// user it carries ("" for the token).
func (c Credentials) Check(r *http.Request) (user string, ok bool) {
	equal := func(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "Basic") && (c.Username != "" || c.Users != nil):
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return "", false
		}
		u, p, _ := strings.Cut(string(raw), ":")
		if u == "" {
			return "", false
		}
		if c.Username != "" && equal(u, c.Username) {
			return u, equal(p, c.Password)
		}
		return u, c.Users.Check(u, p)
	case strings.EqualFold(scheme, "Bearer") && c.Token != "":
		return "", equal(strings.TrimSpace(cred), c.Token)
	case strings.HasPrefix(h, "token=") && c.Token != "":
		return "", equal(strings.TrimPrefix(h, "token="), c.Token)
	}
	return "", false
}
