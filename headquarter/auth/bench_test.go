package auth

import (
	"encoding/base64"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// BenchmarkBasicCheck: one authenticated request's credential check with
// a user of --auth-users-file (bcrypt at its default cost 10; the pair is
// remembered after its first check) as a ratio to the same request
// against --auth-user (a constant-time compare), measured in the same run.
// The first check of a pair, a bcrypt, is reported as bcrypt-ms.
func BenchmarkBasicCheck(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("lin-pw"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	users, err := ParseUsers("users", []byte("lin:"+string(h)+"\n"))
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/v2/apps", nil)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("lin:lin-pw")))
	// Both sides run the same loop in this run: n checks of the request.
	perCheck := func(c Credentials, n int) float64 {
		start := time.Now()
		for range n {
			if _, ok := c.Check(req); !ok {
				b.Fatal("refused")
			}
		}
		return float64(time.Since(start).Nanoseconds()) / float64(n)
	}
	single := perCheck(Credentials{Username: "lin", Password: "lin-pw"}, 100000)
	cached := perCheck(Credentials{Users: users}, 100000)
	start := time.Now()
	if bcrypt.CompareHashAndPassword(h, []byte("lin-pw")) != nil {
		b.Fatal("refused")
	}
	bcryptOnce := time.Since(start)
	for b.Loop() {
		Credentials{Users: users}.Check(req)
	}
	b.ReportMetric(single, "single-ns/op")
	b.ReportMetric(cached, "users-ns/op")
	b.ReportMetric(cached/single, "users/single")
	b.ReportMetric(float64(bcryptOnce.Microseconds())/1e3, "bcrypt-ms")
}
