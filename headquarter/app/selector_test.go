package app

import "testing"

func TestSelector(t *testing.T) {
	labels := map[string]string{"env": "prod", "tier": "web", "canary": "", "a-b": "x y"}
	for _, tc := range []struct {
		sel   string
		match bool
	}{
		{"", true},
		{"env", true},
		{"missing", false},
		{"env==prod", true},
		{"env == prod", true},
		{"env==qa", false},
		{"env!=qa", true},
		{"env!=prod", false},
		{"missing!=qa", false}, // Marathon: every kind needs the label
		{"tier in (web, api)", true},
		{"tier in (api)", false},
		{"tier notin (api,db)", true},
		{"tier notin (web)", false},
		{"missing notin (web)", false},
		{"env==prod, tier in (web), canary", true},
		{"env==prod,tier==api", false},
		{`a\-b==x\ y`, true},
		{"in", false}, // a key named "in"
		{"tier in()", false},
	} {
		s, err := ParseSelector(tc.sel)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", tc.sel, err)
			continue
		}
		if got := s.Match(labels); got != tc.match {
			t.Errorf("%q.Match = %v, want %v (parsed %+v)", tc.sel, got, tc.match, s)
		}
	}
	for _, bad := range []string{"env==", "==prod", "env in (a", "env in (a b)", "a,,b", "a b", "env=prod", "a,"} {
		if s, err := ParseSelector(bad); err == nil {
			t.Errorf("ParseSelector(%q) = %+v, want an error", bad, s)
		}
	}
}
