package push

import "testing"

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"main", "main", true},
		{"main", "mainline", false},
		{"release/*", "release/1.2", true},
		{"release/*", "release/1/2", false},
		{"release/**", "release/1/2", true},
		{"**/*.go", "main.go", true},
		{"**/*.go", "cmd/x/main.go", true},
		{"**/*.go", "main.gox", false},
		{"docs/**", "docs/a/b.md", true},
		{"docs/**", "doc/a.md", false},
		{"v?.*", "v1.2", true},
		{"a.b", "axb", false},
	}
	for _, c := range cases {
		if got := Glob(c.pattern).MatchString(c.name); got != c.want {
			t.Errorf("Glob(%q) on %q = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func TestFilterTags(t *testing.T) {
	tag := Push{Ref: "refs/tags/v1.0", After: "a"}
	if ok, _ := (Filter{}).Match(tag); !ok {
		t.Error("no filter refuses a tag")
	}
	if ok, _ := (Filter{Branches: []string{"main"}}).Match(tag); ok {
		t.Error("a branches-only project accepts a tag")
	}
	if ok, _ := (Filter{Branches: []string{"main"}, Tags: []string{"v*"}}).Match(tag); !ok {
		t.Error("tag filter v* refuses v1.0")
	}
	if ok, _ := (Filter{}).Match(Push{Ref: "refs/notes/x", After: "a"}); ok {
		t.Error("a notes ref passes")
	}
}
