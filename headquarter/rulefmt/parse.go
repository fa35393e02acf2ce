package rulefmt

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"strings"
	"text/template"
	"time"

	// Time zones must load in a FROM-scratch image with no /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/internal/yamlfile"
	"github.com/garrisonhq/garrison/scout/sample"
)

var (
	// sourceNameRE is the syntax of a configured metric source's name; the
	// names themselves are checked where sources are configured.
	sourceNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
)

// ruleFields is every key a rule may have, in the order Marshal writes them.
var ruleFields = []string{"app", "min", "max", "quorum", "window", "maxStep", "maxStepDown",
	"up", "down", "tolerance", "cooldown", "scaleDownAfter", "timezone", "schedules", "paused", "dryRun",
	"sources", "queries"}

// Parse decodes and validates a rules file (YAML, or JSON, which YAML
// reads too) into rules with defaults applied. On any problem it returns no
// rules and Errors listing every problem found, each with filename, line,
// column and path, so a bad file never half-applies. An empty document is
// an error (a file caught mid-write must not remove every rule): `rules: []`
// is no rules.
func Parse(data []byte, filename string) ([]Rule, error) {
	return ParseWith(data, filename, Options{})
}

// ParseWith is Parse with garrison's settings (the instance limit).
func ParseWith(data []byte, filename string, opts Options) ([]Rule, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{yamlfile.SyntaxError(err, filename)}
	}
	d := decoder{Decoder: yamlfile.Decoder{File: filename}, maxInstances: opts.MaxInstances, opts: opts}
	rules := d.rules(&root)
	if err := d.Err(); err != nil {
		return nil, err
	}
	return rules, nil
}

// decoder walks yaml.Node trees, collecting every error rather than
// stopping at the first: `garrison rules check` shows them all at once.
type decoder struct {
	yamlfile.Decoder
	maxInstances int // 0: DefaultMaxInstances
	opts         Options
}

func (d *decoder) limit() int {
	if d.maxInstances > 0 {
		return d.maxInstances
	}
	return DefaultMaxInstances
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.Errf(n, path, "must be a string, not %s", yamlfile.Describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) int(n *yaml.Node, path string) (int, bool) {
	var v int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		d.Errf(n, path, "must be an integer, not %s", yamlfile.Describe(n))
		return 0, false
	}
	return v, true
}

func (d *decoder) float(n *yaml.Node, path string) (float64, bool) {
	var v float64
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&v) != nil ||
		math.IsNaN(v) || math.IsInf(v, 0) {
		d.Errf(n, path, "must be a number, not %s", yamlfile.Describe(n))
		return 0, false
	}
	return v, true
}

func (d *decoder) bool(n *yaml.Node, path string) (bool, bool) {
	var v bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&v) != nil {
		d.Errf(n, path, "must be true or false, not %s", yamlfile.Describe(n))
		return false, false
	}
	return v, true
}

func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.Errf(n, path, "must be a duration such as 30s, 5m or 1h30m, not %q", s)
		return 0, false
	}
	return v, true
}

func (d *decoder) rules(root *yaml.Node) []Rule {
	if root.Kind == 0 {
		// Empty input, or comments only. Refused rather than read as no
		// rules: a file caught mid-write (truncated, not yet written) must
		// not drop every rule in force.
		d.Errf(nil, "", "empty: write `rules: []` for no rules")
		return nil
	}
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = root.Content[0]
	}
	if yamlfile.IsNull(root) {
		return nil
	}
	var rulesNode *yaml.Node
	d.Mapping(root, "", func(key string, k, v *yaml.Node) {
		if key != "rules" {
			d.Errf(k, key, `unknown field (the file holds "rules")`)
			return
		}
		rulesNode = v
	})
	if yamlfile.IsNull(rulesNode) {
		if rulesNode == nil && len(d.Errs) == 0 {
			d.Errf(root, "rules", "required")
		}
		return nil
	}
	if rulesNode.Kind != yaml.SequenceNode {
		d.Errf(rulesNode, "rules", "must be a list, not %s", yamlfile.Describe(rulesNode))
		return nil
	}
	rules := make([]Rule, 0, len(rulesNode.Content))
	firstLine := make(map[string]int, len(rulesNode.Content))
	for i, n := range rulesNode.Content {
		path := fmt.Sprintf("rules[%d]", i)
		r, appNode := d.rule(yamlfile.Resolve(n), path)
		if appNode != nil && r.App != "" {
			if line, dup := firstLine[r.App]; dup {
				d.Errf(appNode, path+".app", "duplicate app %s (first at line %d)", r.App, line)
			} else {
				firstLine[r.App] = appNode.Line
			}
		}
		rules = append(rules, r)
	}
	return rules
}

// rule decodes one rule and validates it. It returns the app's node so the
// file can place duplicate-app errors.
func (d *decoder) rule(n *yaml.Node, path string) (Rule, *yaml.Node) {
	r := Rule{
		Min: DefaultMin, Quorum: DefaultQuorum, Window: DefaultWindow,
		MaxStep: DefaultMaxStep, MaxStepDown: DefaultMaxStepDown,
		Cooldown: DefaultCooldown, ScaleDownAfter: DefaultScaleDownAfter,
		Timezone: DefaultTimezone, Tolerance: DefaultTolerance,
	}
	// at holds each given field's value node, to place cross-field errors;
	// bad marks fields that failed to decode, so their checks don't pile
	// a second error on the first.
	at := map[string]*yaml.Node{}
	bad := map[string]bool{}
	var schedNodes []*yaml.Node
	ok := d.Mapping(n, path, func(key string, k, v *yaml.Node) {
		p := yamlfile.Join(path, key)
		if yamlfile.IsNull(v) {
			// An empty value is the default, as if the key were absent.
			if !known(key) {
				d.unknown(k, p, key)
			}
			return
		}
		at[key] = v
		var good bool
		switch key {
		case "app":
			r.App, good = d.str(v, p)
		case "min":
			r.Min, good = d.int(v, p)
		case "max":
			r.Max, good = d.int(v, p)
		case "quorum":
			r.Quorum, good = d.int(v, p)
		case "window":
			r.Window, good = d.duration(v, p)
		case "maxStep":
			r.MaxStep, good = d.int(v, p)
		case "maxStepDown":
			r.MaxStepDown, good = d.int(v, p)
		case "up":
			r.Up, good = d.thresholds(v, p)
		case "down":
			r.Down, good = d.thresholds(v, p)
		case "tolerance":
			r.Tolerance, good = d.float(v, p)
		case "cooldown":
			r.Cooldown, good = d.duration(v, p)
		case "scaleDownAfter":
			r.ScaleDownAfter, good = d.duration(v, p)
		case "timezone":
			r.Timezone, good = d.str(v, p)
		case "schedules":
			r.Schedules, schedNodes, good = d.schedules(v, p)
		case "paused":
			r.Paused, good = d.bool(v, p)
		case "dryRun":
			r.DryRun, good = d.bool(v, p)
		case "sources":
			r.Sources, good = d.names(v, p, d.sourceName)
		case "queries":
			r.Queries, r.InstanceQueries, r.queryAt, good = d.queries(v, p)
		default:
			d.unknown(k, p, key)
			return
		}
		if !good {
			bad[key] = true
		}
	})
	if !ok {
		return r, nil
	}
	d.validate(&r, n, path, at, bad, schedNodes)
	return r, at["app"]
}

func known(key string) bool {
	for _, f := range ruleFields {
		if f == key {
			return true
		}
	}
	return false
}

func (d *decoder) unknown(k *yaml.Node, path, key string) {
	for _, f := range ruleFields {
		if strings.EqualFold(f, key) {
			d.Errf(k, path, "unknown field (did you mean %q?)", f)
			return
		}
	}
	d.Errf(k, path, "unknown field (a rule has %s)", strings.Join(ruleFields, ", "))
}

func (d *decoder) thresholds(n *yaml.Node, path string) (Thresholds, bool) {
	var t Thresholds
	good := true
	ok := d.Mapping(n, path, func(key string, k, v *yaml.Node) {
		p := yamlfile.Join(path, key)
		m := sample.Metric(key)
		if !isMetric(m) {
			d.Errf(k, p, "unknown metric (qps, cpu, mem)")
			good = false
			return
		}
		f, ok := d.float(v, p)
		if !ok {
			good = false
			return
		}
		switch {
		case m == sample.QPS && f <= 0:
			d.Errf(v, p, "must be above 0 (requests per second per instance)")
			good = false
		case m != sample.QPS && (f <= 0 || f > 10):
			d.Errf(v, p, "must be above 0 and at most 10 (a fraction of what each instance was given)")
			good = false
		}
		t.set(m, f)
	})
	return t, ok && good
}

func isMetric(m sample.Metric) bool {
	return m == sample.QPS || m == sample.CPU || m == sample.Mem
}

// names decodes a metric -> string mapping, checking each value with check.
func (d *decoder) names(n *yaml.Node, path string, check func(v *yaml.Node, path, s string) bool) (map[sample.Metric]string, bool) {
	out := map[sample.Metric]string{}
	good := true
	ok := d.Mapping(n, path, func(key string, k, v *yaml.Node) {
		p := yamlfile.Join(path, key)
		if !d.metric(k, p, key) {
			good = false
			return
		}
		s, ok := d.str(v, p)
		if !ok || !check(v, p, s) {
			good = false
			return
		}
		out[sample.Metric(key)] = s
	})
	if len(out) == 0 {
		out = nil
	}
	return out, ok && good
}

// metric checks a key names a metric.
func (d *decoder) metric(k *yaml.Node, path, key string) bool {
	if !isMetric(sample.Metric(key)) {
		d.Errf(k, path, "unknown metric (qps, cpu, mem)")
		return false
	}
	return true
}

// queries decodes `queries:`: per metric a query, or a mapping with the
// query as `value` and, optionally, `instances`: a query counting the
// instances the value came from.
func (d *decoder) queries(n *yaml.Node, path string) (values, instances map[sample.Metric]string, at map[string]Pos, good bool) {
	values, instances, good = map[sample.Metric]string{}, map[sample.Metric]string{}, true
	at = map[string]Pos{}
	ok := d.Mapping(n, path, func(key string, k, v *yaml.Node) {
		p := yamlfile.Join(path, key)
		m := sample.Metric(key)
		if !d.metric(k, p, key) {
			good = false
			return
		}
		if v.Kind != yaml.MappingNode {
			s, ok := d.str(v, p)
			if !ok || !d.query(v, p, s) {
				good = false
				return
			}
			values[m] = s
			at[key] = Pos{v.Line, v.Column}
			return
		}
		d.Mapping(v, p, func(key string, k, qv *yaml.Node) {
			qp := yamlfile.Join(p, key)
			if key != "value" && key != "instances" {
				d.Errf(k, qp, "unknown field (a query has value, instances)")
				good = false
				return
			}
			s, ok := d.str(qv, qp)
			if !ok || !d.query(qv, qp, s) {
				good = false
				return
			}
			if key == "value" {
				values[m] = s
				at[string(m)] = Pos{qv.Line, qv.Column}
			} else {
				instances[m] = s
				at[string(m)+".instances"] = Pos{qv.Line, qv.Column}
			}
		})
		if _, set := values[m]; !set {
			d.Errf(v, yamlfile.Join(p, "value"), "required")
			good = false
		}
	})
	if len(values) == 0 {
		values = nil
	}
	if len(instances) == 0 {
		instances = nil
	}
	return values, instances, at, ok && good
}

func (d *decoder) sourceName(v *yaml.Node, path, s string) bool {
	if !sourceNameRE.MatchString(s) {
		d.Errf(v, path, "must be a source name matching %s", sourceNameRE)
		return false
	}
	return true
}

// query checks a query override parses as a text/template: sources fill
// in {{.Window}} and the like, and a bad brace should fail here, not at
// the first evaluation.
func (d *decoder) query(v *yaml.Node, path, s string) bool {
	if strings.TrimSpace(s) == "" {
		d.Errf(v, path, "must not be empty")
		return false
	}
	if _, err := template.New(path).Parse(s); err != nil {
		d.Errf(v, path, "not a valid template: %v", err)
		return false
	}
	return true
}

func (d *decoder) schedules(n *yaml.Node, path string) ([]Schedule, []*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		d.Errf(n, path, "must be a list, not %s", yamlfile.Describe(n))
		return nil, nil, false
	}
	out := make([]Schedule, 0, len(n.Content))
	nodes := make([]*yaml.Node, 0, len(n.Content))
	good := true
	for i, sn := range n.Content {
		sn = yamlfile.Resolve(sn)
		p := fmt.Sprintf("%s[%d]", path, i)
		var s Schedule
		seen := map[string]bool{}
		ok := d.Mapping(sn, p, func(key string, k, v *yaml.Node) {
			fp := yamlfile.Join(p, key)
			if yamlfile.IsNull(v) {
				return
			}
			var ok bool
			switch key {
			case "cron":
				s.Cron, ok = d.str(v, fp)
			case "for":
				s.For, ok = d.duration(v, fp)
				if ok && s.For <= 0 {
					d.Errf(v, fp, "must be positive")
					ok = false
				}
			case "min":
				s.Min, ok = d.int(v, fp)
				if ok && s.Min < 0 {
					d.Errf(v, fp, "must not be negative")
					ok = false
				}
			default:
				d.Errf(k, fp, "unknown field (a schedule has cron, for, min)")
				good = false
				return
			}
			seen[key] = true
			if !ok {
				good = false
			}
		})
		if !ok {
			good = false
			continue
		}
		for _, key := range []string{"cron", "for", "min"} {
			if !seen[key] {
				d.Errf(sn, yamlfile.Join(p, key), "required")
				good = false
			}
		}
		out = append(out, s)
		nodes = append(nodes, sn)
	}
	return out, nodes, good
}

// scheduleField finds a schedule's value node for key, to place errors
// found after decoding.
func scheduleField(sn *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(sn.Content); i += 2 {
		if sn.Content[i].Value == key {
			return yamlfile.Resolve(sn.Content[i+1])
		}
	}
	return sn
}

// validate checks what single fields could not: ranges, relations between
// fields, the time zone and the cron expressions.
func (d *decoder) validate(r *Rule, n *yaml.Node, path string, at map[string]*yaml.Node, bad map[string]bool, schedNodes []*yaml.Node) {
	pos := func(key string) *yaml.Node {
		if v := at[key]; v != nil {
			return v
		}
		return n
	}
	given := func(key string) bool { return at[key] != nil && !bad[key] }

	switch {
	case at["app"] == nil && !bad["app"]:
		d.Errf(n, yamlfile.Join(path, "app"), "required")
	case given("app"):
		if msg := app.AbsoluteIDProblem(r.App); msg != "" {
			d.Errf(pos("app"), yamlfile.Join(path, "app"), "%s", msg)
		}
	}
	if at["max"] == nil && !bad["max"] {
		d.Errf(n, yamlfile.Join(path, "max"), "required")
	}
	if given("min") && r.Min < 0 {
		d.Errf(pos("min"), yamlfile.Join(path, "min"), "must not be negative")
		bad["min"] = true
	}
	if given("max") && r.Max < 1 {
		d.Errf(pos("max"), yamlfile.Join(path, "max"), "must be at least 1")
		bad["max"] = true
	}
	if given("max") && !bad["min"] && r.Min > r.Max {
		d.Errf(pos("min"), yamlfile.Join(path, "min"), "must not be above max (%d)", r.Max)
	}
	if given("max") && r.Max > d.limit() {
		d.Errf(pos("max"), yamlfile.Join(path, "max"), "must be at most %d (the per-app instance limit)", d.limit())
		bad["max"] = true
	}
	if given("tolerance") && (r.Tolerance < 0 || r.Tolerance > 0.5) {
		d.Errf(pos("tolerance"), yamlfile.Join(path, "tolerance"), "must be between 0 and 0.5 (a fraction of the up threshold)")
	}
	if at["quorum"] == nil && !bad["up"] && r.Up.Count() == 1 {
		// One up threshold: its vote is the quorum.
		r.Quorum = 1
	}
	if !bad["quorum"] {
		if r.Quorum < 1 || r.Quorum > len(sample.Metrics) {
			d.Errf(pos("quorum"), yamlfile.Join(path, "quorum"), "must be between 1 and %d", len(sample.Metrics))
		} else if !bad["up"] && r.Up.Count() < r.Quorum {
			// A quorum the up thresholds cannot reach never scales up.
			d.Errf(pos("up"), yamlfile.Join(path, "up"), "needs at least quorum (%d) thresholds, has %d", r.Quorum, r.Up.Count())
		}
	}
	if !bad["up"] && !bad["down"] {
		for _, m := range sample.Metrics {
			up, down := r.Up.Of(m), r.Down.Of(m)
			if up > 0 && down > 0 && down >= up {
				d.Errf(thresholdNode(pos("down"), string(m)), yamlfile.Join(path, "down."+string(m)),
					"must be below up.%s (%g)", m, up)
			}
		}
	}
	for _, key := range []string{"window", "scaleDownAfter"} {
		if given(key) {
			v := r.Window
			if key == "scaleDownAfter" {
				v = r.ScaleDownAfter
			}
			if v <= 0 {
				d.Errf(pos(key), yamlfile.Join(path, key), "must be positive")
			}
		}
	}
	if given("cooldown") && r.Cooldown < 0 {
		d.Errf(pos("cooldown"), yamlfile.Join(path, "cooldown"), "must not be negative")
	}
	if given("maxStep") && r.MaxStep < 0 {
		d.Errf(pos("maxStep"), yamlfile.Join(path, "maxStep"), "must not be negative (0: no limit)")
	}
	if given("maxStepDown") && r.MaxStepDown < 1 {
		d.Errf(pos("maxStepDown"), yamlfile.Join(path, "maxStepDown"), "must be at least 1")
	}
	for _, key := range []string{"sources", "queries"} {
		names := r.Sources
		if key == "queries" {
			names = r.Queries
		}
		for _, m := range sample.Metrics {
			if _, set := names[m]; set && r.Up.Of(m) == 0 && r.Down.Of(m) == 0 && !bad["up"] && !bad["down"] {
				d.Errf(thresholdNode(pos(key), string(m)), yamlfile.Join(path, key+"."+string(m)), "no up or down threshold uses it")
			}
		}
	}

	if given("queries") && !bad["window"] && !bad["sources"] && !bad["app"] {
		d.checkQueries(r, path)
	}

	loc := time.UTC
	if given("timezone") {
		l, err := time.LoadLocation(r.Timezone)
		if err != nil || r.Timezone == "" || r.Timezone == "Local" {
			// "Local" would make a rule mean different hours on different
			// replicas.
			d.Errf(pos("timezone"), yamlfile.Join(path, "timezone"), "unknown time zone %q (an IANA name such as Asia/Shanghai)", r.Timezone)
		} else {
			loc = l
		}
	}
	r.loc = loc
	for i := range r.Schedules {
		s := &r.Schedules[i]
		p := fmt.Sprintf("%s.schedules[%d]", path, i)
		if s.Cron != "" {
			spec, msg := parseCron(s.Cron, loc)
			if msg != "" {
				d.Errf(scheduleField(schedNodes[i], "cron"), p+".cron", "%s", msg)
			}
			s.spec = spec
		}
		if given("max") && !bad["max"] && s.Min > r.Max {
			d.Errf(scheduleField(schedNodes[i], "min"), p+".min", "must not be above max (%d)", r.Max)
		}
	}
}

// checkQueries runs the source's own check (PromQL parsing for the
// prometheus source) on each query of a metric read from a source that has
// one, placing a refusal at the query's line and field.
func (d *decoder) checkQueries(r *Rule, path string) {
	for _, m := range sample.Metrics {
		check := d.opts.QueryChecks[cmp.Or(r.Sources[m], d.opts.DefaultSource)]
		if check == nil {
			continue
		}
		for _, instances := range []bool{false, true} {
			q, p := r.Queries[m], yamlfile.Join(path, "queries."+string(m))
			if instances {
				q, p = r.InstanceQueries[m], p+".instances"
			} else if r.InstanceQueries[m] != "" {
				p += ".value"
			}
			if q == "" {
				continue
			}
			if err := check(q, r.App, r.Window); err != nil {
				pos := r.QueryPos(m, instances)
				d.Errs = append(d.Errs, Error{File: d.File, Line: pos.Line, Column: pos.Column, Path: p, Msg: err.Error()})
			}
		}
	}
}

func thresholdNode(n *yaml.Node, metric string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return n
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == metric {
			return yamlfile.Resolve(n.Content[i+1])
		}
	}
	return n
}

// parseCron accepts the five standard fields and the @daily-style
// descriptors, in the rule's time zone. A TZ= prefix is refused: the rule's
// timezone is the one place for it. @every is refused: it counts from
// whenever it is asked, so it has no fire times to open a window at.
func parseCron(expr string, loc *time.Location) (*cron.SpecSchedule, string) {
	t := strings.TrimSpace(expr)
	if strings.HasPrefix(t, "TZ=") || strings.HasPrefix(t, "CRON_TZ=") {
		return nil, "set the time zone with the rule's timezone, not in the expression"
	}
	if strings.HasPrefix(t, "@every") {
		return nil, "@every has no fixed fire times; use five fields (minute hour day month weekday)"
	}
	s, err := cron.ParseStandard(t)
	if err != nil {
		return nil, fmt.Sprintf("not a cron expression (minute hour day month weekday): %v", err)
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, "not a cron expression (minute hour day month weekday)"
	}
	spec.Location = loc
	// Next gives up after five years: "0 0 30 2 *" would never open.
	if spec.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, loc)).IsZero() {
		return nil, "never fires"
	}
	return spec, ""
}
