package rulefmt

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/garrisonhq/garrison/internal/yamlfile"
	"github.com/garrisonhq/garrison/scout/sample"
)

// fileDoc and ruleDoc are the file's shape, for writing: durations as
// text, every field named as in the file. Reading goes through yaml.Node
// instead, for line and column in errors.
type fileDoc struct {
	Rules []ruleDoc `yaml:"rules" json:"rules"`
}

type ruleDoc struct {
	App            string                   `yaml:"app" json:"app"`
	Min            int                      `yaml:"min" json:"min"`
	Max            int                      `yaml:"max" json:"max"`
	Quorum         int                      `yaml:"quorum" json:"quorum"`
	Window         string                   `yaml:"window" json:"window"`
	MaxStep        int                      `yaml:"maxStep" json:"maxStep"`
	MaxStepDown    int                      `yaml:"maxStepDown" json:"maxStepDown"`
	Up             Thresholds               `yaml:"up,flow" json:"up"`
	Down           Thresholds               `yaml:"down,flow,omitempty" json:"down"`
	Tolerance      float64                  `yaml:"tolerance" json:"tolerance"`
	Cooldown       string                   `yaml:"cooldown" json:"cooldown"`
	ScaleDownAfter string                   `yaml:"scaleDownAfter" json:"scaleDownAfter"`
	Timezone       string                   `yaml:"timezone" json:"timezone"`
	Schedules      []scheduleDoc            `yaml:"schedules,omitempty" json:"schedules,omitempty"`
	Paused         bool                     `yaml:"paused" json:"paused"`
	DryRun         bool                     `yaml:"dryRun" json:"dryRun"`
	Sources        map[sample.Metric]string `yaml:"sources,flow,omitempty" json:"sources,omitempty"`
	Queries        map[sample.Metric]any    `yaml:"queries,omitempty" json:"queries,omitempty"`
}

// queryDoc is a query with its instance count, as the file spells it.
type queryDoc struct {
	Value     string `yaml:"value" json:"value"`
	Instances string `yaml:"instances" json:"instances"`
}

type scheduleDoc struct {
	Cron string `yaml:"cron" json:"cron"`
	For  string `yaml:"for" json:"for"`
	Min  int    `yaml:"min" json:"min"`
}

func toDoc(r Rule) ruleDoc {
	d := ruleDoc{
		App: r.App, Min: r.Min, Max: r.Max, Quorum: r.Quorum,
		Window: FormatDuration(r.Window), MaxStep: r.MaxStep, MaxStepDown: r.MaxStepDown,
		Up: r.Up, Down: r.Down, Tolerance: r.Tolerance,
		Cooldown: FormatDuration(r.Cooldown), ScaleDownAfter: FormatDuration(r.ScaleDownAfter),
		Timezone: r.Timezone, Paused: r.Paused, DryRun: r.DryRun,
		Sources: r.Sources,
	}
	for m, q := range r.Queries {
		if d.Queries == nil {
			d.Queries = map[sample.Metric]any{}
		}
		if n := r.InstanceQueries[m]; n != "" {
			d.Queries[m] = queryDoc{Value: q, Instances: n}
		} else {
			d.Queries[m] = q
		}
	}
	for _, s := range r.Schedules {
		d.Schedules = append(d.Schedules, scheduleDoc{Cron: s.Cron, For: FormatDuration(s.For), Min: s.Min})
	}
	return d
}

// Marshal writes rules in the file format, defaults spelled out, for GET
// /api/v1/rules: Parse(Marshal(rules)) gives the same rules back.
func Marshal(rules []Rule) ([]byte, error) {
	doc := fileDoc{Rules: make([]ruleDoc, 0, len(rules))}
	for _, r := range rules {
		doc.Rules = append(doc.Rules, toDoc(r))
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// MarshalJSON writes the rule as the file spells it (durations as "5m"),
// so the API's JSON and the YAML file use one schema.
func (r Rule) MarshalJSON() ([]byte, error) {
	return json.Marshal(toDoc(r))
}

// UnmarshalJSON decodes and validates one rule as Parse does (JSON is
// YAML), so a rule that arrives as JSON cannot skip validation. Errors are
// Errors with line and column in data. Duplicate apps are only caught by
// Parse, which sees the whole file.
func (r *Rule) UnmarshalJSON(data []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Errors{yamlfile.SyntaxError(err, "")}
	}
	n := &root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	d := decoder{}
	rule, _ := d.rule(yamlfile.Resolve(n), "")
	if err := d.Err(); err != nil {
		return err
	}
	*r = rule
	return nil
}

// FormatDuration spells d as a rules file would: "1m", "1h30m", "90ms",
// not time.Duration's "1m0s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
