package auth

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/bcrypt"
)

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// htpasswd -B writes $2y$; Go's bcrypt writes $2a$: both are read.
func TestUsersFileChecksBcrypt(t *testing.T) {
	lin := strings.Replace(hash(t, "lin-pw"), "$2a$", "$2y$", 1)
	path := filepath.Join(t.TempDir(), "users")
	os.WriteFile(path, []byte("# ops\nmei:"+hash(t, "mei-pw")+"\n\nlin:"+lin+"\n"), 0o600)
	u, err := LoadUsersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(u.Names(), ","); got != "lin,mei" {
		t.Errorf("names %s", got)
	}
	for _, tc := range []struct {
		user, pw string
		want     bool
	}{
		{"mei", "mei-pw", true},
		{"lin", "lin-pw", true},
		{"mei", "lin-pw", false},
		{"lin", "mei-pw", false},
		{"sam", "mei-pw", false},
		{"mei", "", false},
		// Twice: the second answer comes from the cache of checked pairs.
		{"mei", "mei-pw", true},
		{"lin", "mei-pw", false},
		{"lin", "lin-pw", true},
	} {
		if got := u.Check(tc.user, tc.pw); got != tc.want {
			t.Errorf("Check(%s, %s) = %v", tc.user, tc.pw, got)
		}
	}
}

func TestUsersFileErrorsNameTheLine(t *testing.T) {
	_, err := ParseUsers("users", []byte(strings.Join([]string{
		"mei:" + hash(t, "x"),
		"lin:$apr1$abc$def", // htpasswd's default MD5
		"nocolon",
		"mei:" + hash(t, "y"),
		":" + hash(t, "z"),
		"sam:{SHA}abc",
	}, "\n")))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`users:2: user "lin": not a bcrypt hash ($2y$...): make it with htpasswd -B`,
		`users:3: want name:bcrypt-hash (htpasswd -B)`,
		`users:4: user "mei": listed twice`,
		`users:5: user "": a name is not empty and has no blanks`,
		`users:6: user "sam": not a bcrypt hash`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := ParseUsers("empty", []byte("# nobody\n")); err == nil || err.Error() != "empty: no users" {
		t.Errorf("empty file: %v", err)
	}
}

func TestMiddlewareWithSeveralUsers(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	users, err := ParseUsers("users", []byte("mei:"+hash(t, "mei-pw")+"\nlin:"+hash(t, "lin-pw")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cred := Credentials{Username: "admin", Password: "admin-pw", Token: "t", Users: users}
	if err := cred.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Credentials{Username: "mei", Password: "p", Users: users}).Validate(); err == nil {
		t.Error("--auth-user also in the users file: no error")
	}
	r := gin.New()
	r.Use(Middleware(cred))
	r.GET("/who", func(c *gin.Context) { c.String(http.StatusOK, "%s", User(c)) })
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }
	for _, tc := range []struct {
		authz, want string
		code        int
	}{
		{basic("mei", "mei-pw"), "mei", 200},
		{basic("lin", "lin-pw"), "lin", 200},
		{basic("admin", "admin-pw"), "admin", 200},
		{"Bearer t", "", 200},
		{basic("mei", "lin-pw"), "", 401},
		{basic("admin", "mei-pw"), "", 401},
		{basic("sam", "mei-pw"), "", 401},
		{"", "", 401},
	} {
		req := httptest.NewRequest("GET", "/who", nil)
		if tc.authz != "" {
			req.Header.Set("Authorization", tc.authz)
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != tc.code || (tc.code == 200 && w.Body.String() != tc.want) {
			t.Errorf("%q: %d %q, want %d %q", tc.authz, w.Code, w.Body.String(), tc.code, tc.want)
		}
		if w.Code == 401 && w.Header().Get("WWW-Authenticate") != `Basic realm="garrison"` {
			t.Errorf("%q: challenge %q", tc.authz, w.Header().Get("WWW-Authenticate"))
		}
	}
}

// A flood of wrong passwords runs at most bcryptConcurrency() bcrypt checks
// at once, and a remembered pair is answered while they wait.
func TestWrongPasswordsShareBoundedBcryptSlots(t *testing.T) {
	u, err := ParseUsers("users", []byte("mei:"+hash(t, "mei-pw")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !u.Check("mei", "mei-pw") { // remembered from now on
		t.Fatal("mei's password refused")
	}
	var running, most atomic.Int32
	release := make(chan struct{})
	entered := make(chan struct{}, 64)
	compareHash = func(h, pw []byte) error {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		entered <- struct{}{}
		<-release
		running.Add(-1)
		return bcrypt.ErrMismatchedHashAndPassword
	}
	t.Cleanup(func() { compareHash = bcrypt.CompareHashAndPassword })

	const flood = 16
	var wg sync.WaitGroup
	for i := range flood {
		wg.Go(func() {
			if u.Check("mei", fmt.Sprintf("guess-%d", i)) {
				t.Error("a wrong password was taken")
			}
		})
	}
	limit := bcryptConcurrency()
	for range limit {
		<-entered // the slots fill...
	}
	// ...and while every slot is held, the remembered pair still answers.
	if !u.Check("mei", "mei-pw") {
		t.Error("a remembered password refused while checks wait")
	}
	select {
	case <-entered:
		t.Fatalf("a check beyond the %d slots started", limit)
	default:
	}
	close(release)
	wg.Wait()
	if got := most.Load(); got != int32(limit) {
		t.Fatalf("at most %d checks ran at once, want %d", got, limit)
	}
}
