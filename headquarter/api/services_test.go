package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/registrar"
)

func TestServicesShowLeaseTTLWhenAsked(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	reg, err := registrar.Register(t.Context(), cli, "account", "a-1", registrar.Endpoint{Addr: "127.0.0.1:31001"}, registrar.WithTTL(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(t.Context())
	// A key written by hand, with no lease: shown, with no TTL.
	if _, err := cli.Put(t.Context(), registrar.Key("account", "by-hand"), `{"Addr":"127.0.0.1:31002"}`); err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.TestMode)
	r := gin.New()
	h := servicesHandler{kv: cli}
	r.GET("/api/v1/services", h.list)
	r.GET("/api/v1/services/:name", h.get)

	for _, path := range []string{"/api/v1/services?ttl=true", "/api/v1/services/account?ttl=true"} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != http.StatusOK {
			t.Fatalf("%s = %d %s", path, w.Code, w.Body)
		}
		var svc ServiceView
		if path == "/api/v1/services?ttl=true" {
			var list struct{ Services []ServiceView }
			json.Unmarshal(w.Body.Bytes(), &list)
			if len(list.Services) != 1 {
				t.Fatalf("%s: %s", path, w.Body)
			}
			svc = list.Services[0]
		} else {
			json.Unmarshal(w.Body.Bytes(), &svc)
		}
		byID := map[string]InstanceView{}
		for _, inst := range svc.Instances {
			byID[inst.ID] = inst
		}
		leased, hand := byID["a-1"], byID["by-hand"]
		if leased.TTL == nil || *leased.TTL < 1 || *leased.TTL > 30 || leased.GrantedTTL == nil || *leased.GrantedTTL != 30 {
			t.Errorf("%s: leased instance = %s", path, w.Body)
		}
		if hand.Addr != "127.0.0.1:31002" || hand.TTL != nil {
			t.Errorf("%s: instance without a lease = %+v", path, hand)
		}
	}
	// Without asking, no look-ups and no TTLs.
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/services", nil))
	var list struct{ Services []ServiceView }
	json.Unmarshal(w.Body.Bytes(), &list)
	for _, inst := range list.Services[0].Instances {
		if inst.TTL != nil {
			t.Errorf("TTL given unasked: %s", w.Body)
		}
	}
}
