package app

import (
	"regexp"
	"testing"
	"time"
)

func TestTaskIDRoundTrip(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, id := range []string{"/web", "/prod/web", "/ktv/account.v2/api-1", "/a/b/c/d"} {
		tid := TaskID(id)
		safe := SafeID(id)
		if len(tid) <= len(safe)+1 || tid[:len(safe)+1] != safe+"." || !uuid.MatchString(tid[len(safe)+1:]) {
			t.Errorf("TaskID(%s) = %s", id, tid)
		}
		back, err := AppIDFromTaskID(tid)
		if err != nil || back != id {
			t.Errorf("AppIDFromTaskID(%s) = %s, %v; want %s", tid, back, err, id)
		}
	}
	if TaskID("/a") == TaskID("/a") {
		t.Error("task ids repeat")
	}
	if ServiceName("/ktv/account") != "ktv_account" {
		t.Error("ServiceName")
	}
}

func TestAppIDFromTaskIDFormats(t *testing.T) {
	for _, tc := range []struct{ task, app string }{
		{"prod_web.564bd685-4c30-11e5-98c1-be5b2935a987", "/prod/web"},
		{"prod_web_564bd685-4c30-11e5-98c1-be5b2935a987", "/prod/web"},
		{"prod_web.instance-564bd685-4c30-11e5-98c1-be5b2935a987._app.1", "/prod/web"},
		{"prod_web.marathon-564bd685-4c30-11e5-98c1-be5b2935a987", "/prod/web"},
		{"a.b_c.1234", "/a.b/c"},
	} {
		if got, err := AppIDFromTaskID(tc.task); err != nil || got != tc.app {
			t.Errorf("AppIDFromTaskID(%s) = %s, %v; want %s", tc.task, got, err, tc.app)
		}
	}
	for _, bad := range []string{"", "nouuid", ".abc", "web.", "Web.abc"} {
		if got, err := AppIDFromTaskID(bad); err == nil {
			t.Errorf("AppIDFromTaskID(%q) = %s, want an error", bad, got)
		}
	}
}

func TestVersionFormat(t *testing.T) {
	ts := time.Date(2015, 9, 25, 17, 13, 48, 343_999_999, time.FixedZone("CEST", 2*3600))
	if got := FormatVersion(ts); got != "2015-09-25T15:13:48.343Z" {
		t.Errorf("FormatVersion = %s", got)
	}
	if got := FormatVersion(time.Date(2015, 9, 25, 15, 13, 48, 0, time.UTC)); got != "2015-09-25T15:13:48.000Z" {
		t.Errorf("FormatVersion keeps the milliseconds: %s", got)
	}
	p, err := ParseVersion("2015-09-25T15:13:48.343Z")
	if err != nil || !p.Equal(NewVersion(ts)) {
		t.Errorf("ParseVersion = %v, %v", p, err)
	}
	if _, err := ParseVersion("2015-09-25 15:13"); err == nil {
		t.Error("ParseVersion accepted a non-ISO time")
	}
}

func TestCanonicalID(t *testing.T) {
	for _, tc := range []struct{ id, base, want string }{
		{"web", "/", "/web"},
		{"web", "/prod", "/prod/web"},
		{"../web", "/prod/api", "/prod/web"},
		{"../../../web", "/prod", "/web"},
		{"./web/", "/", "/web"},
		{"/a/./b", "/", "/a/./b"}, // absolute: kept for Validate to reject
		{"", "/", "/"},
	} {
		if got := CanonicalID(tc.id, tc.base); got != tc.want {
			t.Errorf("CanonicalID(%q, %q) = %q, want %q", tc.id, tc.base, got, tc.want)
		}
	}
}
