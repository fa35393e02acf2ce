package auth

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
)

func TestValidateRefusesHalfABasicPair(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Credentials
		ok   bool
	}{
		{"off", Credentials{}, true},
		{"basic", Credentials{Username: "u", Password: "p"}, true},
		{"token", Credentials{Token: "t"}, true},
		{"user only", Credentials{Username: "u"}, false},
		{"password only", Credentials{Password: "p"}, false},
		{"password and token", Credentials{Password: "p", Token: "t"}, false},
	} {
		if err := tc.c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v", tc.name, err)
		}
	}
}

func TestMiddleware(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }
	r := gin.New()
	r.Use(Middleware(Credentials{Username: "u", Password: "p", Token: "t"}, "/open"))
	ok := func(c *gin.Context) { c.Status(http.StatusOK) }
	r.GET("/open", ok)
	r.GET("/closed/:id", ok)
	for _, tc := range []struct {
		path, authz string
		want        int
	}{
		{"/open", "", 200},
		{"/closed/1", "", 401},
		{"/closed/1", basic("u", "p"), 200},
		{"/closed/1", basic("u", "x"), 401},
		{"/closed/1", basic("", "p"), 401},
		{"/closed/1", "Bearer t", 200},
		{"/closed/1", "bearer t", 200},
		{"/closed/1", "token=t", 200},
		{"/closed/1", "Bearer x", 401},
		{"/open/../closed/1", "", 401},
		{"/nowhere", "", 401},
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		if tc.authz != "" {
			req.Header.Set("Authorization", tc.authz)
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != tc.want {
			t.Errorf("GET %s with %q: %d, want %d", tc.path, tc.authz, w.Code, tc.want)
		}
	}
}
