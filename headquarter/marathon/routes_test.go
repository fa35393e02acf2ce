package marathon

import (
	"testing"

	"github.com/garrisonhq/garrison/headquarter/app"
)

func TestParseAppPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		want appRoute
	}{
		{"/", appRoute{kind: routeList}},
		{"/web", appRoute{kind: routeApp, id: "/web"}},
		{"/prod/web/", appRoute{kind: routeApp, id: "/prod/web"}},
		{"//prod//web", appRoute{kind: routeApp, id: "/prod/web"}},
		{"/prod/web/restart", appRoute{kind: routeRestart, id: "/prod/web"}},
		{"/prod/web/tasks", appRoute{kind: routeTasks, id: "/prod/web"}},
		{"/prod/web/tasks/prod_web.1234", appRoute{kind: routeTask, id: "/prod/web", arg: "prod_web.1234"}},
		{"/prod/web/versions", appRoute{kind: routeVersions, id: "/prod/web"}},
		{"/prod/web/versions/2015-09-25T15:13:48.343Z", appRoute{kind: routeVersion, id: "/prod/web", arg: "2015-09-25T15:13:48.343Z"}},
		{"/prod/*", appRoute{kind: routeGroupApps, id: "/prod"}},
		{"/*", appRoute{kind: routeGroupApps, id: "/"}},
		// The reserved words only end an app id: in the middle they are
		// ordinary segments.
		{"/tasks/web", appRoute{kind: routeApp, id: "/tasks/web"}},
		{"/versions/web/tasks", appRoute{kind: routeTasks, id: "/versions/web"}},
		// A bare reserved word is the app of that name (which Validate
		// refuses to create), not a suffix without an app.
		{"/restart", appRoute{kind: routeApp, id: "/restart"}},
	} {
		if got := parseAppPath(tc.path); got != tc.want {
			t.Errorf("parseAppPath(%q) = %+v, want %+v", tc.path, got, tc.want)
		}
	}
}

func TestLabelSelectorsAsMarathonParsesThem(t *testing.T) {
	labels := map[string]string{"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "a.example.com", "tier": "web-1", "a,b": "x"}
	for _, tc := range []struct {
		q    string
		want bool
	}{
		{"HAPROXY_GROUP==external", true},
		{"HAPROXY_GROUP!=external", false},
		{"HAPROXY_0_VHOST==a.example.com", true},
		{"tier in (web-1, web-2), HAPROXY_GROUP", true},
		{"tier notin (web-1)", false},
		{`a\,b==x`, true},
		{"missing", false},
	} {
		sel, err := app.ParseSelector(escapeTermChars(tc.q))
		if err != nil {
			t.Errorf("%q: %v", tc.q, err)
			continue
		}
		if got := sel.Match(labels); got != tc.want {
			t.Errorf("%q matches %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestParseEmbeds(t *testing.T) {
	e := parseEmbeds([]string{"apps.tasks", "apps.failures,apps.taskStats", "app.counts", "apps.unknown"}, "apps.", embeds{counts: true})
	want := embeds{tasks: true, counts: true, lastTaskFailure: true, taskStats: true}
	if e != want {
		t.Fatalf("got %+v, want %+v", e, want)
	}
}
