package rulefmt_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	"github.com/garrisonhq/garrison/scout/sample"
)

func TestParseGood(t *testing.T) {
	data, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := rulefmt.Parse(data, "good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 {
		t.Fatalf("got %d rules, want 2", len(rules))
	}
	a := rules[0]
	if a.App != "/ktv/account" || a.Min != 2 || a.Max != 20 || a.Quorum != 2 || a.Window != time.Minute ||
		a.MaxStep != 10 || a.MaxStepDown != 2 || a.Cooldown != time.Minute || a.ScaleDownAfter != 5*time.Minute ||
		a.Timezone != "Asia/Shanghai" || a.Paused || !a.DryRun {
		t.Errorf("rule 0 = %+v", a)
	}
	if a.Up != (rulefmt.Thresholds{QPS: 400, CPU: 0.75, Mem: 0.80}) || a.Down != (rulefmt.Thresholds{QPS: 100, CPU: 0.25, Mem: 0.40}) {
		t.Errorf("thresholds up %+v down %+v", a.Up, a.Down)
	}
	if len(a.Schedules) != 1 || a.Schedules[0].Cron != "30 11 * * *" || a.Schedules[0].For != 2*time.Hour || a.Schedules[0].Min != 8 {
		t.Errorf("schedules %+v", a.Schedules)
	}
	if a.Sources[sample.QPS] != "elasticsearch" || a.Sources[sample.CPU] != "prometheus" ||
		!strings.Contains(a.Queries[sample.QPS], "{{.Window}}") {
		t.Errorf("sources %v queries %v", a.Sources, a.Queries)
	}
	if a.Location().String() != "Asia/Shanghai" {
		t.Errorf("location %v", a.Location())
	}
	// The second rule gets every default.
	b := rules[1]
	want := rulefmt.Rule{App: "/ktv/song", Min: rulefmt.DefaultMin, Max: 5, Quorum: rulefmt.DefaultQuorum,
		Window: rulefmt.DefaultWindow, MaxStep: rulefmt.DefaultMaxStep, MaxStepDown: rulefmt.DefaultMaxStepDown,
		Up: rulefmt.Thresholds{CPU: 0.7, Mem: 0.8}, Cooldown: rulefmt.DefaultCooldown,
		ScaleDownAfter: rulefmt.DefaultScaleDownAfter, Timezone: rulefmt.DefaultTimezone, Tolerance: rulefmt.DefaultTolerance}
	if !reflect.DeepEqual(exported(b), exported(want)) || b.Location() != time.UTC {
		t.Errorf("defaults:\n got %+v\nwant %+v", b, want)
	}
}

// sameRules: the same meaning; positions in the file may differ.
func sameRules(a, b []rulefmt.Rule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !reflect.DeepEqual(exported(a[i]), exported(b[i])) || a[i].Location().String() != b[i].Location().String() {
			return false
		}
	}
	return true
}

// exported drops what Parse compiles, for comparing with a literal.
func exported(r rulefmt.Rule) rulefmt.Rule {
	out := rulefmt.Rule{App: r.App, Min: r.Min, Max: r.Max, Quorum: r.Quorum, Window: r.Window,
		MaxStep: r.MaxStep, MaxStepDown: r.MaxStepDown, Up: r.Up, Down: r.Down, Tolerance: r.Tolerance, Cooldown: r.Cooldown,
		ScaleDownAfter: r.ScaleDownAfter, Timezone: r.Timezone, Paused: r.Paused, DryRun: r.DryRun,
		Sources: r.Sources, Queries: r.Queries, InstanceQueries: r.InstanceQueries}
	for _, s := range r.Schedules {
		out.Schedules = append(out.Schedules, rulefmt.Schedule{Cron: s.Cron, For: s.For, Min: s.Min})
	}
	return out
}

// TestParseBad checks every bad file reports every problem, in file order,
// each with line, column and path (config_test.go's expectedErrors habit).
func TestParseBad(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"unknown.bad.yaml", []string{
			`unknown.bad.yaml:4:5: rules[0].maxstep: unknown field (did you mean "maxStep"?)`,
			`unknown.bad.yaml:5:32: rules[0].up.disk: unknown metric (qps, cpu, mem)`,
			`unknown.bad.yaml:10:9: rules[0].schedules[0].max: unknown field (a schedule has cron, for, min)`,
			`unknown.bad.yaml:11:5: rules[0].colour: unknown field (a rule has app, min, max, quorum, window, maxStep, maxStepDown, up, down, tolerance, cooldown, scaleDownAfter, timezone, schedules, paused, dryRun, sources, queries)`,
			`unknown.bad.yaml:12:1: groups: unknown field (the file holds "rules")`,
		}},
		{"values.bad.yaml", []string{
			`values.bad.yaml:2:10: rules[0].app: must be an absolute app id such as /ktv/account`,
			`values.bad.yaml:3:10: rules[0].min: must not be above max (3)`,
			`values.bad.yaml:5:13: rules[0].quorum: must be between 1 and 3`,
			`values.bad.yaml:6:13: rules[0].window: must be a duration such as 30s, 5m or 1h30m, not "soon"`,
			`values.bad.yaml:7:16: rules[0].up.qps: must be above 0 (requests per second per instance)`,
			`values.bad.yaml:7:34: rules[0].up.mem: must be above 0 and at most 10 (a fraction of what each instance was given)`,
			`values.bad.yaml:9:15: rules[0].cooldown: must not be negative`,
			`values.bad.yaml:10:21: rules[0].scaleDownAfter: must be positive`,
			`values.bad.yaml:11:18: rules[0].maxStepDown: must be at least 1`,
			`values.bad.yaml:12:15: rules[0].timezone: unknown time zone "Mars/Olympus" (an IANA name such as Asia/Shanghai)`,
			`values.bad.yaml:13:13: rules[0].paused: must be true or false, not "no"`,
			`values.bad.yaml:17:9: rules[1].up: needs at least quorum (3) thresholds, has 2`,
			`values.bad.yaml:18:18: rules[1].down.cpu: must be below up.cpu (0.7)`,
			`values.bad.yaml:19:21: rules[1].sources.qps: must be a source name matching ^[a-z][a-z0-9_-]*$`,
			`values.bad.yaml:20:21: rules[1].queries.cpu: not a valid template: template: rules[1].queries.cpu:1: unclosed action`,
			`values.bad.yaml:21:10: rules[2].app: duplicate app /ktv/song (first at line 14)`,
		}},
		{"schedules.bad.yaml", []string{
			`schedules.bad.yaml:6:15: rules[0].schedules[0].cron: not a cron expression (minute hour day month weekday): end of range (61) above maximum (59): 61`,
			`schedules.bad.yaml:9:15: rules[0].schedules[1].cron: set the time zone with the rule's timezone, not in the expression`,
			`schedules.bad.yaml:12:15: rules[0].schedules[2].cron: @every has no fixed fire times; use five fields (minute hour day month weekday)`,
			`schedules.bad.yaml:13:14: rules[0].schedules[2].for: must be positive`,
			`schedules.bad.yaml:14:14: rules[0].schedules[2].min: must not be above max (10)`,
			`schedules.bad.yaml:15:9: rules[0].schedules[3].min: required`,
			`schedules.bad.yaml:15:15: rules[0].schedules[3].cron: never fires`,
		}},
		{"syntax.bad.yaml", []string{
			`syntax.bad.yaml:2:1: did not find expected ',' or ']'`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			rules, err := rulefmt.Parse(data, tt.file)
			if rules != nil {
				t.Errorf("a bad file gave %d rules", len(rules))
			}
			var errs rulefmt.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v (%T) is not rulefmt.Errors", err, err)
			}
			got := strings.Split(errs.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseEdges(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		rules   int
		wantErr string // a substring; "" for none
	}{
		{name: "an empty document is refused: a file caught mid-write", doc: "", wantErr: "x: empty: write `rules: []` for no rules"},
		{name: "comments only is refused too", doc: "# nothing yet\n", wantErr: "empty"},
		{name: "empty list", doc: "rules: []\n"},
		{name: "rules missing", doc: "{}\n", wantErr: "1:1: rules: required"},
		{name: "rules not a list", doc: "rules: 3\n", wantErr: `rules: must be a list, not "3"`},
		{name: "rule not a mapping", doc: "rules: [3]\n", wantErr: `rules[0]: must be a mapping`},
		{name: "app and max required", doc: "rules:\n  - up: {cpu: 0.5, mem: 0.5}\n", wantErr: "2:5: rules[0].app: required\nx:2:5: rules[0].max: required"},
		{name: "duplicate key", doc: "rules:\n  - app: /a\n    max: 3\n    max: 4\n    up: {cpu: 0.5, mem: 0.5}\n", wantErr: "4:5: rules[0].max: duplicate key"},
		{name: "an empty value is the default", doc: "rules:\n  - app: /a\n    max: 3\n    min:\n    up: {cpu: 0.5, mem: 0.5}\n", rules: 1},
		{name: "anchors and aliases", doc: "up: &up {cpu: 0.5, mem: 0.5}\n", wantErr: "up: unknown field"},
		{name: "alias inside a rule", doc: "rules:\n  - app: /a\n    max: 3\n    up: &up {cpu: 0.5, mem: 0.5}\n  - app: /b\n    max: 3\n    up: *up\n", rules: 2},
		{name: "string where a number goes", doc: "rules:\n  - app: /a\n    max: \"3\"\n    up: {cpu: 0.5, mem: 0.5}\n", wantErr: `rules[0].max: must be an integer, not "3"`},
		{name: "NaN threshold", doc: "rules:\n  - app: /a\n    max: 3\n    up: {cpu: .nan, mem: 0.5}\n", wantErr: `rules[0].up.cpu: must be a number`},
		{name: "reserved and bad segments", doc: "rules:\n  - app: /A/b\n    max: 3\n    up: {cpu: 0.5, mem: 0.5}\n", wantErr: `segment "A"`},
		{name: "root is no app", doc: "rules:\n  - app: /\n    max: 3\n    up: {cpu: 0.5, mem: 0.5}\n", wantErr: "must not be the root group"},
		{name: "Local is no time zone", doc: "rules:\n  - app: /a\n    max: 3\n    timezone: Local\n    up: {cpu: 0.5, mem: 0.5}\n", wantErr: "unknown time zone"},
		{name: "a source for a metric with no threshold", doc: "rules:\n  - app: /a\n    max: 3\n    up: {cpu: 0.5, mem: 0.5}\n    sources: {qps: es}\n", wantErr: "rules[0].sources.qps: no up or down threshold uses it"},
		{name: "max 0", doc: "rules:\n  - app: /a\n    max: 0\n    min: 0\n    up: {cpu: 0.5, mem: 0.5}\n", wantErr: "rules[0].max: must be at least 1"},
		{
			name:  "JSON, tabs and all",
			doc:   "{\n\t\"rules\": [\n\t\t{\"app\": \"/a\", \"max\": 3, \"up\": {\"qps\": 10, \"cpu\": 0.5}, \"cooldown\": \"30s\"}\n\t]\n}\n",
			rules: 1,
		},
		{
			name:    "JSON errors have lines too",
			doc:     "{\n\t\"rules\": [\n\t\t{\"app\": \"/a\", \"max\": 3, \"up\": {\"qps\": 10, \"cpu\": 0.5}, \"down\": {\"cpu\": 0.6}}\n\t]\n}\n",
			wantErr: "x:3:74: rules[0].down.cpu: must be below up.cpu (0.5)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := rulefmt.Parse([]byte(tt.doc), "x")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if len(rules) != tt.rules {
				t.Errorf("got %d rules, want %d", len(rules), tt.rules)
			}
		})
	}
}

// TestMarshalRoundTrip: what GET /api/v1/rules serves, PUT takes back
// unchanged; YAML and JSON alike.
func TestMarshalRoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := rulefmt.Parse(data, "good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := rulefmt.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	again, err := rulefmt.Parse(out, "marshalled")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !sameRules(again, rules) {
		t.Errorf("round trip changed the rules:\n%s", out)
	}
	if !strings.Contains(string(out), "cooldown: 1m\n") || !strings.Contains(string(out), "up: {qps: 400, cpu: 0.75, mem: 0.8}") {
		t.Errorf("not in the file's spelling:\n%s", out)
	}

	js, err := json.Marshal(map[string]any{"rules": rules})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"scaleDownAfter":"5m"`) {
		t.Errorf("JSON durations not as text: %s", js)
	}
	fromJSON, err := rulefmt.Parse(js, "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	if !sameRules(fromJSON, rules) {
		t.Errorf("JSON round trip changed the rules: %s", js)
	}
	var decoded []rulefmt.Rule
	if err := json.Unmarshal(mustField(t, js, "rules"), &decoded); err != nil {
		t.Fatal(err)
	}
	if !sameRules(decoded, rules) {
		t.Errorf("json.Unmarshal gave different rules")
	}

	empty, err := rulefmt.Marshal(nil)
	if err != nil || string(empty) != "rules: []\n" {
		t.Errorf("Marshal(nil) = %q, %v", empty, err)
	}
}

func mustField(t *testing.T, js []byte, key string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	return m[key]
}

// TestUnmarshalJSONValidates: a rule that arrives through encoding/json is
// validated as Parse would.
func TestUnmarshalJSONValidates(t *testing.T) {
	var r rulefmt.Rule
	err := json.Unmarshal([]byte(`{"app": "/a", "max": 3, "up": {"cpu": 0.5}, "quorum": 2}`), &r)
	var errs rulefmt.Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Path != "up" || errs[0].Line != 1 {
		t.Fatalf("got %#v", err)
	}
}

func TestScheduleActive(t *testing.T) {
	doc := `rules:
  - app: /a
    max: 10
    up: {cpu: 0.5, mem: 0.5}
    timezone: Asia/Shanghai
    schedules:
      - {cron: "0 23 * * *", for: 3h, min: 6}
      - {cron: "30 11 * * 1-5", for: 2h, min: 8}
`
	rules, err := rulefmt.Parse([]byte(doc), "x")
	if err != nil {
		t.Fatal(err)
	}
	r := rules[0]
	sh := r.Location()
	tests := []struct {
		name  string
		at    time.Time
		floor int
		cron  string
	}{
		{"before the night window", time.Date(2026, 3, 2, 22, 59, 59, 0, sh), 1, ""},
		{"the night window opens at 23:00", time.Date(2026, 3, 2, 23, 0, 0, 0, sh), 6, "0 23 * * *"},
		{"across midnight", time.Date(2026, 3, 3, 1, 59, 59, 0, sh), 6, "0 23 * * *"},
		{"closed at 02:00", time.Date(2026, 3, 3, 2, 0, 0, 0, sh), 1, ""},
		{"the same instant in UTC", time.Date(2026, 3, 2, 17, 30, 0, 0, time.UTC), 6, "0 23 * * *"},
		{"lunch on a weekday", time.Date(2026, 3, 2, 12, 0, 0, 0, sh), 8, "30 11 * * 1-5"},
		{"no lunch on Saturday", time.Date(2026, 3, 7, 12, 0, 0, 0, sh), 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			floor, by := r.Floor(tt.at)
			cron := ""
			if by != nil {
				cron = by.Cron
			}
			if floor != tt.floor || cron != tt.cron {
				t.Errorf("Floor(%v) = %d by %q, want %d by %q", tt.at, floor, cron, tt.floor, tt.cron)
			}
		})
	}
	// A Rule made by hand has no compiled schedule: never active.
	hand := rulefmt.Rule{Min: 1, Schedules: []rulefmt.Schedule{{Cron: "* * * * *", For: time.Hour, Min: 5}}}
	if f, _ := hand.Floor(time.Now()); f != 1 {
		t.Errorf("hand-made schedule active: floor %d", f)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute: "1m", 2 * time.Hour: "2h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s",
		1500 * time.Millisecond: "1.5s", 0: "0s", 100 * time.Millisecond: "100ms", time.Hour + time.Second: "1h0m1s",
	} {
		if got := rulefmt.FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    rulefmt.Error
		want string
	}{
		{rulefmt.Error{File: "r.yaml", Line: 9, Column: 42, Path: "rules[2].up.cpu", Msg: "bad"}, "r.yaml:9:42: rules[2].up.cpu: bad"},
		{rulefmt.Error{Line: 9, Column: 42, Path: "up", Msg: "bad"}, "9:42: up: bad"},
		{rulefmt.Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

// TestInstanceLimit: a rule may not ask for more instances than an app
// definition may have (issue 10: min: 4, max: 4 scaled an app past what
// the API would take).
func TestInstanceLimit(t *testing.T) {
	doc := []byte("rules:\n  - app: /a\n    max: 5000\n    up: {qps: 10}\n")
	_, err := rulefmt.Parse(doc, "r.yaml")
	if err == nil || !strings.Contains(err.Error(), "r.yaml:3:10: rules[0].max: must be at most 1000 (the per-app instance limit)") {
		t.Fatalf("default limit: %v", err)
	}
	_, err = rulefmt.ParseWith([]byte("rules:\n  - app: /a\n    max: 30\n    up: {qps: 10}\n"), "r.yaml", rulefmt.Options{MaxInstances: 20})
	if err == nil || !strings.Contains(err.Error(), "rules[0].max: must be at most 20") {
		t.Fatalf("wired limit: %v", err)
	}
	rules, err := rulefmt.ParseWith([]byte("rules:\n  - app: /a\n    max: 20\n    up: {qps: 10}\n"), "r.yaml", rulefmt.Options{MaxInstances: 20})
	if err != nil || rules[0].Max != 20 {
		t.Fatalf("at the limit: %v %+v", err, rules)
	}
}

func TestToleranceAndOneThresholdQuorum(t *testing.T) {
	rules, err := rulefmt.Parse([]byte("rules:\n  - app: /a\n    max: 8\n    up: {qps: 10}\n"), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r := rules[0]; r.Quorum != 1 || r.Tolerance != rulefmt.DefaultTolerance {
		t.Fatalf("quorum %d tolerance %g; want 1 (one up threshold) and the default", r.Quorum, r.Tolerance)
	}
	_, err = rulefmt.Parse([]byte("rules:\n  - app: /a\n    max: 8\n    tolerance: 0.9\n    up: {qps: 10}\n"), "r.yaml")
	if err == nil || !strings.Contains(err.Error(), "r.yaml:4:16: rules[0].tolerance: must be between 0 and 0.5") {
		t.Fatalf("tolerance 0.9: %v", err)
	}
}

func TestQueryWithInstanceCount(t *testing.T) {
	doc := `rules:
  - app: /a
    max: 8
    up: {qps: 10}
    queries:
      qps:
        value: 'sum(irate(http_requests_total{job="a"}[{{.Window}}]))'
        instances: 'count(irate(http_requests_total{job="a"}[{{.Window}}]))'
`
	rules, err := rulefmt.Parse([]byte(doc), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r := rules[0]; !strings.HasPrefix(r.Queries[sample.QPS], "sum(") || !strings.HasPrefix(r.InstanceQueries[sample.QPS], "count(") {
		t.Fatalf("queries %v instances %v", r.Queries, r.InstanceQueries)
	}
	out, err := rulefmt.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	back, err := rulefmt.Parse(out, "out.yaml")
	if err != nil || back[0].InstanceQueries[sample.QPS] != rules[0].InstanceQueries[sample.QPS] {
		t.Fatalf("round trip: %v\n%s", err, out)
	}
	_, err = rulefmt.Parse([]byte("rules:\n  - app: /a\n    max: 8\n    up: {qps: 10}\n    queries:\n      qps: {instances: 'count(x)'}\n"), "r.yaml")
	if err == nil || !strings.Contains(err.Error(), "r.yaml:6:12: rules[0].queries.qps.value: required") {
		t.Fatalf("no value: %v", err)
	}
}
