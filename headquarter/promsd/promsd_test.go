package promsd_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/promsd"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/registrar"
)

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var body json.RawMessage
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("decode: %v", err)
		}
	}
	return resp.StatusCode, body
}

func TestGroupsFromRegistry(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	ctx := t.Context()
	reg := func(service, id string, ep registrar.Endpoint) {
		t.Helper()
		r, err := registrar.Register(ctx, cli, service, id, ep)
		if err != nil {
			t.Fatalf("register %s/%s: %v", service, id, err)
		}
		t.Cleanup(func() { r.Close(t.Context()) })
	}
	// A service that registers itself: no metadata.
	reg("echo", "host-42", registrar.Endpoint{Addr: "127.0.0.1:31001", Metadata: map[string]string{"pid": "42"}})
	// A task garrison registered on its behalf.
	reg("ktv-account", "ktv_account.a1", registrar.Endpoint{Addr: "127.0.0.1:31002",
		Metadata: map[string]string{"appId": "/ktv/account", "taskId": "ktv_account.a1", "registeredBy": "garrison"}})
	// The same task registered twice (by itself and by garrison): one target,
	// the one naming its app.
	reg("account-self", "x", registrar.Endpoint{Addr: "127.0.0.1:31003"})
	reg("ktv-account", "ktv_account.b2", registrar.Endpoint{Addr: "127.0.0.1:31003",
		Metadata: map[string]string{"appId": "/ktv/account", "taskId": "ktv_account.b2"}})
	// Junk under the prefix is skipped, as etcd's resolver skips it.
	if _, err := cli.Put(ctx, registrar.Prefix+"broken/1", "not json"); err != nil {
		t.Fatal(err)
	}

	hs := httptest.NewServer(promsd.New(cli))
	t.Cleanup(hs.Close)
	code, body := get(t, hs.URL)
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	var got []promsd.Group
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := []promsd.Group{
		{Targets: []string{"127.0.0.1:31001"}, Labels: map[string]string{"app": "echo", "service": "echo", "task": "host-42"}},
		{Targets: []string{"127.0.0.1:31002"}, Labels: map[string]string{"app": "/ktv/account", "service": "ktv-account", "task": "ktv_account.a1"}},
		{Targets: []string{"127.0.0.1:31003"}, Labels: map[string]string{"app": "/ktv/account", "service": "ktv-account", "task": "ktv_account.b2"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("groups:\n got %+v\nwant %+v", got, want)
	}

	resp, err := http.Post(hs.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", resp.StatusCode)
	}
}

func TestEmptyRegistryIsAnEmptyList(t *testing.T) {
	srv := etcdtest.New(t)
	hs := httptest.NewServer(promsd.New(srv.Client(t)))
	t.Cleanup(hs.Close)
	code, body := get(t, hs.URL)
	if code != http.StatusOK || string(body) != "[]" {
		t.Fatalf("got %d %s, want 200 []", code, body)
	}
}

// While etcd is down the handler answers 503, so Prometheus keeps the
// targets it had instead of dropping them all.
func TestEtcdDownIs503(t *testing.T) {
	srv := etcdtest.NewExternal(t)
	cli := srv.Client(t)
	hs := httptest.NewServer(promsd.New(cli, promsd.WithTimeout(500*time.Millisecond)))
	t.Cleanup(hs.Close)
	if code, _ := get(t, hs.URL); code != http.StatusOK {
		t.Fatalf("etcd up: status %d", code)
	}
	srv.Stop()
	start := time.Now()
	if code, _ := get(t, hs.URL); code != http.StatusServiceUnavailable {
		t.Fatalf("etcd down: status %d, want 503", code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("etcd down: answered after %s, want bounded by the 500ms timeout", d)
	}
}
